"""AddEventBatch ingest throughput (docs/spec.md §11: >= 50,000 items/s) beside bare pipelined XADD.

    .venv/bin/python scripts/bench_analytics.py [--seconds 10] [--batch 1000] [--concurrency 4]

Starts a throwaway valkey-server from the wheel and one `roomsvc serve` process on it, then
from this process: (1) posts batches of `--batch` items to /analytics/v1/AddEventBatch with
`--concurrency` requests in flight for `--seconds`, and counts the items the stream holds;
(2) drives the same store with pipelined XADD of the same stored documents (the same count
in flight, `--batch` commands per pipeline), the limit docs/spec.md §11 quotes beside it; (3) calls
the store layer's append script directly (no HTTP, no validation), the ceiling of this design.
Prints the rates and the ratios. Each phase uses its own stream, checked with XLEN.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx
import msgspec
import redis.asyncio as aioredis

from roomsvc.analytics import rules as analytics
from roomsvc.analytics.store import AnalyticsStore
from roomsvc.auth.tokens import mint_token
from roomsvc.store import keys
from roomsvc.store.embedded import free_port, server_binary

SECRET = "bench-secret-" + "x" * 24


def wait_for(check: Any, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet: connection refused, reset, ...
            pass
        time.sleep(0.05)
    raise SystemExit("bench: a process did not start in time")


def start_valkey(workdir: str, started: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir]  # fmt: skip
    started.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    url = f"redis://127.0.0.1:{port}/0"

    def answers() -> bool:
        import redis

        return bool(redis.Redis.from_url(url).ping())

    wait_for(answers)
    return url


def start_server(redis_url: str, workdir: str, started: list[subprocess.Popen[bytes]]) -> str:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update(REDIS_URL=redis_url, ROOMSVC_JWT_SECRET=SECRET, ROOMSVC_LOG_LEVEL="WARNING")
    argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--port", str(port)]
    started.append(subprocess.Popen(argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL))  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/healthz", timeout=1).status_code == 200)
    return base


def cpu_seconds(pid: int) -> tuple[float, float]:
    """User and system CPU seconds of `pid` so far (Linux /proc), for CPU per item."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan"), float("nan")
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick  # utime, stime


def body(app_id: str, size: int) -> bytes:
    items = [
        {"Timestamp": 1_700_000_000_000 + i, "Event": "DetailsNavigation",
         "Data": [{"PageViewed": f"page_{i}", "ProductId": "123"}, {"ButtonClicked": "play"}]}
        for i in range(size)
    ]  # fmt: skip
    return msgspec.json.encode({"Token": mint_token(SECRET, "bench", app_id), "eventData": items})


