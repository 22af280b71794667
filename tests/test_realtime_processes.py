"""The realtime channel across processes (docs/spec.md §6, §12 items 6, 8, 10, 11): ordered pushes
between two servers, presence after a `kill -9`, reconnect within the grace, a lost pub/sub
link, a stalled reader, SIGTERM. Real processes, real sockets, real valkey.

Players are `roomsvc.client` clients (tests/messaging.py) where the test is about what a game
sees (pushes, seats kept across reconnects); raw sockets where it is about the wire itself (a
reader that stalls, close codes, frames sent before a SIGTERM)."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect

from roomsvc.store import keys
from tests.messaging import Player
from tests.raw_socket import Feed, drained_until_cut, open_feed, stalled_socket, ws_url
from tests.support import (
    UNIT,
    ServerProcess,
    ValkeyProcess,
    auth,
    join_room,
    leave_reasons,
    pid_of,
    two_player_room,
    wait_until,
)

GRACE = {"ROOMSVC_PRESENCE_GRACE_SECONDS": "1", "ROOMSVC_WS_SEND_TIMEOUT_SECONDS": "1"}
ESTABLISHED, FAILED = "CONNECTION_ESTABLISHED", "CONNECTION_FAILED"


@pytest.fixture(scope="module")
def pair(valkey: ValkeyProcess) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    first = ServerProcess(valkey.url, env=GRACE).start(wait=False)
    second = ServerProcess(valkey.url, env=GRACE).start()
    wait_until(first.healthy, timeout=200 * UNIT)
    yield first, second
    first.stop()
    second.stop()


@pytest.fixture
async def rest() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=30) as client:
        yield client


async def report(
    rest: httpx.AsyncClient, server: ServerProcess, app: str, player: str, room_id: str,
    peer: str, status: str,
) -> httpx.Response:  # fmt: skip
    body = {"updates": [{"participantId": peer, "status": status}]}
    return await rest.post(
        f"{server.base_url}/games/v1/rooms/{room_id}/reportstatus",
        json=body,
        headers=auth(player, app),
    )


async def connected(server: ServerProcess, name: str, app: str) -> Player:
    """A player on `roomsvc.client` that never reconnects: a closed socket fails the test."""
    player = Player(server, name, app, reconnect=False)
    await player.client.connect()
    return player


def strictly_increasing(values: list[int]) -> bool:
    return all(a < b for a, b in itertools.pairwise(values))


async def reaches(player: Player, room_id: str, version: int) -> None:
    await player.pushed(lambda p: p["roomId"] == room_id and p["roomStatusVersion"] >= version)


async def toggle(
    rest: httpx.AsyncClient, servers: list[ServerProcess], app: str, room: dict,
    a: str, b: str, count: int,
) -> None:  # fmt: skip
    """`count` alternating reportStatus calls by a and b, through the given servers in turn."""
    room_id = room["roomId"]
    pids = {a: pid_of(room, a), b: pid_of(room, b)}
    for n in range(count):
        me, peer = (a, b) if n % 2 == 0 else (b, a)
        status = ESTABLISHED if n % 4 < 2 else FAILED
        for _ in range(50):
            reply = await report(
                rest, servers[n % len(servers)], app, me, room_id, pids[peer], status
            )
            if reply.status_code != 503:
                break
            await asyncio.sleep(UNIT)
        assert reply.status_code == 200, reply.text


async def test_pushes_cross_processes_in_order(
    pair: tuple[ServerProcess, ServerProcess], rest: httpx.AsyncClient, app_id: str
) -> None:
    """Changes made through two processes reach sockets on both, versions strictly rising."""
    first, second = pair
    ana = await connected(first, "ana", app_id)
    bo = await connected(second, "bo", app_id)
    room = await two_player_room(rest, first, app_id, "ana", "bo")
    await toggle(rest, [first, second], app_id, room, "ana", "bo", 24)
    final = (await rest_get_at(rest, first, app_id, "ana", room["roomId"]))["roomStatusVersion"]
    for player in (ana, bo):
        await reaches(player, room["roomId"], final)
        seen = player.versions(room["roomId"])
        assert strictly_increasing(seen) and seen[-1] == final
        await player.client.close()


async def rest_get_at(
    rest: httpx.AsyncClient, server: ServerProcess, app: str, player: str, room_id: str
) -> dict:
    url = f"{server.base_url}/games/v1/rooms/{room_id}"
    for _ in range(50):  # a 503 while the store reconnects is retried, as clients do
        reply = await rest.get(url, headers=auth(player, app))
        if reply.status_code != 503:
            break
        await asyncio.sleep(UNIT)
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_killed_process_players_leave_after_the_grace(
    pair: tuple[ServerProcess, ServerProcess], valkey: ValkeyProcess, rest: httpx.AsyncClient,
    app_id: str,
) -> None:  # fmt: skip
    """kill -9: its JOINED players leave with PRESENCE_FAILURE, once; the others are told."""
    survivor, _ = pair
    victim = ServerProcess(valkey.url, env=GRACE).start()
    try:
        created = await rest.post(
            f"{survivor.base_url}/games/v1/rooms/create",
            json={"invitedPlayerIds": ["vic1", "vic2"]},
            headers=auth("sam", app_id),
        )
        room_id = created.json()["roomId"]
        for player in ("vic1", "vic2"):
            await join_room(rest, survivor, app_id, player, room_id)
        sam = await connected(survivor, "sam", app_id)
        victims = [await connected(victim, p, app_id) for p in ("vic1", "vic2")]
        before = (await rest_get_at(rest, survivor, app_id, "sam", room_id))["roomStatusVersion"]
        victim.kill()
        told = await sam.pushed(
            lambda room: (
                room["roomId"] == room_id
                and leave_reasons(room)["vic1"] == ("PARTICIPANT_LEFT", "PRESENCE_FAILURE")
                and leave_reasons(room)["vic2"] == ("PARTICIPANT_LEFT", "PRESENCE_FAILURE")
            )
        )
        assert leave_reasons(told)["sam"] == ("PARTICIPANT_JOINED", None)
        assert told["roomStatusVersion"] == before + 2
        await asyncio.sleep(20 * UNIT)  # several sweeps later: released once, nothing more
        after = await rest_get_at(rest, survivor, app_id, "sam", room_id)
        assert after["roomStatusVersion"] == before + 2
        assert strictly_increasing(sam.versions(room_id))
        for player in (sam, *victims):
            await player.client.close()
    finally:
        victim.kill()


async def test_reconnect_within_grace_keeps_the_seat(
    pair: tuple[ServerProcess, ServerProcess], rest: httpx.AsyncClient, app_id: str
) -> None:
    """A player back within the grace keeps its seat; gone for longer, it is released once."""
    first, second = pair
    room = await two_player_room(rest, first, app_id, "olga", "ray")
    room_id, version = room["roomId"], room["roomStatusVersion"]
    for server in (first, second):  # hop between processes, each gap well inside 1 s
        ray = await connected(server, "ray", app_id)
        assert [r["roomId"] for r in ray.client.welcome["rooms"]] == [room_id]  # the seat
        await asyncio.sleep(8 * UNIT)
        await ray.client.close()
        await asyncio.sleep(2 * UNIT)
    ray = await connected(second, "ray", app_id)
    await asyncio.sleep(15 * UNIT)
    kept = await rest_get_at(rest, first, app_id, "olga", room_id)
    assert leave_reasons(kept)["ray"] == ("PARTICIPANT_JOINED", None)
    assert kept["roomStatusVersion"] == version
    await ray.client.close()
    for _ in range(100):
        room_now = await rest_get_at(rest, first, app_id, "olga", room_id)
        if leave_reasons(room_now)["ray"][0] == "PARTICIPANT_LEFT":
            break
        await asyncio.sleep(UNIT)
    assert leave_reasons(room_now)["ray"] == ("PARTICIPANT_LEFT", "PRESENCE_FAILURE")
    assert leave_reasons(room_now)["olga"] == ("PARTICIPANT_JOINED", None)
    assert room_now["roomStatusVersion"] == version + 1
    await asyncio.sleep(15 * UNIT)
    assert (await rest_get_at(rest, first, app_id, "olga", room_id))[
        "roomStatusVersion"
    ] == version + 1


@pytest.fixture
def own_valkey() -> Iterator[ValkeyProcess]:
    store = ValkeyProcess(extra=("--appendonly", "yes", "--appendfsync", "always")).start()
    yield store
    store.stop()


async def test_lost_pubsub_link_resyncs_every_client(
    own_valkey: ValkeyProcess, rest: httpx.AsyncClient, app_id: str
) -> None:
    """pub/sub links killed, then the store restarted: every client reaches the latest version."""
    server = ServerProcess(own_valkey.url).start()
    admin = aioredis.Redis.from_url(own_valkey.url)
    try:
        ana = await connected(server, "ana", app_id)
        bo = await connected(server, "bo", app_id)
        room = await two_player_room(rest, server, app_id, "ana", "bo")
        for _ in range(3):
            for _ in range(100):  # the bridge is back (after the previous cut)
                if await admin.execute_command("CLIENT", "LIST", "TYPE", "pubsub"):
                    break
                await asyncio.sleep(UNIT / 4)
            killed = await admin.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            assert int(killed) >= 1
            await toggle(rest, [server], app_id, room, "ana", "bo", 6)
        await admin.aclose()
        own_valkey.stop()
        own_valkey.start()
        admin = aioredis.Redis.from_url(own_valkey.url)
        await toggle(rest, [server], app_id, room, "ana", "bo", 6)
        final = await rest_get_at(rest, server, app_id, "ana", room["roomId"])
        for player in (ana, bo):
            try:
                await reaches(player, room["roomId"], final["roomStatusVersion"])
            except TimeoutError:
                pytest.fail(f"a client stayed behind; the server said:\n{server.output()[-4000:]}")
            assert strictly_increasing(player.versions(room["roomId"]))
            await player.client.close()
    finally:
        await admin.aclose()
        server.stop()


async def test_stalled_reader_is_cut_while_others_still_receive(
    pair: tuple[ServerProcess, ServerProcess], rest: httpx.AsyncClient, app_id: str
) -> None:
    """A client that stops reading is cut once its sends block; the others get every change."""
    first, _ = pair
    invited = ["stall", *(f"guest{n}" for n in range(6))]
    created = await rest.post(
        f"{first.base_url}/games/v1/rooms/create",
        json={"invitedPlayerIds": invited},
        headers=auth("act", app_id),
    )
    room = await join_room(rest, first, app_id, "stall", created.json()["roomId"])
    act = await connected(first, "act", app_id)
    stalled = await asyncio.to_thread(stalled_socket, first, "stall", app_id)
    cut = False
    for _ in range(100):
        await toggle(rest, [first], app_id, room, "act", "stall", 20)
        if "peer stopped reading" in first.output():
            cut = True
            break
    assert cut, "the stalled reader was never cut"
    final = await rest_get_at(rest, first, app_id, "act", room["roomId"])
    await reaches(act, room["roomId"], final["roomStatusVersion"])
    assert strictly_increasing(act.versions(room["roomId"]))
    assert await asyncio.to_thread(drained_until_cut, stalled)
    stalled.close()
    await act.client.close()


async def test_sigterm_finishes_calls_then_closes_with_1012(
    valkey: ValkeyProcess, store: aioredis.Redis, app_id: str
) -> None:
    """SIGTERM: every call the server took is applied and answered, then sockets close with 1012."""
    server = ServerProcess(valkey.url).start()
    try:
        feed = await open_feed(server, "ana", app_id)
        frames = [
            json.dumps({"jsonrpc": "2.0", "id": n, "method": "rooms.create",
                        "params": {"body": {"invitedPlayerIds": ["bo"]}}})
            for n in range(30)
        ]  # fmt: skip
        for frame in frames:
            await feed.ws.send(frame)
        server.signal(signal.SIGTERM)
        closed = await feed.wait_closed()
        assert closed.code == 1012
        replies = [m for m in feed.messages if "id" in m and "method" not in m]
        answered = [m for m in replies if "result" in m]
        refused = [m for m in replies if "error" in m]
        assert all(m["error"]["data"]["reason"] == "restarting" for m in refused)
        assert all(m["error"]["code"] == -32053 for m in refused)
        created = await store.zcard(keys.player_rooms(app_id, "ana"))
        assert created == len(answered)  # nothing applied without its answer
        assert await asyncio.to_thread(server.process.wait, 100 * UNIT) == 0  # type: ignore[union-attr]
    finally:
        server.stop()


async def test_process_connection_cap_answers_1013(valkey: ValkeyProcess, app_id: str) -> None:
    """Past ROOMSVC_WS_MAX_CONNECTIONS a process closes new sockets with 1013 (overloaded)."""
    server = ServerProcess(valkey.url, env={"ROOMSVC_WS_MAX_CONNECTIONS": "2"}).start()
    try:
        held = [await open_feed(server, f"p{n}", app_id) for n in range(2)]
        extra = Feed(await connect(ws_url(server, "p9", app_id), compression=None))
        closed = await extra.wait_closed()
        assert closed.code == 1013
        await held[0].ws.close()
        await held[0].wait_closed()
        again = await open_feed(server, "p9", app_id)
        for feed in (held[1], again):
            await feed.ws.close()
    finally:
        server.stop()
