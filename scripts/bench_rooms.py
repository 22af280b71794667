#!/usr/bin/env python
"""Room mutations per second one `roomsvc serve` process handles through REST (docs/spec.md §11),
beside the bare compare-and-set script driven from one Python process on the same store.

Phase 1 (REST): `--concurrency` keep-alive connections, each a worker that plays rooms one
after another: create a room with 7 invitees, then every invitee joins and reports
CONNECTION_ESTABLISHED to the creator and the creator back (reportStatus), then everyone
leaves: 7 joins, 14 reportStatus, 8 leaves per room (creates are counted apart). Every room
and player is distinct, so requests never contend on one room: this measures the process.

Phase 2 (bare CAS): `room_cas.lua` by EVALSHA from this process, `--concurrency` in flight,
with the same arguments the server sends (an encoded 8-player room, a request id, 8 channels
to publish on), each coroutine on its own room. This is the limit docs/spec.md §11 quotes beside
the REST figure.

Without `--url`, the script starts its own valkey-server and `roomsvc serve` (one worker) and
also reports their CPU time per mutation. The HTTP client is a few lines of raw HTTP/1.1 over
keep-alive sockets so that the client, which shares the machine, costs as little as possible.
The players live in rooms_players.py, the HTTP floor and the bare CAS in rooms_limits.py.

    .venv/bin/python scripts/bench_rooms.py --duration 10
    .venv/bin/python scripts/bench_rooms.py --url http://127.0.0.1:8080 \
        --redis-url redis://127.0.0.1:6379/0 --jwt-secret "$ROOMSVC_JWT_SECRET"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rooms_limits import cas_phase, floor_server  # noqa: E402
from rooms_players import FloorPlayers, RestPlayers, RpcPlayers, Tally, transport_phase  # noqa: E402
from wsbench_support import percentile  # noqa: E402

TARGET_RATE, TARGET_P99_MS = 3000, 20.0


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process and its live children (`serve --workers N` runs its workers
    as children), from /proc (Linux)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    own = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    children = Path(f"/proc/{pid}/task/{pid}/children")
    kids = children.read_text().split() if children.exists() else []
    return own + sum(cpu_seconds(int(kid)) for kid in kids if Path(f"/proc/{kid}").exists())


@contextlib.contextmanager
def own_service(workers: int) -> Iterator[tuple[str, str, str, list[int]]]:
    from tests.support import JWT_SECRET, ServerProcess, ValkeyProcess

    valkey = ValkeyProcess().start()
    server = ServerProcess(valkey.url, workers=workers)
    try:
        server.start()
        pids = [p for p in (server.process, valkey.process) if p is not None]
        yield server.base_url, valkey.url, JWT_SECRET, [p.pid for p in pids]
    finally:
        server.stop()
        valkey.stop()


def report(name: str, tally: Tally, duration: float) -> float:
    rate = len(tally.latencies) / duration
    print(
        f"{name}: {rate:,.0f} mutations/s  p50 {percentile(tally.latencies, 0.5):.2f} ms  "
        f"p99 {percentile(tally.latencies, 0.99):.2f} ms  max {max(tally.latencies or [0]):.1f} ms"
    )
    if tally.by_kind and list(tally.by_kind) != ["cas"]:
        mix = ", ".join(f"{k} {v:,}" for k, v in sorted(tally.by_kind.items()))
        print(f"  mix: {mix}; creates {tally.creates / duration:,.0f}/s (not counted)")
    for error, count in sorted(tally.errors.items()):
        print(f"  ERROR x{count}: {error}")
    return rate


def cpu_report(pids: list[int], before: list[float], after: list[float], span: float,
               requests: int) -> None:  # fmt: skip
    for label, pid, a, b in zip(("server", "valkey"), pids, before, after, strict=False):
        per = (b - a) / requests * 1e6
        print(f"  {label} pid {pid}: {(b - a) / span:.0%} of a core, ~{per:.0f} us CPU/request")


async def measured(name: str, args: argparse.Namespace, pids: list[int], phase: Any, *,
                   target: bool = True) -> tuple[Tally, float]:  # fmt: skip
    cpu_before = [cpu_seconds(p) for p in pids]
    started, client_before = time.perf_counter(), time.process_time()
    tally, pushes = await phase
    span = time.perf_counter() - started
    cpu_after = [cpu_seconds(p) for p in pids]
    client = (time.process_time() - client_before) / span
    rate = report(name, tally, args.duration)
    if pushes:
        print(f"  pushes received by the players: {pushes / span:,.0f}/s")
    if pids and tally.latencies:
        # CPU is counted over the warm-up too: divide by every request the span saw.
        requests = (len(tally.latencies) + tally.creates) * span / args.duration
        cpu_report(pids, cpu_before, cpu_after, span, int(requests))
        # The client shares the machine: near a full core, it, not the server, sets the pace.
        print(f"  this client: {client:.0%} of a core")
    if rate and target:
        ok = rate >= TARGET_RATE and percentile(tally.latencies, 0.99) <= TARGET_P99_MS
        print(f"  target >= {TARGET_RATE:,}/s with p99 <= {TARGET_P99_MS:.0f} ms: "
              f"{'met' if ok else 'NOT met'}")  # fmt: skip
    return tally, rate


async def run(args: argparse.Namespace, url: str, redis_url: str, secret: str,
              pids: list[int]) -> None:  # fmt: skip
    print(f"{url}: {args.concurrency} games at once, {args.duration:.0f} s measured per phase")
    rates: dict[str, float] = {}
    for name, kind in (("REST", RestPlayers), ("RPC", RpcPlayers)):
        if args.only and args.only != name.lower():
            continue
        phase = transport_phase(kind, url, secret, args.duration, args.concurrency)
        _, rates[name] = await measured(f"{name} (join/leave/reportStatus)", args, pids, phase)
    with floor_server() as (floor_url, floor_pid):
        phase = transport_phase(FloorPlayers, floor_url, secret, args.duration, args.concurrency)
        _, floor = await measured("floor: bare Starlette route, same client", args, [floor_pid],
                                  phase, target=False)  # fmt: skip
    if floor:
        for name, rate in rates.items():
            print(f"{name} / floor = {rate / floor:.2f}")
    limits = {}
    for batched in (False, True):
        label = "batched (store/batching.py)" if batched else "one at a time"
        cas = await cas_phase(redis_url, args.duration, args.concurrency, batched=batched)
        limits[label] = report(f"bare room_cas.lua from this process, {label}", cas, args.duration)
    for name, rate in rates.items():
        ratios = ", ".join(f"{rate / limit:.2f} of {label}" for label, limit in limits.items()
                           if limit)  # fmt: skip
        print(f"{name} / bare CAS: {ratios}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", help="a running roomsvc (default: start valkey + serve)")
    parser.add_argument("--redis-url", default=os.environ.get("REDIS_URL"))
    parser.add_argument("--jwt-secret", default=os.environ.get("ROOMSVC_JWT_SECRET"))
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds/phase")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--workers", type=int, default=1, help="serve workers when started here")
    parser.add_argument("--server-pid", type=int, help="with --url: report this process's CPU")
    parser.add_argument("--only", choices=("rest", "rpc"), help="measure one transport")
    args = parser.parse_args()
    try:
        from uvloop import run as run_loop
    except ImportError:
        run_loop = asyncio.run  # type: ignore[assignment]
    if args.url:
        if not args.redis_url or not args.jwt_secret:
            parser.error(
                "--url needs --redis-url and --jwt-secret (or REDIS_URL, ROOMSVC_JWT_SECRET)"
            )
        pids = [args.server_pid] if args.server_pid else []
        run_loop(run(args, args.url, args.redis_url, args.jwt_secret, pids))
        return
    with own_service(args.workers) as (url, redis_url, secret, pids):
        run_loop(run(args, url, redis_url, secret, pids))


if __name__ == "__main__":
    main()
