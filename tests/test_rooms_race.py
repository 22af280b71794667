"""Concurrent room mutations from two real server processes (docs/spec.md §4, §12 item 1).

Every request goes through REST to one of two `roomsvc serve` processes sharing one store, so
conflicts arise both inside a process (its per-room lock) and between processes (the Lua
compare-and-set). The oracle is the pure core: the successful mutations, replayed in the order
of the versions they returned, must be legal and must rebuild the stored room exactly.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from roomsvc.common.errors import Conflict, InvalidArgument, NotFound, RoomsvcError
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Limits, PStatus, RoomDoc
from roomsvc.rooms.store import RoomStore
from tests.support import UNIT, ServerProcess, auth, wait_until

MAX_PLAYERS = 256
LIMITS = Limits(max_players=MAX_PLAYERS)
BASE = "/games/v1/rooms"
ERRORS_BY_STATUS: dict[int, type[RoomsvcError]] = {
    400: InvalidArgument,
    404: NotFound,
    409: Conflict,
}


@pytest.fixture(scope="module")
def servers(request: pytest.FixtureRequest) -> Iterator[list[ServerProcess]]:
    """Two processes on one store (the cluster with --cluster), 255 invitees per room."""
    backend = "cluster" if request.config.getoption("--cluster") else "valkey"
    url = request.getfixturevalue(backend).url
    env = {"ROOMSVC_MAX_PLAYERS": str(MAX_PLAYERS)}
    pair = [ServerProcess(url, env=env).start(wait=False) for _ in range(2)]
    try:
        for process in pair:
            wait_until(process.healthy, timeout=200 * UNIT)
        yield pair
    finally:
        for process in pair:
            process.stop()


@pytest.fixture
async def clients(servers: list[ServerProcess]) -> AsyncIterator[list[httpx.AsyncClient]]:
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with (
        httpx.AsyncClient(base_url=servers[0].base_url, timeout=60, limits=limits) as first,
        httpx.AsyncClient(base_url=servers[1].base_url, timeout=60, limits=limits) as second,
    ):
        yield [first, second]


@pytest.fixture
def room_store(store: aioredis.Redis) -> RoomStore:
    """A reader of the canonical documents the servers wrote (fresh reads only)."""
    return RoomStore(store, LIMITS, 3_600_000)


async def create_room(client: httpx.AsyncClient, app: str, creator: str, invited: list[str]) -> str:
    reply = await client.post(
        f"{BASE}/create", json={"invitedPlayerIds": invited}, headers=auth(creator, app)
    )
    assert reply.status_code == 200, reply.text
    assert reply.json()["roomStatusVersion"] == 1
    return str(reply.json()["roomId"])


def check_error(reply: httpx.Response, *allowed: int) -> None:
    """A refusal is a documented status in Google's error shape, never a 5xx."""
    assert reply.status_code in allowed, reply.text
    error = reply.json()["error"]
    assert error["code"] == reply.status_code
    assert error["message"]


def check_gapless(versions: list[int], final: int) -> None:
    """Accepted changes got distinct versions that, after create's 1, fill 2..final."""
    assert len(versions) == len(set(versions)), sorted(versions)
    assert sorted(versions) == list(range(2, final + 1))


