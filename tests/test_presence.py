"""Presence deadlines and the sweep (docs/spec.md §6) on a real valkey, time passed as an argument,
beside test_realtime_units.py (a lapsed seat released once, a reconnect after its claim kept):
claims retired together keep a reconnect's deadline; two processes sweeping the same lapsed
players release every seat exactly once; a sweep reports the earliest deadline it saw (the
sweeper sleeps until then) and later sweeps claim only the shards due; a shard with more
lapsed players than one claim takes is swept again soon; a slow sweep never delays a
refresh; heartbeats move exactly the players held (by this process or another), and rebuild
what the store lost; a player gone from here lapses a grace after. Across real processes
(kill -9, reconnect within the grace): see test_realtime_processes.py."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Any

import pytest
import redis.asyncio as aioredis

from roomsvc.common.clock import now_ms
from roomsvc.realtime import presence as presence_module
from roomsvc.realtime.heartbeat import FULL_EVERY
from roomsvc.realtime.presence import BATCH, FULL_SWEEP_INTERVALS, LEASE_MS, Presence
from roomsvc.rooms.rules import Limits, PStatus
from roomsvc.rooms.store import Applied, RoomStore
from roomsvc.store.keys import (
    PRESENCE_SHARDS,
    presence_held,
    presence_member,
    presence_shard,
    presence_shard_of,
)
from tests.support import ValkeyProcess, eventually, joined_room, new_app_id, stores


async def test_one_retire_keeps_the_deadline_of_a_reconnect(redis_client: aioredis.Redis) -> None:
    """Claims retired together: a player that reconnected after its claim keeps its fresh
    deadline, one nobody refreshed meanwhile is removed."""
    room_store, _ = stores(redis_client)
    presence = Presence(room_store, grace_seconds=20)
    app = new_app_id()
    t0 = 20_000_000_000_000
    await presence.touch([(app, "zed"), (app, "amy")], t0)
    now = presence.deadline(t0) + 1
    lease = now + LEASE_MS
    claimed: list[str] = []
    for shard in {presence_shard_of(presence_member(app, p)) for p in ("zed", "amy")}:
        claim = await presence.claims.claim(shard, now, 10)
        assert claim.lease_until == lease
        claimed += claim.members
    assert sorted(claimed) == sorted(presence_member(app, p) for p in ("amy", "zed"))
    await presence.touch([(app, "zed")], now + 1)  # zed reconnected meanwhile
    by_shard: dict[str, list[tuple[str, None]]] = {}
    for player in ("zed", "amy"):
        member = presence_member(app, player)
        by_shard.setdefault(presence_shard_of(member), []).append((member, None))
    removed = [await presence.claims.retire(s, lease, m) for s, m in by_shard.items()]
    assert sum(removed) == 1
    amy = presence_member(app, "amy")
    assert await redis_client.zscore(presence_shard_of(amy), amy) is None
    zed = presence_member(app, "zed")
    assert await redis_client.zscore(presence_shard_of(zed), zed) == presence.deadline(now + 1)


async def test_two_processes_sweeping_release_every_seat_once(
    redis_client: aioredis.Redis, own_valkey: ValkeyProcess
) -> None:
    """Two processes (two clients, two room stores) sweep the same lapsed players at the same
    instant: every seat is released exactly once, and every claim is retired."""
    room_store, service = stores(redis_client)
    app = new_app_id()
    guests = [f"g{n}" for n in range(40)]
    rooms = {g: await joined_room(service, app, f"host{g}", g) for g in guests}
    versions = {g: (await room_store.load(app, r, fresh=True)).version for g, r in rooms.items()}  # type: ignore[union-attr]
    other_client = aioredis.Redis.from_url(own_valkey.url)
    try:
        first = Presence(room_store, grace_seconds=1)
        second = Presence(RoomStore(other_client, Limits(), 3_600_000), grace_seconds=1)
        t0 = 30_000_000_000_000
        await first.touch([(app, g) for g in guests], t0)
        now = first.deadline(t0) + 1
        released = await asyncio.gather(
            first.sweep_once(now, lambda a, p: False), second.sweep_once(now, lambda a, p: False)
        )
        assert sum(released) == len(guests)
        for guest, room_id in rooms.items():
            doc = await room_store.load(app, room_id, fresh=True)
            assert doc is not None and doc.version == versions[guest] + 1
            p = doc.of_player(guest)
            assert p is not None and p.status is PStatus.LEFT
            assert p.leave_reason == "PRESENCE_FAILURE"
            host = doc.of_player(f"host{guest}")
            assert host is not None and host.status is PStatus.JOINED
        for n in range(PRESENCE_SHARDS):
            assert await redis_client.zcard(presence_shard(n)) == 0  # every claim retired
        # Later sweeps, by either process, find nothing left to do.
        assert await first.sweep_once(now + 2 * LEASE_MS, lambda a, p: False) == 0
        assert await second.sweep_once(now + 2 * LEASE_MS, lambda a, p: False) == 0
    finally:
        await other_client.aclose()


async def evalsha_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_evalsha", {}).get("calls", 0))


async def test_a_sweep_claims_only_the_shards_due(redis_client: aioredis.Redis) -> None:
    """Each claim answers its shard's earliest deadline: the sweeper sleeps until the earliest
    one (at most one interval), then claims only the shards due, and every shard again after
    FULL_SWEEP_INTERVALS intervals."""
    room_store, _ = stores(redis_client)
    presence = Presence(room_store, grace_seconds=20)
    app = new_app_id()
    t0 = 40_000_000_000_000
    await presence.touch([(app, "early")], t0)
    await presence.touch([(app, "late")], t0 + 3000)
    await presence.claims.claim(presence_shard(0), 0, 1)  # scripts loaded
    await presence.claims.retire(presence_shard(0), 0, [("nobody", None)])
    before = await evalsha_calls(redis_client)
    await presence.sweep_once(t0 + 10, lambda a, p: False)  # the first sweep: every shard
    assert await evalsha_calls(redis_client) - before == PRESENCE_SHARDS
    assert presence.next_due == presence.deadline(t0)
    assert presence.pause_s(t0 + 10) == presence.interval_s  # never longer than an interval
    assert presence.pause_s(presence.deadline(t0) - 100) == pytest.approx(0.101)
    assert presence.pause_s(presence.deadline(t0) + 50) > 0  # overdue: soon, but no spin

    before = await evalsha_calls(redis_client)
    await presence.sweep_once(t0 + 1000, lambda a, p: False)  # nothing due: no claim at all
    assert await evalsha_calls(redis_client) == before
    now = presence.deadline(t0) + 1
    full = t0 + 10 + FULL_SWEEP_INTERVALS * int(presence.interval_s * 1000)
    assert now < full  # (the lapse comes before the next full sweep)
    assert await presence.sweep_once(now, lambda a, p: False) == 0  # early lapsed (no rooms)
    assert await evalsha_calls(redis_client) - before == 2  # its shard's claim and retire
    early, late = presence_member(app, "early"), presence_member(app, "late")
    assert await redis_client.zscore(presence_shard_of(early), early) is None
    assert await redis_client.zscore(presence_shard_of(late), late) == presence.deadline(t0 + 3000)
    assert presence.deadline(t0) < presence.next_due <= presence.deadline(t0 + 3000)

    before = await evalsha_calls(redis_client)
    await presence.sweep_once(full, lambda a, p: False)  # every shard again, now and then
    assert await evalsha_calls(redis_client) - before >= PRESENCE_SHARDS


async def test_more_lapsed_than_one_claim_takes_are_swept_again_soon(
    redis_client: aioredis.Redis,
) -> None:
    """A shard with more lapsed members than a claim's batch is due again at once, and the
    next sweep takes the rest."""
    room_store, _ = stores(redis_client)
    presence = Presence(room_store, grace_seconds=1)
    app = new_app_id()
    shard = presence_shard(0)
    players = []
    n = 0
    while len(players) < BATCH + 5:  # players (in no room) whose members fall in shard 0
        if presence_shard_of(presence_member(app, f"p{n}")) == shard:
            players.append((app, f"p{n}"))
        n += 1
    t0 = 50_000_000_000_000
    await presence.touch(players, t0)
    now = presence.deadline(t0) + 1
    assert await presence.sweep_once(now, lambda a, p: False) == 0  # no seats: none released
    assert presence.next_due == now and presence.pause_s(now) < presence.interval_s
    assert await redis_client.zcard(shard) == 5
    await presence.sweep_once(now + 1, lambda a, p: False)
    assert await redis_client.zcard(shard) == 0


class OneConnectedPlayer:
    """The two things presence asks of a process's hub: who is connected here."""

    def __init__(self, app: str, player: str) -> None:
        self.player = (app, player)

    def present_players(self) -> set[tuple[str, str]]:
        return {self.player}

    def is_local(self, app: str, player: str) -> bool:
        return (app, player) == self.player


