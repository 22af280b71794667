"""The same code on a Redis Cluster (docs/spec.md §10): two `roomsvc serve` processes whose
REDIS_URL names one node of a local three-master Valkey cluster (tests/cluster.py) run an invitation
game, events.record, an analytics batch, auto-matching and a realtime push.

The whole API suites run on the cluster with `pytest --cluster` (conftest.py); this module is
the representative flow that the default suite always runs.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio
from redis.crc import key_slot
from websockets.asyncio.client import connect

from roomsvc.realtime.bridge import Bridge
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from roomsvc.store.batching import Batch
from roomsvc.store.connection import connect as store_connect
from roomsvc.store.scripts import script
from tests.cluster import ValkeyCluster
from tests.messaging import Player, players, room_of
from tests.pool_burst import failures_past_the_pool
from tests.support import (
    UNIT,
    ServerProcess,
    ValkeyProcess,
    auth,
    eventually,
    token,
    wait_until,
)

ROOMS = "/games/v1/rooms"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def pair(cluster: ValkeyCluster) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Two servers on the cluster, each given a different node: they must agree anyway."""
    first = ServerProcess(cluster.url).start(wait=False)
    second = ServerProcess(f"redis://127.0.0.1:{cluster.ports[2]}/0").start()
    wait_until(first.healthy, timeout=200 * UNIT)
    yield first, second
    for server in (first, second):
        server.stop()
    for server in (first, second):
        lines = server.output().splitlines()
        assert [line for line in lines if "crashed" in line or "Traceback" in line] == []


@pytest.fixture
async def clients(
    pair: tuple[ServerProcess, ServerProcess],
) -> AsyncIterator[tuple[httpx.AsyncClient, httpx.AsyncClient]]:
    async with (
        httpx.AsyncClient(base_url=pair[0].base_url, timeout=30) as one,
        httpx.AsyncClient(base_url=pair[1].base_url, timeout=30) as two,
    ):
        yield one, two


async def post(http: httpx.AsyncClient, path: str, who: str, app: str, body: Json) -> Json:
    reply = await http.post(path, json=body, headers=auth(who, app))
    assert reply.status_code == 200, reply.text
    result: Json = reply.json()
    return result


async def get(http: httpx.AsyncClient, path: str, who: str, app: str) -> Json:
    reply = await http.get(path, headers=auth(who, app))
    assert reply.status_code == 200, reply.text
    result: Json = reply.json()
    return result


async def test_invitation_game_across_processes(clients: Any, app_id: str) -> None:
    """create on one process, join/reportStatus/leave on the other: versions gapless."""
    one, two = clients
    room = await post(one, f"{ROOMS}/create", "alice", app_id, {"invitedPlayerIds": ["bob"]})
    room_id = room["roomId"]
    inbox = await get(two, ROOMS, "bob", app_id)
    assert [r["roomId"] for r in inbox["items"]] == [room_id]
    joined = await post(two, f"{ROOMS}/{room_id}/join", "bob", app_id, {})
    assert joined["status"] == "ROOM_CONNECTING" and joined["roomStatusVersion"] == 2
    ids = {p["player"]["playerId"]: p["id"] for p in joined["participants"]}
    update = {"participantId": ids["bob"], "status": "CONNECTION_ESTABLISHED"}
    status = await post(
        one, f"{ROOMS}/{room_id}/reportstatus", "alice", app_id, {"updates": [update]}
    )
    assert status["kind"] == "games#roomStatus"
    left = await post(two, f"{ROOMS}/{room_id}/leave", "bob", app_id, {})
    assert left["roomStatusVersion"] > joined["roomStatusVersion"]
    seen = await get(one, f"{ROOMS}/{room_id}", "alice", app_id)
    assert seen["roomStatusVersion"] == left["roomStatusVersion"]


async def test_events_record_and_list(clients: Any) -> None:
    """events.record on one process is counted and listed by the other."""
    one, two = clients
    who = "pl-" + uuid.uuid4().hex[:12]
    now = int(time.time() * 1000)
    body = {
        "kind": "games#eventRecordRequest",
        "currentTimeMillis": str(now),
        "requestId": "77",
        "timePeriods": [
            {
                "timePeriod": {
                    "periodStartMillis": str(now - 60_000),
                    "periodEndMillis": str(now - 1_000),
                },
                "updates": [{"definitionId": "ev_kills", "updateCount": "3"}],
            }
        ],
    }
    for _ in range(2):  # a replay of the same requestId counts once
        reply = await post(one, "/games/v1/events", who, "demo", body)
        assert reply["kind"] == "games#eventUpdateResponse"
    listed = await get(two, "/games/v1/events", who, "demo")
    counts = {i["definitionId"]: i["numEvents"] for i in listed["items"]}
    assert counts["ev_kills"] == "3"


