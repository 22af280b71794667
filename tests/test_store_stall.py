"""A stalled store (docs/spec.md §12 item 16; issue 18): a real valkey-server SIGSTOPped (its
sockets stay open and silent) under two real `roomsvc serve` processes with players connected.
Asserted are outcomes, never timings: while it is stopped every call answers 503 with Retry-After
(reads as unavailable, changes as "outcome unknown"), `/readyz` says 503, a new socket is refused
with 1013; once it wakes, retried calls apply exactly once, clients reach the latest versions, and a
stall longer than the presence grace evicts nobody whose socket stayed open, while a player whose
socket closed during it leaves once."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from roomsvc.store import keys
from tests.raw_socket import Feed, open_feed, ws_url
from tests.support import (
    UNIT,
    ServerProcess,
    ValkeyProcess,
    auth,
    eventually,
    leave_reasons,
    new_app_id,
    pid_of,
    two_player_room,
    wait_until,
)

DEADLINE = {"ROOMSVC_STORE_DEADLINE_MS": "500"}
ROOMS = "/games/v1/rooms"


@pytest.fixture
def own_valkey() -> Iterator[ValkeyProcess]:
    store = ValkeyProcess().start()  # never the session's store: this one is stopped
    yield store
    assert store.process is not None
    store.process.send_signal(signal.SIGCONT)
    store.stop()


@contextlib.contextmanager
def servers(store: ValkeyProcess, env: dict[str, str]) -> Iterator[tuple[ServerProcess, ...]]:
    pair = [ServerProcess(store.url, env={**DEADLINE, **env}) for _ in range(2)]
    try:
        for server in pair:
            server.start(wait=False)
        for server in pair:
            wait_until(server.healthy, timeout=200 * UNIT)
        yield tuple(pair)
    finally:
        for server in pair:
            server.stop()


@pytest.fixture
async def rest() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


@contextlib.contextmanager
def stopped(store: ValkeyProcess, seconds: float) -> Iterator[None]:
    """The store SIGSTOPped for `seconds` (counted from the stop, whatever the body took)."""
    assert store.process is not None
    store.process.send_signal(signal.SIGSTOP)
    began = time.monotonic()
    try:
        yield
        time.sleep(max(0.0, seconds - (time.monotonic() - began)))
    finally:
        store.process.send_signal(signal.SIGCONT)


async def readiness(rest: httpx.AsyncClient, server: ServerProcess) -> httpx.Response:
    return await rest.get(f"{server.base_url}/readyz")


def error_of(reply: httpx.Response) -> tuple[int, str, int]:
    """(status, reason, Retry-After) of a REST error reply."""
    return (
        reply.status_code,
        reply.json()["error"]["errors"][0]["reason"],
        int(reply.headers["retry-after"]),
    )


def rpc_error_of(reply: dict[str, Any]) -> tuple[int, str, int]:
    """(data.code, reason, retryAfter) of a JSON-RPC error reply."""
    data = reply["error"]["data"]
    return data["code"], data["reason"], data["retryAfter"]


async def until_answered(send: Callable[[], Awaitable[httpx.Response]]) -> httpx.Response:
    """A client's retry loop: again while the answer is a 503."""
    for _ in range(100):
        reply = await send()
        if reply.status_code != 503:
            return reply
        await asyncio.sleep(UNIT)
    raise AssertionError("still 503")


