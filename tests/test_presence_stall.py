"""Presence through a stall (docs/spec.md §6, §12 item 16; docs/store.md "Presence through a stall")
on a real valkey: deadlines that lapsed while no heartbeat could reach the store are not failures,
whether a beat or a claim reaches it first afterwards; a player whose socket closed meanwhile is
released once, a hold after; and while heartbeats keep arriving, a dead process's players are
released on time. Deadlines take `now` as an argument; the silence is judged by the store's own
clock, so the tests let it run (a silence is time passing with no beat: the thing itself, not a
guessed wait). Across real processes and a SIGSTOPped store: test_store_stall.py."""

from __future__ import annotations

import asyncio
import time

import pytest
import redis.asyncio as aioredis

from roomsvc.realtime.presence import Presence
from roomsvc.rooms.rules import PStatus
from roomsvc.rooms.store import RoomStore
from roomsvc.store.keys import presence_member, presence_shard_of
from tests.support import joined_room, new_app_id, stores

Players = set[tuple[str, str]]


async def beat_for(beats: list[tuple[Presence, Players]], start: int, seconds: float) -> int:
    """Every process beats once, then every interval for `seconds` of the store's clock, its
    `now` advancing from `start` as the clock does; returns the last `now`."""
    began = time.monotonic()
    now = start
    while True:
        for presence, players in beats:
            await presence.refresh(players, now)
        if time.monotonic() - began >= seconds:
            return now
        await asyncio.sleep(beats[0][0].interval_s)
        now = start + int((time.monotonic() - began) * 1000)


async def a_silence(presence: Presence) -> None:
    """The store hears no heartbeat for longer than the silence: a stall, as it sees one."""
    await asyncio.sleep(1.5 * presence.silence_ms / 1000)


async def version_of(room_store: RoomStore, app: str, room_id: str) -> int:
    doc = await room_store.load(app, room_id, fresh=True)
    assert doc is not None
    return doc.version


async def status_of(room_store: RoomStore, app: str, room_id: str, player: str) -> PStatus:
    doc = await room_store.load(app, room_id, fresh=True)
    assert doc is not None
    participant = doc.of_player(player)
    assert participant is not None
    return participant.status


@pytest.mark.parametrize("first_after_the_stall", ["beat", "claim"])
async def test_deadlines_lapsed_in_a_stall_are_not_failures(
    redis_client: aioredis.Redis, first_after_the_stall: str
) -> None:
    """Two processes beat, then nothing reaches the store for longer than the grace. After it,
    whichever comes first (a beat or a sweep), nobody is released while every live process
    beats again; zed, whose socket closed during the stall, is released once after the hold."""
    room_store, service = stores(redis_client)
    app = new_app_id()
    ray_room = await joined_room(service, app, "olga", "ray")
    zed_room = await joined_room(service, app, "otto", "zed")
    versions = {r: await version_of(room_store, app, r) for r in (ray_room, zed_room)}
    first = Presence(room_store, grace_seconds=1)
    second = Presence(RoomStore(redis_client, room_store.limits, 3_600_000), grace_seconds=1)
    here: Players = {(app, "ray"), (app, "olga")}
    there: Players = {(app, "zed"), (app, "otto")}
    t0 = 80_000_000_000_000
    last = await beat_for([(first, here), (second, there)], t0, 0)
    await first.sweep_once(last, lambda a, p: (a, p) in here)  # learns every shard

    await a_silence(first)
    resumed = last + 10_000  # ten graces later, by the processes' clocks
    if first_after_the_stall == "beat":
        await first.refresh(here, resumed)
    released = await first.sweep_once(resumed + 1, lambda a, p: (a, p) in here)
    assert released == 0  # zed's and otto's deadlines lapsed, for want of the second's beats
    there.discard((app, "zed"))  # zed's socket closed during the stall
    hold_s = first.hold_ms / 1000
    last = await beat_for([(first, here), (second, there)], resumed, hold_s + first.interval_s)
    assert await first.sweep_once(last + 1, lambda a, p: (a, p) in here) == 1
    assert await status_of(room_store, app, zed_room, "zed") is PStatus.LEFT
    for room_id, player in ((ray_room, "ray"), (ray_room, "olga"), (zed_room, "otto")):
        assert await status_of(room_store, app, room_id, player) is PStatus.JOINED
    assert await version_of(room_store, app, ray_room) == versions[ray_room]
    assert await version_of(room_store, app, zed_room) == versions[zed_room] + 1  # zed, once
    assert await second.sweep_once(last + 2, lambda a, p: (a, p) in there) == 0  # once


async def test_while_heartbeats_arrive_a_dead_process_players_are_released(
    redis_client: aioredis.Redis,
) -> None:
    """The second process dies: the first keeps beating (every shard, also those where it
    holds nobody), so no silence is seen and the dead process's players are released once
    their deadlines lapse."""
    room_store, service = stores(redis_client)
    app = new_app_id()
    zed_room = await joined_room(service, app, "otto", "zed")
    first = Presence(room_store, grace_seconds=1)
    second = Presence(RoomStore(redis_client, room_store.limits, 3_600_000), grace_seconds=1)
    theirs = {presence_shard_of(presence_member(app, p)) for p in ("zed", "otto")}
    amy = next(f"amy{n}" for n in range(1000)
               if presence_shard_of(presence_member(app, f"amy{n}")) not in theirs)  # fmt: skip
    t0 = 90_000_000_000_000
    await second.refresh({(app, "zed"), (app, "otto")}, t0)  # its last beat
    last = await beat_for([(first, {(app, amy)})], t0, 1.5 * first.silence_ms / 1000)
    end = max(last, second.deadline(t0) + 1)
    assert await first.sweep_once(end, lambda a, p: p == amy) == 2
    assert await status_of(room_store, app, zed_room, "zed") is PStatus.LEFT
    assert await status_of(room_store, app, zed_room, "otto") is PStatus.LEFT