async def test_analytics_batch_is_stored_once(clients: Any, cluster: ValkeyCluster) -> None:
    """An AddEventBatch retried on the other process with the same BatchId is stored once."""
    one, two = clients
    app = "app-" + uuid.uuid4().hex[:10]
    items = [{"Timestamp": "1700000000", "Event": "Navigation", "Data": [{"a": "b"}]}] * 3
    body = {"Token": token("p1", app), "BatchId": "b-1", "eventData": items}
    for http in (one, two):
        reply = await http.post("/analytics/v1/AddEventBatch", json=body)
        assert reply.status_code == 200, reply.text
        assert reply.json()["StatusCode"] == 0, reply.text
    with redis.RedisCluster.from_url(cluster.url) as store:
        assert store.xlen(keys.analytics_stream(app)) == 3


async def test_auto_match_across_processes(clients: Any, app_id: str) -> None:
    """Two seekers on different processes end up in one room."""
    one, two = clients
    criteria = {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 1}
    first = await post(one, f"{ROOMS}/create", "ann", app_id, {"autoMatchingCriteria": criteria})
    second = await post(two, f"{ROOMS}/create", "ben", app_id, {"autoMatchingCriteria": criteria})

    async def settled(http: httpx.AsyncClient, who: str, room_id: str) -> str:
        deadline = time.monotonic() + 100 * UNIT
        while time.monotonic() < deadline:
            room = await get(http, f"{ROOMS}/{room_id}", who, app_id)
            if room["status"] not in ("ROOM_AUTO_MATCHING", "ROOM_INVITING"):
                return str(room.get("mergedIntoRoomId", room["roomId"]))
            await asyncio.sleep(0.05)
        raise TimeoutError("not matched")

    assert await settled(one, "ann", first["roomId"]) == await settled(two, "ben", second["roomId"])


async def test_realtime_push_crosses_processes(
    clients: Any, pair: tuple[ServerProcess, ServerProcess], app_id: str
) -> None:
    """A join on one process reaches the inviter's socket on the other (pub/sub on a cluster)."""
    one, _ = clients
    url = pair[1].base_url.replace("http://", "ws://") + "/games/v1/realtime"
    async with connect(f"{url}?access_token={token('cat', app_id)}", compression=None) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["method"] == "welcome"
        room = await post(one, f"{ROOMS}/create", "cat", app_id, {"invitedPlayerIds": ["dan"]})
        await post(one, f"{ROOMS}/{room['roomId']}/join", "dan", app_id, {})
        async with asyncio.timeout(100 * UNIT):
            while True:
                message = json.loads(await ws.recv())
                params = message.get("params", {})
                if message.get("method") == "roomStatus" and params.get("roomStatusVersion") == 2:
                    break
        assert params["roomId"] == room["roomId"]


def test_keys_spread_over_every_master(
    pair: tuple[ServerProcess, ServerProcess], cluster: ValkeyCluster
) -> None:
    """The flows above wrote keys on all three masters: the servers really used the cluster."""
    sizes = []
    for port in cluster.ports:
        with redis.Redis(port=port) as node:
            sizes.append(node.dbsize())
    assert all(size > 0 for size in sizes), sizes


async def test_a_batch_of_script_calls_runs_on_both_kinds_of_store(
    cluster: ValkeyCluster, valkey: ValkeyProcess
) -> None:
    """A batch of script calls over many slots (store/batching.py): one write on a plain
    server, calls routed to their slots on a cluster, replies in order either way."""
    for url in (cluster.url, valkey.url):
        store = await store_connect(url)
        try:
            batch = Batch(store)
            calls = [
                batch.script(script("match_progress"),
                             [keys.pool_matches(f"a{n}:any"), keys.pool_match(f"a{n}:any", "m")],
                             ["m", 1, 0])
                for n in range(100)
            ]  # fmt: skip
            replies = await batch.run()
            assert [replies[n] for n in calls] == [0] * 100  # no such records: no-ops
        finally:
            await store.aclose()


async def test_a_create_request_id_claimed_twice_names_the_first_room(
    cluster: ValkeyCluster, valkey: ValkeyProcess
) -> None:
    """(rooms/store.py `claim_create_request`) The second claim of a requestId answers the
    room of the first, on both kinds of store (a cluster client's SET reply handling would
    hide the value it found)."""
    for url in (cluster.url, valkey.url):
        store = await store_connect(url)
        try:
            rooms = RoomStore(store, Limits(), 1000)
            request = uuid.uuid4().hex
            assert await rooms.claim_create_request("app", "p", request, "room-1") is None
            assert await rooms.claim_create_request("app", "p", request, "room-2") == "room-1"
        finally:
            await store.aclose()