async def room_at(rest: httpx.AsyncClient, server: ServerProcess, app: str, player: str,
                  room_id: str) -> dict[str, Any]:  # fmt: skip
    reply = await until_answered(
        lambda: rest.get(f"{server.base_url}{ROOMS}/{room_id}", headers=auth(player, app))
    )
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_an_eight_second_stall_fails_fast_and_applies_retries_once(
    own_valkey: ValkeyProcess, rest: httpx.AsyncClient
) -> None:
    """SIGSTOP for 8 s (default grace): every call answers 503 with Retry-After, a change as
    outcome unknown, readyz 503, a new socket 1013; after SIGCONT readyz 200, a create retried
    with its requestId makes one room, a join retried is applied once, sockets stayed open and
    every client reaches the latest versions."""
    app = new_app_id()
    admin = aioredis.Redis.from_url(own_valkey.url)
    with servers(own_valkey, {}) as (first, second):
        room = await two_player_room(rest, first, app, "olga", "ray")
        room_id = room["roomId"]
        invite = await rest.post(f"{first.base_url}{ROOMS}/create", headers=auth("olga", app),
                                 json={"invitedPlayerIds": ["dan"]})  # fmt: skip
        invite_id, invite_version = invite.json()["roomId"], invite.json()["roomStatusVersion"]
        olga = await open_feed(first, "olga", app)
        ray = await open_feed(second, "ray", app)
        dan = await open_feed(second, "dan", app)
        create = {"invitedPlayerIds": ["zoe"], "requestId": "7001"}

        with stopped(own_valkey, 8.0):
            for server in (first, second):
                await eventually(lambda s=server: _is_503(readiness(rest, s)),
                                 "readyz 503 in the stall", within=200 * UNIT)  # fmt: skip
            ready = await readiness(rest, first)
            assert int(ready.headers["retry-after"]) >= 1
            read = await rest.get(f"{first.base_url}{ROOMS}/{room_id}", headers=auth("olga", app))
            assert error_of(read)[:2] == (503, "backendError") and error_of(read)[2] >= 1
            made = await rest.post(f"{second.base_url}{ROOMS}/create", json=create,
                                   headers=auth("cara", app))  # fmt: skip
            assert error_of(made)[:2] == (503, "outcomeUnknown") and error_of(made)[2] >= 1
            got = await olga.call("rooms.get", 1, roomId=room_id)
            assert rpc_error_of(got)[:2] == (503, "backendError")
            joined = await dan.call("rooms.join", 1, roomId=invite_id, body={})
            assert rpc_error_of(joined)[:2] == (503, "outcomeUnknown")
            eve = Feed(await connect(ws_url(first, "eve", app), compression=None))
            assert (await eve.wait_closed()).code == 1013
            assert olga.closed is None and ray.closed is None and dan.closed is None

        for server in (first, second):
            await eventually(lambda s=server: _is_200(readiness(rest, s)),
                             "readyz 200 again", within=200 * UNIT)  # fmt: skip
        rooms_made = []
        for server in (first, second, first):  # the create, retried with its requestId
            url = f"{server.base_url}{ROOMS}/create"
            reply = await until_answered(
                lambda url=url: rest.post(url, json=create, headers=auth("cara", app))
            )
            assert reply.status_code == 200, reply.text
            rooms_made.append(reply.json()["roomId"])
        assert len(set(rooms_made)) == 1
        assert len(await admin.zrange(keys.player_rooms(app, "cara"), 0, -1)) == 1

        retried = {"error": {"data": {"code": 503}}}
        for n in range(2, 100):  # dan's join, retried: applied now, or already (409)
            retried = await dan.call("rooms.join", n, roomId=invite_id, body={})
            if "result" in retried or retried["error"]["data"]["code"] != 503:
                break
            await asyncio.sleep(UNIT)
        assert "result" in retried or retried["error"]["data"]["code"] == 409, retried
        final = await room_at(rest, first, app, "olga", invite_id)
        assert final["roomStatusVersion"] == invite_version + 1  # the join, exactly once
        assert leave_reasons(final)["dan"] == ("PARTICIPANT_JOINED", None)

        kept = await room_at(rest, second, app, "ray", room_id)
        assert leave_reasons(kept) == {"olga": ("PARTICIPANT_JOINED", None),
                                       "ray": ("PARTICIPANT_JOINED", None)}  # fmt: skip
        assert kept["roomStatusVersion"] == room["roomStatusVersion"]
        for feed in (olga, dan):  # both sockets show the join (a push, or the call's reply)
            await reaches(feed, invite_id, final["roomStatusVersion"])
        assert olga.closed is None and ray.closed is None and dan.closed is None
        for feed in (olga, ray, dan):
            await feed.ws.close()
    await admin.aclose()