class BusyRooms(RoomStore):
    """A room store whose changes wait until `free` is set, as behind another change to the
    same room in flight in this process."""

    def __init__(self, client: aioredis.Redis) -> None:
        super().__init__(client, Limits(), 3_600_000)
        self.free = asyncio.Event()

    async def mutate(self, *args: Any, **kwargs: Any) -> Applied:
        await self.free.wait()
        return await super().mutate(*args, **kwargs)


async def test_a_slow_release_never_delays_a_refresh(redis_client: aioredis.Redis) -> None:
    """While a sweep waits on a room (another change to it in flight here), the connected
    player's deadline still moves: a late refresh would let another process release it."""
    _, service = stores(redis_client)
    room_store = BusyRooms(redis_client)
    app = new_app_id()
    room_id = await joined_room(service, app, "olga", "ray")
    presence = Presence(room_store, grace_seconds=1)
    await presence.touch([(app, "ray")], now_ms() - 60_000)  # lapsed long ago
    ray, zed = presence_member(app, "ray"), presence_member(app, "zed")

    async def score(member: str) -> float | None:
        return await redis_client.zscore(presence_shard_of(member), member)

    async def ray_status() -> PStatus:
        doc = await room_store.load(app, room_id, fresh=True)
        return doc.of_player("ray").status  # type: ignore[union-attr]

    duty = asyncio.create_task(presence_module.run(presence, OneConnectedPlayer(app, "zed")))
    try:
        await eventually(lambda: claimed(score(ray)), "ray's deadline claimed")
        first = await score(zed)
        assert first is not None

        async def moved() -> bool:
            return (await score(zed) or 0) > first

        await eventually(moved, "zed's deadline refreshed during the sweep")
        assert await ray_status() is PStatus.JOINED  # the release still waits for the room
        room_store.free.set()

        async def released() -> bool:
            return await ray_status() is PStatus.LEFT

        await eventually(released, "ray released once the room was free")
    finally:
        duty.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await duty