async def test_a_node_s_message_link_subscribes_rooms_of_many_slots(
    cluster: ValkeyCluster,
) -> None:
    """(realtime/bridge.py `per_slot`) A node refuses one SSUBSCRIBE naming channels of two
    slots (CROSSSLOT). Channels asked for together, while one is unconfirmed, and every wanted
    channel again after a lost link, are subscribed one slot at a time, and each delivers."""

    async def resync() -> None:
        pass

    share = 16384 // len(cluster.ports)  # node 0 serves slots [0, share) (tests/cluster.py)
    ours = [c for n in range(3000) if key_slot(c := f"rs:{{t:{n}}}:ch".encode()) < share][:3]
    own = next(c for n in range(3000) if key_slot(c := f"rs:{{own:{n}}}:ch".encode()) < share)
    heard: list[bytes] = []
    bridge = Bridge(cluster.url, lambda channel, data: heard.append(channel), resync,
                    sharded=True, own=own, per_slot=True)  # fmt: skip
    running = asyncio.create_task(bridge.run())
    node = redis.asyncio.Redis.from_url(cluster.url)
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        await node.execute_command("CLIENT", "PAUSE", 300, "ALL")
        waits = [asyncio.create_task(bridge.subscribe(ours[0]))]
        await asyncio.sleep(0.01)  # on the wire, unconfirmed: the next two are asked together
        waits += [asyncio.create_task(bridge.subscribe(c)) for c in ours[1:]]
        assert await asyncio.gather(*waits) == [True] * 3
        cut = bridge._pubsub
        assert cut is not None
        cut._transport.abort()  # a lost link: the next one subscribes the three again

        async def relinked() -> bool:
            return bridge._pubsub not in (None, cut) and bridge.connected.is_set()

        await eventually(relinked, "the node's link back, its channels subscribed")
        for channel in ours:
            await node.execute_command("SPUBLISH", channel, b"hi")

        async def delivered() -> bool:
            return sorted(heard) == sorted(ours)

        await eventually(delivered, "a publication on each of the three slots")
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
        await node.aclose()


async def test_a_burst_past_the_pool_on_one_node_waits(cluster: ValkeyCluster) -> None:
    """300 commands in flight on one slot: those past the pool of 256 wait, none fails."""
    assert await failures_past_the_pool(cluster.url, "{burst}") == []


async def test_messages_cross_processes_on_every_shard(
    pair: tuple[ServerProcess, ServerProcess], cluster: ValkeyCluster, app_id: str
) -> None:
    """docs/messages.md "Across processes": each room's messages are published once on its own
    shard channel (SPUBLISH in the room's slot); rooms on every master, senders and recipients
    on different processes, reliable messages in order and exactly once, and a resume that
    reads the backlog from the room's node."""
    servers = list(pair)
    rooms: list[tuple[str, Player, Player]] = []
    async with players(servers, app_id, *(f"p{n}" for n in range(12))) as everyone:
        for n in range(0, len(everyone), 2):
            sender, recipient = everyone[n], everyone[n + 1]  # alternating processes
            rooms.append((await room_of(sender, recipient), sender, recipient))
        owners = {
            cluster_node_of(cluster, keys.room_message_channel(app_id, r)) for r, _, _ in rooms
        }
        assert len(owners) > 1, "every room landed on one master: make more rooms"

        async def burst(room_id: str, sender: Player) -> None:
            await asyncio.gather(*(sender.client.send_message(room_id, str(n).encode())
                                   for n in range(40)))  # fmt: skip

        await asyncio.gather(*(burst(room_id, sender) for room_id, sender, _ in rooms))
        for _, _, recipient in rooms:
            await recipient.until(lambda r=recipient: len(r.messages) >= 40)
            assert [m.seq for m in recipient.messages] == list(range(1, 41))
            assert sorted(int(m.data) for m in recipient.messages) == list(range(40))
        room_id, _, recipient = rooms[0]
        resumed = await recipient.client.resume_messages(room_id, 30)
        assert resumed["complete"] and resumed["lastSeq"] == 40 and resumed["replayed"] == 0


def cluster_node_of(cluster: ValkeyCluster, key: str) -> int:
    """Which master owns `key`: the cluster splits the slots in equal ranges (cluster.py)."""
    slot = key_slot(key.encode())
    return slot * len(cluster.ports) // 16384
