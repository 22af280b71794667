"""docs/spec.md §12 item 3: three matcher processes over thousands of tickets, one of them killed
with SIGKILL again and again: no ticket is matched twice, none is lost, and the claims a killed
matcher left behind are finished by the others once their lease lapses."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import signal
import statistics
import subprocess
import sys
import time
from collections import Counter
from typing import Any

import pytest
import redis.asyncio as aioredis

from roomsvc.common.clock import now_ms
from roomsvc.matching import policy as matching
from roomsvc.matching.pools import PoolStore
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Criteria, Limits, RoomDoc, Via
from roomsvc.rooms.service import new_room_id
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from tests.support import UNIT, ValkeyProcess

TICKETS = 3_000
WAVES = 12
LEASE_MS = 1_000
LIMITS = Limits(automatch_timeout_ms=3_600_000)  # no ticket times out during the test


class Matchers:
    """Matcher worker processes on the test store; slot 0 is the one that gets killed."""

    def __init__(self, redis_url: str, count: int) -> None:
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        self.env["REDIS_URL"] = redis_url
        self.env["ROOMSVC_LOG_LEVEL"] = "WARNING"
        self.generation = 0
        names = [self.victim, *(f"survivor-{n}" for n in range(1, count))]
        self.procs: list[subprocess.Popen[bytes]] = [self.spawn(name) for name in names]

    @property
    def victim(self) -> str:
        """The owner name on the match records of the process in slot 0."""
        return f"victim-{self.generation}"

    def spawn(self, owner: str) -> subprocess.Popen[bytes]:
        argv = [sys.executable, "-m", "roomsvc.matching.worker", "--lease-ms", str(LEASE_MS)]
        argv += ["--owner", owner]
        return subprocess.Popen(
            argv, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL
        )

    async def ready(self) -> None:
        """Wait until every process has started matching (it prints one line when it does)."""
        for proc in self.procs:
            if proc.stdout is not None and not getattr(proc, "seen_ready", False):
                await asyncio.to_thread(proc.stdout.readline)
                proc.seen_ready = True  # type: ignore[attr-defined]

    def kill_and_restart(self) -> None:
        self.procs[0].send_signal(signal.SIGKILL)
        self.procs[0].wait()
        self.close(self.procs[0])
        self.generation += 1
        self.procs[0] = self.spawn(self.victim)

    def stop(self) -> None:
        for proc in self.procs:
            proc.kill()
            proc.wait()
            self.close(proc)

    @staticmethod
    def close(proc: subprocess.Popen[bytes]) -> None:
        if proc.stdout is not None:
            proc.stdout.close()


def make_room(app: str, n: int, rng: random.Random) -> RoomDoc:
    low = rng.randint(1, 3)
    high = rng.randint(low, 3)
    invited = [f"inv{n}"] if rng.random() < 0.1 else []  # one in ten is a host
    ids = (f"p{n}_{k}" for k in itertools.count())
    return rooms.create(
        room_id=new_room_id(),
        app_id=app,
        player_id=f"player{n}",
        name=None,
        avatar=None,
        invited=invited,
        criteria=Criteria(low, high, rng.choice([0, 0, 0, 1, 2, 4])),
        variant=None,
        capabilities=[],
        xmpp_address=None,
        ids=ids,
        now_ms=now_ms(),
        limits=LIMITS,
    )


async def insert(
    room_store: RoomStore, pools: PoolStore, app: str, numbers: range, rng: random.Random
) -> list[RoomDoc]:
    """The rooms.create path without HTTP: stamped now, ticket first, then the room."""
    gate = asyncio.Semaphore(64)

    async def one(n: int) -> RoomDoc:
        async with gate:
            doc = make_room(app, n, rng)
            await pools.enqueue(doc)
            await room_store.create(doc, f"create:{doc.room_id}")
            return doc

    return await asyncio.gather(*(one(n) for n in numbers))


async def in_flight(store: Any, pool: str) -> set[str]:
    return {m.decode() for m in await store.zrange(keys.pool_matches(pool), 0, -1)}


async def owned_by(store: Any, pool: str, owner: str) -> set[str]:
    """The match records `owner` holds right now (what a kill of it leaves orphaned)."""
    ids = sorted(await in_flight(store, pool))
    async with store.pipeline(transaction=False) as pipe:
        for match_id in ids:
            pipe.hget(keys.pool_match(pool, match_id), "owner")
        owners = await pipe.execute()
    return {m for m, o in zip(ids, owners, strict=True) if o is not None and o.decode() == owner}


async def settled(store: Any, pools: PoolStore, pool: str) -> bool:
    """No match record left, and no group the policy could still form from the pool."""
    if await in_flight(store, pool):
        return False
    tickets = await pools.window(pool)
    if tickets is None:
        return False
    await store.delete(keys.pool_lock(pool))  # our read must not hold the workers off
    return not matching.run_once(tickets, now_ms())


@pytest.mark.slow
@pytest.mark.timeout(120)
async def test_no_ticket_matched_twice_or_lost_when_a_matcher_is_killed(
    valkey: ValkeyProcess, app_id: str
) -> None:
    """Three matchers, one SIGKILLed after every wave: 0 double matches, 0 lost tickets."""
    store = aioredis.Redis.from_url(valkey.url)
    room_store = RoomStore(store, LIMITS, 3_600_000)
    pools = PoolStore(store)
    pool = keys.pool_id(app_id, None)
    rng = random.Random(1234)
    docs: list[RoomDoc] = []
    workers = Matchers(valkey.url, 3)
    orphans: list[tuple[float, float, set[str]]] = []  # (killed at, lease left, claims)
    recovered: list[float] = []  # seconds from the kill until every orphaned claim was retired
    after_lapse: list[float] = []  # the same, from the moment their lease lapsed

    async def watch() -> None:
        while True:
            current = await in_flight(store, pool)
            for item in list(orphans):
                killed_at, lease_left, claims = item
                if not claims & current:
                    recovered.append(time.monotonic() - killed_at)
                    after_lapse.append(recovered[-1] - lease_left)
                    orphans.remove(item)
            await asyncio.sleep(0.02)

    watcher = asyncio.create_task(watch())
    started = time.monotonic()
    kills = 0
    try:
        per_wave = TICKETS // WAVES
        for wave in range(WAVES):
            await workers.ready()
            numbers = range(wave * per_wave, (wave + 1) * per_wave)
            adding = asyncio.create_task(insert(room_store, pools, app_id, numbers, rng))
            # Freeze the victim at random moments until it is caught holding claims, then kill
            # it: its claims are orphaned mid-match, wherever it stood.
            claims: set[str] = set()
            until = time.monotonic() + 20 * UNIT
            while time.monotonic() < until:
                await asyncio.sleep(rng.uniform(0.001, 0.02))
                workers.procs[0].send_signal(signal.SIGSTOP)
                claims = await owned_by(store, pool, workers.victim)
                if claims:
                    break
                workers.procs[0].send_signal(signal.SIGCONT)
            leases = [await store.zscore(keys.pool_matches(pool), m) for m in claims]
            workers.kill_and_restart()
            kills += 1
            if claims:
                lease_left = max(0.0, (max(s or 0 for s in leases) - now_ms()) / 1000)
                orphans.append((time.monotonic(), lease_left, claims))
            docs += await adding

        inserted = time.monotonic()
        deadline = time.monotonic() + 600 * UNIT
        while orphans or not await settled(store, pools, pool):
            assert time.monotonic() < deadline, "the matchers never settled"
            await asyncio.sleep(0.05)
    finally:
        watcher.cancel()
        workers.stop()
    settle_s = time.monotonic() - inserted
    print(f"\ninserted in {inserted - started:.1f}s, settled {settle_s:.1f}s later")

    final = await room_store.load_many(app_id, [d.room_id for d in docs])
    by_id = {d.room_id: d for d in final if d is not None}
    assert len(by_id) == TICKETS
    waiting = {m.decode() for m in await store.zrange(keys.pool_tickets(pool), 0, -1)}

    # every seeker player sits in exactly one room at the end, whatever happened on the way
    seats = Counter(
        p.player_id
        for doc in by_id.values()
        if doc.merged_into is None
        for p in doc.participants
        if p.player_id.startswith("player")
    )
    twice = [player for player, n in seats.items() if n > 1]
    matched = 0
    lost = []
    for doc in by_id.values():
        owner = doc.participant(doc.creator)
        assert owner is not None
        if doc.merged_into is not None:
            target = by_id[doc.merged_into]
            seat = target.of_player(owner.player_id)
            assert seat is not None and seat.via is Via.AUTOMATCH and seat.match_id
            matched += 1
        elif doc.ticket_open:
            if doc.room_id not in waiting:
                lost.append(doc.room_id)
        else:
            assert doc.auto_matched > 0, doc  # its ticket closed only by a match
    # each target counts exactly the movers whose tombstones point at it
    pointing = Counter(d.merged_into for d in by_id.values() if d.merged_into is not None)
    miscounted = [
        (d.room_id, d.auto_matched, pointing[d.room_id])
        for d in by_id.values()
        if d.merged_into is None and d.auto_matched != pointing[d.room_id]
    ]
    print(
        f"\n{TICKETS} tickets, {kills} SIGKILLs: {matched} moved, "
        f"{len(waiting)} still waiting (no valid group), {len(twice)} matched twice, "
        f"{len(lost)} lost, {len(miscounted)} targets miscounted; claims left by a killed "
        f"matcher finished "
        f"{statistics.median(recovered or [0]):.2f}s (median) / {max(recovered or [0]):.2f}s "
        f"(max) after the kill, {max(after_lapse or [0]):.2f}s (max) after their lease lapsed "
        f"({len(recovered)} kills left claims; lease {LEASE_MS / 1000:.1f}s)"
    )
    assert twice == [] and lost == [] and miscounted == []
    assert not await in_flight(store, pool)
    await store.aclose()