async def claimed(score: Awaitable[float | None]) -> bool:
    value = await score
    return value is not None and value > now_ms()


# ---- heartbeats ---------------------------------------------------------------------------


async def deadline_of(client: aioredis.Redis, app: str, player: str) -> float | None:
    member = presence_member(app, player)
    return await client.zscore(presence_shard_of(member), member)


async def test_a_heartbeat_moves_exactly_the_players_held(redis_client: aioredis.Redis) -> None:
    """Beat after beat (only the changes sent between full beats), every player connected here
    gets the new deadline and one gone away keeps its last; the set of held members is rebuilt
    when the store lost it."""
    room_store, _ = stores(redis_client)
    presence = Presence(room_store, grace_seconds=1)
    app = new_app_id()
    players = {(app, f"p{n}") for n in range(300)}
    t = 60_000_000_000_000
    await presence.refresh(players, t)  # the first beat: full
    for n in range(1, 2 * FULL_EVERY + 1):
        gone, came = (app, f"p{n}"), (app, f"new{n}")
        players = (players - {gone}) | {came}
        await presence.refresh(players, t + n)
        assert await deadline_of(redis_client, app, came[1]) == presence.deadline(t + n)
        assert await deadline_of(redis_client, app, gone[1]) == presence.deadline(t + n - 1)
        kept = await deadline_of(redis_client, app, f"p{n + 100}")
        assert kept == presence.deadline(t + n)
    shard = presence_shard_of(presence_member(app, "p150"))
    await redis_client.delete(presence_held(shard, presence.heartbeat.process))  # lost
    await presence.refresh(players, t + 100)
    await presence.refresh(players, t + 101)
    assert await deadline_of(redis_client, app, "p150") == presence.deadline(t + 101)
    held = await redis_client.smembers(presence_held(shard, presence.heartbeat.process))
    expected = {presence_member(a, p) for a, p in players}
    assert {m.decode() for m in held} == {m for m in expected if presence_shard_of(m) == shard}


