"""A REST load whose every change is visible in the room's history, and the checks that read
that history back (docs/spec.md §4, §12 items 4 and 5; docs/design.md "Retries never double-apply").

Each room holds four JOINED players. Two of them are workers: each sends reportStatus calls
one after another, call k naming every other participant ESTABLISHED or FAILED by the bits of
k. A report always bumps the version, even when it repeats the room's state, so a change
applied twice shows as an extra version; and since call k sets the worker's whole
`established` list, the final room names the last call applied (k mod 8).

A reply is either an acknowledgement (200, carrying the version the call produced: the
server's per-room lock keeps anything else from landing between a call and its replay) or
ambiguous (503 or a cut connection: applied once or not at all). The room's applied-request
set records one request id per version, so a request id applied twice would leave a version
without its own id.
"""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass

import httpx
import redis.asyncio as aioredis

from roomsvc.rooms.rules import Limits, RoomDoc
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from tests.support import UNIT, auth

BASE = "/games/v1/rooms"
PLAYERS = ("creator", "ana", "ben", "cat")
WORKERS = ("creator", "ana")
BASE_VERSION = 1 + len(PLAYERS) - 1  # create, then one join per invitee
PATTERNS = 1 << (len(PLAYERS) - 1)  # one bit per peer


@dataclass
class Room:
    room_id: str
    ids: dict[str, str]  # playerId -> participant id


@dataclass
class Outcome:
    room: int
    worker: str
    k: int
    status: int | None  # None: the connection failed (no reply)
    version: int | None = None

    @property
    def acked(self) -> bool:
        return self.status == 200

    @property
    def ambiguous(self) -> bool:
        return self.status is None or self.status == 503


async def make_room(client: httpx.AsyncClient, app: str) -> Room:
    """A room whose four players have all joined (version BASE_VERSION), retried whole on a
    store hiccup: setup is not under test."""
    for _ in range(50):
        try:
            return await _make_room(client, app)
        except (httpx.TransportError, _Unavailable):
            await asyncio.sleep(UNIT)
    raise AssertionError("could not set up a room")


class _Unavailable(Exception):
    pass


async def _make_room(client: httpx.AsyncClient, app: str) -> Room:
    body = {"invitedPlayerIds": list(PLAYERS[1:])}
    created = await client.post(f"{BASE}/create", json=body, headers=auth(PLAYERS[0], app))
    if created.status_code == 503:
        raise _Unavailable
    assert created.status_code == 200, created.text
    room = created.json()
    ids = {p["player"]["playerId"]: p["id"] for p in room["participants"]}
    assert set(ids) == set(PLAYERS), room
    for player in PLAYERS[1:]:
        joined = await client.post(
            f"{BASE}/{room['roomId']}/join", json={}, headers=auth(player, app)
        )
        if joined.status_code == 503:
            raise _Unavailable
        assert joined.status_code == 200, joined.text
    return Room(room["roomId"], ids)


def updates(room: Room, worker: str, k: int) -> list[dict[str, str]]:
    peers = [p for p in PLAYERS if p != worker]
    return [
        {
            "participantId": room.ids[peer],
            "status": "CONNECTION_ESTABLISHED" if k >> bit & 1 else "CONNECTION_FAILED",
        }
        for bit, peer in enumerate(peers)
    ]


def pattern_of(doc: RoomDoc, room: Room, worker: str) -> int:
    """The k mod PATTERNS whose report produced the worker's `established` list in `doc`."""
    me = doc.participant(room.ids[worker])
    assert me is not None
    peers = [p for p in PLAYERS if p != worker]
    return sum(1 << bit for bit, peer in enumerate(peers) if room.ids[peer] in me.established)


def check_unavailable(reply: httpx.Response) -> None:
    """A 503 is the documented refusal: Google's error shape and a Retry-After."""
    assert reply.headers.get("Retry-After"), reply.headers
    error = reply.json()["error"]
    assert error["code"] == 503 and error["status"] == "UNAVAILABLE", reply.text


async def work(
    client: httpx.AsyncClient,
    app: str,
    rooms: list[Room],
    index: int,
    worker: str,
    stop: asyncio.Event,
    limit: int,
    log: list[Outcome],
) -> None:
    """One player's reports on one room, one at a time, until `stop` or `limit` calls."""
    room = rooms[index]
    url, headers = f"{BASE}/{room.room_id}/reportstatus", auth(worker, app)
    for k in itertools.count(1):
        if stop.is_set() or k > limit:
            return
        try:
            body = {"updates": updates(room, worker, k)}
            reply = await client.post(url, json=body, headers=headers)
        except httpx.TransportError:
            log.append(Outcome(index, worker, k, None))
            await asyncio.sleep(UNIT / 2)
            continue
        outcome = Outcome(index, worker, k, reply.status_code)
        log.append(outcome)
        if reply.status_code == 200:
            outcome.version = int(reply.json()["statusVersion"])
        elif reply.status_code == 503:
            check_unavailable(reply)
            await asyncio.sleep(UNIT / 2)
        else:
            raise AssertionError(f"{reply.status_code} {reply.text}")


async def check_history(
    store: aioredis.Redis, app: str, rooms: list[Room], log: list[Outcome]
) -> dict[str, int]:
    """Every acknowledged report is in its room's history at the version it was told, every
    ambiguous one is there once or not at all, and each worker's last word is the room's.
    Returns totals for the failure messages of callers."""
    reader = RoomStore(store, Limits(), 3_600_000)
    totals = {"acked": 0, "ambiguous": 0}
    for index, room in enumerate(rooms):
        doc = await reader.load(app, room.room_id, fresh=True)
        assert doc is not None
        final = doc.version
        mine = [o for o in log if o.room == index]
        acked = [o for o in mine if o.acked]
        ambiguous = [o for o in mine if o.ambiguous]
        assert len(acked) + len(ambiguous) == len(mine)
        totals["acked"] += len(acked)
        totals["ambiguous"] += len(ambiguous)

        # One request id per version, one version per request id, no version missing: a
        # request id applied twice would have moved its score and left a hole.
        applied = await store.zrange(keys.room_applied(app, room.room_id), 0, -1, withscores=True)
        scores = sorted(int(pair[1]) for pair in applied)
        assert scores == list(range(1, final + 1)), (room.room_id, final, scores)

        # Acknowledged versions are distinct, in each worker's own order, and not beyond the
        # room's: an acknowledged change the store forgot would give its version out again.
        versions = [o.version or 0 for o in acked]
        assert len(versions) == len(set(versions)), sorted(versions)
        for worker in WORKERS:
            told = [o.version or 0 for o in acked if o.worker == worker]
            assert told == sorted(told), (worker, told)
        assert max(versions, default=BASE_VERSION) <= final

        # Every change after the setup is one of the calls, applied at most once: at least the
        # acknowledged ones, at most those plus the ambiguous ones.
        changes = final - BASE_VERSION
        assert len(acked) <= changes <= len(acked) + len(ambiguous), (
            room.room_id,
            changes,
            len(acked),
            len(ambiguous),
        )

        # The room ends as the worker's last acknowledged call left it, or as one of the
        # ambiguous calls after it did.
        for worker in WORKERS:
            own = [o for o in mine if o.worker == worker]
            last = next((o for o in reversed(own) if o.acked), None)
            start = last.k if last is not None else 0
            candidates = {start % PATTERNS} | {
                o.k % PATTERNS for o in own if o.ambiguous and o.k > start
            }
            if last is not None and last.version == final:
                candidates = {last.k % PATTERNS}  # nothing at all changed after it
            assert pattern_of(doc, room, worker) in candidates, (room.room_id, worker)
    return totals