async def _is_503(reply: Awaitable[httpx.Response]) -> bool:
    return (await reply).status_code == 503


async def _is_200(reply: Awaitable[httpx.Response]) -> bool:
    return (await reply).status_code == 200


async def reaches(feed: Feed, room_id: str, version: int) -> None:
    """The socket has shown `room_id` at `version` or later, pushed or as a call's result."""

    def shows(message: dict[str, Any]) -> bool:
        room = message.get("params") if message.get("method") == "roomStatus" else None
        room = room or message.get("result")
        return (
            isinstance(room, dict)
            and room.get("roomId") == room_id
            and room.get("roomStatusVersion", 0) >= version
        )

    await feed.until(shows)


GRACE_S = 2
PAIRS = 6


async def test_a_stall_longer_than_the_grace_evicts_nobody_wrongly(
    own_valkey: ValkeyProcess, rest: httpx.AsyncClient
) -> None:
    """SIGSTOP for longer than the presence grace: nobody whose socket stayed open is evicted;
    dave, whose socket closed during the stall, leaves once after it; auto-match tickets made
    around the stall (creates retried with their requestId) are each matched exactly once."""
    app = new_app_id()
    with servers(own_valkey, {"ROOMSVC_PRESENCE_GRACE_SECONDS": str(GRACE_S)}) as pair:
        first, second = pair
        # Pairs whose players sit on different processes: each process's sweeper finds the
        # other's players lapsed after the stall (their shards spread over the store).
        pairs = [(f"host{n}", f"guest{n}") for n in range(PAIRS)]
        stays = [await two_player_room(rest, first, app, h, g) for h, g in pairs]
        drops = await two_player_room(rest, second, app, "carol", "dave")
        feeds = {"carol": await open_feed(second, "carol", app),
                 "dave": await open_feed(first, "dave", app)}  # fmt: skip
        for host, guest in pairs:
            feeds[host] = await open_feed(first, host, app)
            feeds[guest] = await open_feed(second, guest, app)
        seekers = [f"seeker{n}" for n in range(8)]

        def ticket(n: int) -> Callable[[], Awaitable[httpx.Response]]:
            body = {"autoMatchingCriteria": {"minAutoMatchingPlayers": 1,
                                             "maxAutoMatchingPlayers": 1},
                    "requestId": str(9000 + n)}  # fmt: skip
            server = pair[n % 2]
            return lambda: rest.post(f"{server.base_url}{ROOMS}/create", json=body,
                                     headers=auth(seekers[n], app))  # fmt: skip

        for server in pair:  # a busy process's pool: idle connections, open and ready
            await warm_pool(rest, server, app)
        before = await asyncio.gather(*(ticket(n)() for n in range(4)))  # matched around it
        assert all(reply.status_code == 200 for reply in before)
        with stopped(own_valkey, 2.5 * GRACE_S):
            during = await asyncio.gather(*(ticket(n)() for n in range(4, 8)))
            assert {error_of(reply)[:2] for reply in during} == {(503, "outcomeUnknown")}
            await feeds["dave"].ws.close()  # dave's network goes, while nothing can be written

        for n in range(8):
            reply = await until_answered(ticket(n))
            assert reply.status_code == 200, reply.text
        dropped = await _until_left(rest, second, app, "carol", drops["roomId"], "dave")
        assert leave_reasons(dropped)["dave"] == ("PARTICIPANT_LEFT", "PRESENCE_FAILURE")
        assert leave_reasons(dropped)["carol"] == ("PARTICIPANT_JOINED", None)
        assert dropped["roomStatusVersion"] == drops["roomStatusVersion"] + 1
        matched = await _matched_rooms(rest, pair, app, seekers)
        assert sorted(matched.values()) == [2] * (len(seekers) // 2)  # pairs, no twin rooms
        for n, seeker in enumerate(seekers):  # and each seeker in exactly one live room
            welcome = await open_feed(pair[n % 2], seeker, app)
            live = welcome.messages[0]["params"]["rooms"]
            assert len(live) == 1 and live[0]["roomId"] in matched
            await welcome.ws.close()

        await asyncio.sleep(2 * GRACE_S)  # more sweeps: still nobody else, and dave once
        for (host, guest), stay in zip(pairs, stays, strict=True):
            kept = await room_at(rest, first, app, host, stay["roomId"])
            assert leave_reasons(kept) == {host: ("PARTICIPANT_JOINED", None),
                                           guest: ("PARTICIPANT_JOINED", None)}  # fmt: skip
            assert kept["roomStatusVersion"] == stay["roomStatusVersion"]
        again = await room_at(rest, first, app, "carol", drops["roomId"])
        assert again["roomStatusVersion"] == dropped["roomStatusVersion"]
        await reaches(feeds["carol"], drops["roomId"], dropped["roomStatusVersion"])
        for name, feed in feeds.items():
            if name != "dave":
                assert feed.closed is None
                await feed.ws.close()


async def warm_pool(rest: httpx.AsyncClient, server: ServerProcess, app: str) -> None:
    """Calls side by side, each on its own store connection, as under load: afterwards the
    pool holds idle connections on which the background duties' commands go out at once
    during a stall and wait in the stopped server's socket buffers until it wakes."""
    url = f"{server.base_url}/games/v1/events"
    replies = await asyncio.gather(
        *(rest.get(url, headers=auth(f"warm{n}", app)) for n in range(48))
    )
    assert all(reply.status_code == 200 for reply in replies)


async def _until_left(rest: httpx.AsyncClient, server: ServerProcess, app: str, player: str,
                      room_id: str, leaver: str) -> dict[str, Any]:  # fmt: skip
    for _ in range(200):
        room = await room_at(rest, server, app, player, room_id)
        if leave_reasons(room)[leaver][0] == "PARTICIPANT_LEFT":
            return room
        await asyncio.sleep(UNIT)
    raise AssertionError(f"{leaver} never left")


async def _matched_rooms(rest: httpx.AsyncClient, pair: tuple[ServerProcess, ...], app: str,
                         seekers: list[str]) -> dict[str, int]:  # fmt: skip
    """roomId -> how many seekers sit in it, once every seeker sits in a matched room (each
    seeks one other player, and sees itself JOINED in a room of two JOINED)."""
    for _ in range(200):
        rooms: dict[str, int] = {}
        for n, seeker in enumerate(seekers):
            room = await _room_of(rest, pair[n % 2], app, seeker)
            if room is None:
                break
            statuses = [p["status"] for p in room["participants"]]
            assert statuses.count("PARTICIPANT_JOINED") == 2, room
            assert leave_reasons(room)[seeker] == ("PARTICIPANT_JOINED", None)
            rooms[room["roomId"]] = rooms.get(room["roomId"], 0) + 1
        else:
            return rooms
        await asyncio.sleep(UNIT)
    raise AssertionError("the seekers were never all matched")


async def _room_of(rest: httpx.AsyncClient, server: ServerProcess, app: str,
                   seeker: str) -> dict[str, Any] | None:  # fmt: skip
    """The room `seeker` is in once matched (None while it still waits): its create, sent
    again with its requestId, answers its own room, followed to the room it was merged into."""
    body = {"autoMatchingCriteria": {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 1},
            "requestId": str(9000 + int(seeker.removeprefix("seeker")))}  # fmt: skip
    reply = await until_answered(lambda: rest.post(
        f"{server.base_url}{ROOMS}/create", json=body, headers=auth(seeker, app)))  # fmt: skip
    room = reply.json()
    merged = room.get("mergedIntoRoomId")
    if merged:
        room = await room_at(rest, server, app, seeker, merged)
    if room.get("status") in ("ROOM_AUTO_MATCHING", None):
        return None
    assert pid_of(room, seeker)
    return room