def plan_joins(n: int, seats: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """Invitees (the seats) and n join attempts: every seat once while n allows, then
    duplicate joins by invitees and joins by strangers, shuffled."""
    invitees = [f"inv{i}" for i in range(seats)]
    attempts = invitees[: min(n, seats)]
    extra = n - len(attempts)
    attempts += [rng.choice(invitees) for _ in range(extra - extra // 3)]
    attempts += [f"stranger{i}" for i in range(extra // 3)]
    rng.shuffle(attempts)
    return invitees, attempts


@pytest.mark.parametrize(("n", "seats"), [(2, 1), (2, 2), (10, 4), (10, 10), (200, 150)])
async def test_concurrent_joins_exactly_the_allowed_win(
    clients: list[httpx.AsyncClient], room_store: RoomStore, app_id: str, n: int, seats: int
) -> None:
    """N concurrent joins over two processes: one win per invitee, 409 for repeats, 404 else."""
    rng = random.Random(n * 1000 + seats)
    invitees, attempts = plan_joins(n, seats, rng)
    room_id = await create_room(clients[0], app_id, "creator", invitees)
    before = await room_store.load(app_id, room_id, fresh=True)
    assert before is not None

    async def join(index: int, player: str) -> httpx.Response:
        client = clients[index % 2]
        return await client.post(
            f"{BASE}/{room_id}/join",
            json={"capabilities": [f"c{index}"]},
            headers=auth(player, app_id),
        )

    replies = await asyncio.gather(*(join(i, p) for i, p in enumerate(attempts)))
    assert not [r.text for r in replies if r.status_code >= 500]

    winners: dict[str, int] = {}
    versions: list[int] = []
    for player, reply in zip(attempts, replies, strict=True):
        if reply.status_code == 200:
            assert player not in winners, f"{player} joined twice"
            version = reply.json()["roomStatusVersion"]
            winners[player] = version
            versions.append(version)
        elif player.startswith("stranger"):
            check_error(reply, 404)
        else:
            check_error(reply, 409)
    assert set(winners) == set(attempts) - {p for p in attempts if p.startswith("stranger")}
    assert len(winners) == min(n, seats)

    after = await room_store.load(app_id, room_id, fresh=True)
    assert after is not None
    check_gapless(versions, after.version)
    assert after.version == 1 + len(winners)
    for p in after.participants:
        if p.player_id in winners:
            assert p.status is PStatus.JOINED
            # The winner's own request wrote its capabilities: not another attempt's.
            index = next(
                i
                for i, (who, r) in enumerate(zip(attempts, replies, strict=True))
                if who == p.player_id and r.status_code == 200
            )
            assert p.capabilities == [f"c{index}"]
        else:
            old = before.of_player(p.player_id)
            assert old is not None and p.status is old.status
    assert not any(after.of_player(p) for p in attempts if p.startswith("stranger"))


# ---- mixed joins, leaves and reports --------------------------------------------------------


Op = tuple[str, int, str, list[tuple[str, str]]]  # kind, room index, player, updates


def plan_mixed(docs: list[RoomDoc], count: int, rng: random.Random) -> list[Op]:
    ops: list[Op] = []
    for _ in range(count):
        index = rng.randrange(len(docs))
        doc = docs[index]
        players = [p.player_id for p in doc.participants] + ["stranger"]
        player = rng.choice(players)
        kind = rng.choices(["join", "leave", "report"], weights=[4, 2, 5])[0]
        if kind == "leave" and player == "creator" and rng.random() < 0.7:
            kind = "report"  # keep most rooms alive long enough to be interesting
        me = doc.of_player(player)
        peers = [p.id for p in doc.participants if me is None or p.id != me.id]
        updates = [
            (peer, rng.choice(["CONNECTION_ESTABLISHED", "CONNECTION_FAILED"]))
            for peer in rng.sample(peers, rng.randint(1, min(3, len(peers))))
        ]
        ops.append((kind, index, player, updates))
    return ops


def apply_pure(doc: RoomDoc, op: Op, now: int) -> RoomDoc:
    kind, _, player, updates = op
    if kind == "join":
        return rooms.join(
            doc, player, capabilities=[], xmpp_address=None, now_ms=now, limits=LIMITS
        )
    if kind == "leave":
        return rooms.leave(doc, player, reason="PLAYER_LEFT", now_ms=now, limits=LIMITS)
    return rooms.report_status(doc, player, updates, now_ms=now, limits=LIMITS)


def refusal(doc: RoomDoc, op: Op, now: int) -> type[RoomsvcError] | None:
    """The error class the pure rules give `op` on `doc`, or None when it is legal."""
    try:
        apply_pure(doc, op, now)
    except RoomsvcError as exc:
        return type(exc)
    return None


def shape(doc: RoomDoc) -> Any:
    """What a change may alter, without the clock fields the servers filled in."""
    return (
        doc.version,
        rooms.room_status(doc),
        [(p.id, p.status, p.leave_reason, sorted(p.established)) for p in doc.participants],
    )


async def test_mixed_concurrent_mutations_are_linearizable(
    clients: list[httpx.AsyncClient], room_store: RoomStore, app_id: str
) -> None:
    """200 concurrent joins, leaves and reports on 4 rooms via two processes replay exactly."""
    rng = random.Random(7)
    room_ids = [
        await create_room(clients[i % 2], app_id, "creator", [f"inv{k}" for k in range(7)])
        for i in range(4)
    ]
    initial = [await room_store.load(app_id, r, fresh=True) for r in room_ids]
    docs = [d for d in initial if d is not None]
    assert len(docs) == len(room_ids)
    ops = plan_mixed(docs, 200, rng)

    async def call(i: int, op: Op) -> httpx.Response:
        kind, index, player, updates = op
        client, url = clients[i % 2], f"{BASE}/{room_ids[index]}"
        headers = auth(player, app_id)
        if kind == "join":
            return await client.post(f"{url}/join", json={}, headers=headers)
        if kind == "leave":
            return await client.post(
                f"{url}/leave", json={"reason": "PLAYER_LEFT"}, headers=headers
            )
        body = {"updates": [{"participantId": p, "status": s} for p, s in updates]}
        return await client.post(f"{url}/reportstatus", json=body, headers=headers)

    replies = await asyncio.gather(*(call(i, op) for i, op in enumerate(ops)))
    assert not [r.text for r in replies if r.status_code >= 500]

    for index, start in enumerate(docs):
        mine = [(op, r) for op, r in zip(ops, replies, strict=True) if op[1] == index]
        won: dict[int, Op] = {}
        lost: list[tuple[Op, httpx.Response]] = []
        for op, reply in mine:
            if reply.status_code == 200:
                body = reply.json()
                version = body.get("roomStatusVersion", body.get("statusVersion"))
                assert version not in won, f"version {version} won twice"
                won[version] = op
            else:
                check_error(reply, 400, 404, 409)
                lost.append((op, reply))
        final = await room_store.load(app_id, room_ids[index], fresh=True)
        assert final is not None
        check_gapless(list(won), final.version)

        # Replay the winners in version order: each must be legal where it landed, and the
        # result must be the stored room (nothing lost, nothing half-applied).
        now = start.created_ms + 1
        history = [start]
        for version in sorted(won):
            assert refusal(history[-1], won[version], now) is None, (version, won[version])
            history.append(apply_pure(history[-1], won[version], now))
        assert shape(history[-1]) == shape(final)

        # Every refusal was the rules' answer in some state the room went through.
        for op, reply in lost:
            expected = ERRORS_BY_STATUS[reply.status_code]
            assert any(refusal(doc, op, now) is expected for doc in history), (op, reply.text)


async def test_a_change_made_by_one_process_is_seen_by_the_other(
    clients: list[httpx.AsyncClient], app_id: str
) -> None:
    """A player who joined through one process can leave and report through the other."""
    first, second = clients
    room_id = await create_room(first, app_id, "creator", ["inv0", "inv1"])
    url = f"{BASE}/{room_id}"
    joined = await second.post(f"{url}/join", json={}, headers=auth("inv0", app_id))
    assert joined.status_code == 200, joined.text
    joined = await first.post(f"{url}/join", json={}, headers=auth("inv1", app_id))
    assert joined.status_code == 200, joined.text
    peer = joined.json()["participants"][0]["id"]
    body = {"updates": [{"participantId": peer, "status": "CONNECTION_ESTABLISHED"}]}
    reported = await second.post(f"{url}/reportstatus", json=body, headers=auth("inv1", app_id))
    assert reported.status_code == 200, reported.text
    assert reported.json()["statusVersion"] == 4
    left = await first.post(f"{url}/leave", json={}, headers=auth("inv0", app_id))
    assert left.status_code == 200, left.text
    again = await second.post(f"{url}/leave", json={}, headers=auth("inv0", app_id))
    check_error(again, 409)
    left = await second.post(f"{url}/leave", json={}, headers=auth("inv1", app_id))
    assert left.status_code == 200, left.text
    assert left.json()["roomStatusVersion"] == 6