async def http_phase(base: str, raw: bytes, seconds: float, concurrency: int) -> tuple[int, float]:
    sent = 0
    deadline = time.perf_counter() + seconds
    headers = {"Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as client:

        async def worker() -> None:
            nonlocal sent
            while time.perf_counter() < deadline:
                response = await client.post("/analytics/v1/AddEventBatch", content=raw,
                                             headers=headers)  # fmt: skip
                if response.json()["StatusCode"] != 0:
                    raise SystemExit(f"bench: ingest failed: {response.text}")
                sent += 1

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return sent, time.perf_counter() - started


async def xadd_phase(
    store: aioredis.Redis, key: str, docs: list[bytes], seconds: float, concurrency: int
) -> tuple[int, float]:
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            pipe = store.pipeline(transaction=False)
            for doc in docs:
                pipe.xadd(key, {"item": doc})
            await pipe.execute()
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - started


async def script_phase(
    store: aioredis.Redis, app_id: str, docs: list[bytes], seconds: float, concurrency: int
) -> tuple[int, float]:
    appender = AnalyticsStore(store)
    done = 0
    deadline = time.perf_counter() + seconds

    async def worker() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            marker = ("m", uuid.uuid4().hex)
            await appender.append(app_id, marker, docs, maxlen=10**9, marker_ttl_ms=60_000)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return done, time.perf_counter() - started


def pure_cpu_per_item(raw: bytes, size: int, rounds: int = 20) -> float:
    """CPU seconds per item of the pure part (decode, checks, documents), best of 5."""
    source = analytics.Source("bench", player_id="bench")
    best = float("inf")
    for _ in range(5):
        started = time.process_time()
        for _ in range(rounds):
            request = analytics.decode_request(raw)
            batch = analytics.parse_batch(request, raw, single=False, max_items=size)
            analytics.records(batch, source, 0)
        best = min(best, (time.process_time() - started) / rounds / size)
    return best


async def run(args: argparse.Namespace, redis_url: str, base: str, pids: dict[str, int]) -> None:
    app_id = "bench-" + uuid.uuid4().hex[:8]
    raw = body(app_id, args.batch)
    request = analytics.decode_request(raw)
    batch = analytics.parse_batch(request, raw, single=False, max_items=args.batch)
    docs = analytics.records(batch, analytics.Source(app_id, player_id="bench"), 0)
    pure = pure_cpu_per_item(raw, args.batch)
    store = aioredis.Redis.from_url(redis_url)
    try:
        # Warm up both paths (script load, connections) outside the measured windows.
        await http_phase(base, raw, 0.5, args.concurrency)
        await store.delete(keys.analytics_stream(app_id))
        pids = {**pids, "client": os.getpid()}
        before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        requests, http_elapsed = await http_phase(base, raw, args.seconds, args.concurrency)
        cpu = {
            name: tuple(
                now - then for now, then in zip(cpu_seconds(pid), before[name], strict=True)
            )
            for name, pid in pids.items()
        }
        stored = int(await store.xlen(keys.analytics_stream(app_id)))
        if stored != requests * args.batch:
            raise SystemExit(f"bench: stream holds {stored}, expected {requests * args.batch}")
        bare_key = f"{{bench:{app_id}}}:bare"
        pipelines, bare_elapsed = await xadd_phase(store, bare_key, docs, args.seconds,
                                                   args.concurrency)  # fmt: skip
        bare = int(await store.xlen(bare_key))
        script_app = app_id + "-script"
        _, script_elapsed = await script_phase(store, script_app, docs, args.seconds,
                                               args.concurrency)  # fmt: skip
        scripted = int(await store.xlen(keys.analytics_stream(script_app)))
        await store.delete(keys.analytics_stream(app_id), bare_key,
                           keys.analytics_stream(script_app))  # fmt: skip
    finally:
        await store.aclose()
    http_rate = stored / http_elapsed
    bare_rate = bare / bare_elapsed
    print(f"batch {args.batch} items, {args.concurrency} in flight, {args.seconds:g} s per phase")
    print(f"AddEventBatch through HTTP: {http_rate:12,.0f} items/s ({stored:,} items, "
          f"{requests / http_elapsed:,.1f} requests/s)")  # fmt: skip
    print(f"bare pipelined XADD:        {bare_rate:12,.0f} items/s ({bare:,} items, "
          f"{pipelines} pipelines)")  # fmt: skip
    script_rate = scripted / script_elapsed
    print(f"append script, no HTTP:     {script_rate:12,.0f} items/s ({scripted:,} items)")
    print(f"CPU per item of validation + documents alone (in process): {pure * 1e6:.1f} us")
    for name, (user, system) in cpu.items():
        print(f"CPU per item in the HTTP phase, {name:6}: {(user + system) / stored * 1e6:5.1f} us "
              f"(user {user / stored * 1e6:.1f}, system {system / stored * 1e6:.1f})")  # fmt: skip
    print(f"ratio HTTP / bare XADD:     {http_rate / bare_rate:12.2f}")
    print(f"ratio HTTP / append script: {http_rate / script_rate:12.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-")
    started: list[subprocess.Popen[bytes]] = []  # stopped in reverse order, whatever happens
    try:
        redis_url = start_valkey(workdir, started)
        base = start_server(redis_url, workdir, started)
        pids = {"server": started[1].pid, "store": started[0].pid}
        asyncio.run(run(args, redis_url, base, pids))
    finally:
        for process in reversed(started):
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