async def test_a_player_held_by_two_processes_stays_while_one_holds_it(
    redis_client: aioredis.Redis, own_valkey: ValkeyProcess
) -> None:
    """Each process beats for its own connections: a player who leaves one process but is
    still connected to the other keeps moving; gone from both, it stops, and a dead process's
    set expires."""
    other_client = aioredis.Redis.from_url(own_valkey.url)
    try:
        first = Presence(stores(redis_client)[0], grace_seconds=1)
        second = Presence(RoomStore(other_client, Limits(), 3_600_000), grace_seconds=1)
        app = new_app_id()
        t = 70_000_000_000_000
        await first.refresh({(app, "amy"), (app, "bob")}, t)
        await second.refresh({(app, "amy")}, t)
        await first.refresh({(app, "bob")}, t + 1)  # amy left the first process
        await second.refresh({(app, "amy")}, t + 2)
        assert await deadline_of(redis_client, app, "amy") == first.deadline(t + 2)
        await second.refresh(set(), t + 3)  # and the second
        await first.refresh({(app, "bob")}, t + 4)
        assert await deadline_of(redis_client, app, "amy") == first.deadline(t + 2)
        assert await deadline_of(redis_client, app, "bob") == first.deadline(t + 4)
        shard = presence_shard_of(presence_member(app, "bob"))
        ttl = await redis_client.pttl(presence_held(shard, first.heartbeat.process))
        assert 0 < ttl <= 2 * FULL_EVERY * int(first.interval_s * 1000)
    finally:
        await other_client.aclose()


async def test_a_player_gone_from_here_lapses_a_grace_after(redis_client: aioredis.Redis) -> None:
    """When the last connection here closes, the deadline becomes a grace after the close (not
    up to an interval later) and the sweeper knows; a player back here meanwhile, one with no
    deadline, and a close reported too late to be safe are left alone."""
    room_store, _ = stores(redis_client)
    presence = Presence(room_store, grace_seconds=1)
    app = new_app_id()
    now = now_ms()
    await presence.touch([(app, "ray"), (app, "zed"), (app, "old")], now)
    await presence.sweep_once(now, lambda a, p: False)  # the sweeper learns every shard
    before = now_ms()
    for player in ("ray", "zed", "nobody"):
        presence.gone(app, player)
    presence.gone(app, "old", now=before - 2 * int(presence.interval_s * 1000))  # late
    await presence.forget(lambda a, p: p == "zed")  # zed came back here meanwhile
    after = now_ms()
    ray = await deadline_of(redis_client, app, "ray")
    assert ray is not None and before + presence.grace_ms <= ray <= after + presence.grace_ms
    assert presence.next_due <= ray
    for player in ("zed", "old"):
        assert await deadline_of(redis_client, app, player) == presence.deadline(now)
    assert await deadline_of(redis_client, app, "nobody") is None
