#!/usr/bin/env python
"""Auto-matched joins into rooms of 4 (docs/spec.md §11): players connect, get the welcome,
create a room with auto-matching for 3 others, and wait for the push of their full room.

    .venv/bin/python scripts/bench_join.py [--players 1000] [--in-flight 100] [--processes 1,2]
        [--warmup 200] [--colyseus ../shared/peers/colyseus] [--profile join.prof] [--no-floor]

For each process count P the script starts a fresh valkey-server from the wheel and P
`roomsvc serve` processes on it (one worker each, as separate hosts would run them; each runs
its own matcher rounds on the one pool), and players alternate between them. A warm-up of
`--warmup` players goes through the same steps first, untimed, and closes. Then `--players`
players, their tokens minted beforehand (roomsvc.auth.mint_token), at most `--in-flight` of them
between opening their socket and the reply to their `rooms.create` at once, each:

1. opens a realtime socket (raw `websockets`, compression off) and reads the welcome;
2. calls `rooms.create` with `autoMatchingCriteria` {min 3, max 3} and a variant: the reply
   seats it in its own room (to seated);
3. reads pushes until one shows a live room of 4 with itself JOINED (to matched).

joins/s = players / (first socket opened -> last player matched). Reported: p50/p99 to seated
and to matched (from the socket's opening), server CPU per join (utime + stime of every server
process from /proc over the same window, and the store's apart), this client's own CPU per
join (it shares the 2 cores), pushes each player received, rooms formed (distinct full rooms;
each must have been pushed to exactly 4 players), players matched twice (must be 0), and the
store commands per join (valkey `INFO commandstats` before and after).

With `--colyseus DIR` (the peer of docs/spec.md §11), the same run then measures Colyseus 0.18's
join phase on this machine: a fresh `node server.mjs` and `node load.mjs join --n N --conc K`
(its own warm-up of 200), locally and with its Redis presence and driver on a fresh valkey,
and prints each roomsvc figure as a ratio to Colyseus's with the §11 targets. Without
`node_modules` in DIR (a read-only checkout), its package files are copied to a cache directory
and installed there with `npm ci` (or `npm install`, which still honours the lock).

Then, unless `--no-floor`, the same players (after the same warm-up) against the floor: uvicorn
with the same flags and WebSocket protocol (`--floor-ws websockets-sansio`: uvicorn's) serving
`scripts/join_floor.py`, which sends the frames of a join and does
nothing else. roomsvc's CPU per join is printed as a ratio to it: what the transport alone costs
on this machine, in this run.

With `--profile FILE`, one more single-process pass runs the server under cProfile (enabled by
SIGUSR1 just before the measured players, written by SIGUSR2 after them) and prints where a
join's server CPU goes: exclusive time by component, the inclusive time of each stage
(file:function), and the calls per join; the shares are scaled to the CPU per join of the
unprofiled single-process pass.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import join_floor
import join_profile
import redis.asyncio as aioredis
from colyseus_peer import colyseus_cpu_ms, colyseus_dir, colyseus_join, describe_peer
from join_players import GROUP, Tally, close_all, crowd
from join_profile import report_calls, report_samples
from wsbench_support import (
    add_floor_ws,
    cpu_seconds,
    percentile,
    start_server,
    start_valkey,
    stop,
    ws_url,
)

TARGET_CPU_MS = 0.6  # docs/spec.md §11: server CPU per auto-matched join
TARGET_LOCAL, TARGET_REDIS = 2.0, 10.0  # x Colyseus joins/s, single-process and Redis mode


async def commandstats(redis_url: str) -> dict[str, int]:
    client = aioredis.Redis.from_url(redis_url)
    try:
        info = await client.info("commandstats")
    finally:
        await client.aclose()
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


@dataclass
class Result:
    processes: int
    players: int
    wall: float
    tally: Tally
    server_cpu: float
    store_cpu: float
    client_cpu: float
    background_cpu_per_s: float
    commands: dict[str, int]
    label: str = "roomsvc"

    @property
    def joins_per_s(self) -> float:
        return len(self.tally.matched) / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / max(1, len(self.tally.matched)) * 1000


async def measure(args: argparse.Namespace, processes: int, *,
                  profile: tuple[str, str] | None = None) -> Result:  # fmt: skip
    """One pass; `profile` = (mode, file): the first server runs under `profiled_serve`."""
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-join-")
    valkey, redis_url = start_valkey(workdir)
    env = {"ROOMSVC_PRESENCE_GRACE_SECONDS": "3600",  # warm-up players leave after the run
           "ROOMSVC_WS_MAX_CONNECTIONS": "100000"}  # fmt: skip
    in_flight = args.in_flight
    if profile and profile[0] == "calls":  # cProfile makes a join ~6x dearer: fewer at once
        env["ROOMSVC_STORE_DEADLINE_MS"] = "20000"
        in_flight = args.profile_in_flight
    servers: list[subprocess.Popen[bytes]] = []
    try:
        bases = []
        for n in range(processes):
            launcher = None
            if profile and n == 0:
                launcher = [sys.executable, join_profile.__file__, *profile, "--"]
            server, base = start_server(redis_url, workdir, env, launcher=launcher)
            servers.append(server)
            bases.append(base)
        app = "bench-" + uuid.uuid4().hex[:8]
        warm = [(f"w{i}", ws_url(bases[i % processes], app, f"w{i}")) for i in range(args.warmup)]
        names = [f"j{i}" for i in range(args.players)]
        urls = [(name, ws_url(bases[i % processes], app, name)) for i, name in enumerate(names)]
        if warm:
            await close_all(await crowd(warm, in_flight, args.timeout))
        await asyncio.sleep(1.0)
        pids = [s.pid for s in servers]
        idle0, t_idle = sum(cpu_seconds(p) for p in pids), time.perf_counter()
        await asyncio.sleep(1.0)
        background = (sum(cpu_seconds(p) for p in pids) - idle0) / (time.perf_counter() - t_idle)
        commands0 = await commandstats(redis_url)
        if profile:
            os.kill(pids[0], signal.SIGUSR1)
            await asyncio.sleep(0.2)
        cpu0, store0 = sum(cpu_seconds(p) for p in pids), cpu_seconds(valkey.pid)
        client0, t0 = time.process_time(), time.perf_counter()
        tally = await crowd(urls, in_flight, args.timeout)
        wall = tally.last_match - t0  # the run ends with the last full-room push
        server_cpu = sum(cpu_seconds(p) for p in pids) - cpu0
        store_cpu = cpu_seconds(valkey.pid) - store0
        client_cpu = time.process_time() - client0
        if profile:
            os.kill(pids[0], signal.SIGUSR2)
        commands1 = await commandstats(redis_url)
        await asyncio.sleep(0.5)  # pushes that follow the full room (counted as late)
        await close_all(tally)
        if profile:
            for _ in range(100):
                if os.path.exists(profile[1]):  # noqa: ASYNC240 (written by the server)
                    break
                await asyncio.sleep(0.1)
        commands = {k: v - commands0.get(k, 0) for k, v in commands1.items()}
        commands["info"] = commands.get("info", 0) - 1
        commands = {k: v for k, v in commands.items() if v > 0}
        return Result(processes, args.players, wall, tally, server_cpu, store_cpu, client_cpu,
                      background, commands)  # fmt: skip
    finally:
        stop([(s, 30) for s in servers], "bench_join")
        stop([(valkey, 10)], "bench_join")
        shutil.rmtree(workdir, ignore_errors=True)


async def measure_floor(args: argparse.Namespace) -> Result:
    """The same players against the bare join server (scripts/join_floor.py), one process."""
    server, base = join_floor.start(args.floor_ws)
    try:

        def url(name: str) -> str:
            return f"{ws_url(base, 'floor', name)}&player={name}"

        warm = [(f"w{i}", url(f"w{i}")) for i in range(args.warmup)]
        if warm:
            await close_all(await crowd(warm, args.in_flight, args.timeout))
        await asyncio.sleep(1.0)
        urls = [(f"j{i}", url(f"j{i}")) for i in range(args.players)]
        cpu0, client0, t0 = cpu_seconds(server.pid), time.process_time(), time.perf_counter()
        tally = await crowd(urls, args.in_flight, args.timeout)
        wall = tally.last_match - t0
        server_cpu = cpu_seconds(server.pid) - cpu0
        client_cpu = time.process_time() - client0
        await close_all(tally)
        return Result(1, args.players, wall, tally, server_cpu, 0.0, client_cpu, 0.0, {}, "floor")
    finally:
        stop([(server, 10)], "bench_join")


def describe(r: Result) -> None:
    t, joins = r.tally, max(1, len(r.tally.matched))
    plural = "es" if r.processes > 1 else ""
    print(f"\n{r.label}, {r.processes} process{plural}: {len(t.matched):,} of {r.players:,} "
          f"players matched in {r.wall:.2f} s = {r.joins_per_s:,.0f} joins/s")  # fmt: skip
    print(f"  to seated (open -> create reply): p50 {percentile(t.seated, 0.5) * 1000:.1f} ms, "
          f"p99 {percentile(t.seated, 0.99) * 1000:.1f} ms")  # fmt: skip
    print(f"  to matched (open -> full-room push): p50 {percentile(t.matched, 0.5) * 1000:.1f} ms,"
          f" p99 {percentile(t.matched, 0.99) * 1000:.1f} ms")  # fmt: skip
    print(f"  server CPU {r.server_cpu:.2f} s = {r.cpu_ms:.3f} ms per join "
          f"({r.server_cpu / r.wall:.0%} of a core; background before the run "
          f"{r.background_cpu_per_s:.0%}); store {r.store_cpu / joins * 1000:.3f} ms per join; "
          f"this client {r.client_cpu / joins * 1000:.3f} ms per join "
          f"({r.client_cpu / r.wall:.0%} of a core)")  # fmt: skip
    pushes = list(t.pushes.values())
    spread = {n: pushes.count(n) for n in sorted(set(pushes))}
    print(f"  roomStatus pushes per player until matched: mean "
          f"{sum(pushes) / max(1, len(pushes)):.2f} (players by count: {spread}); "
          f"{t.late_pushes} after the full room")  # fmt: skip
    odd = sum(1 for players in t.full_rooms.values() if len(players) != GROUP)
    twice = sum(1 for rooms in t.rooms_of.values() if len(rooms) > 1)
    print(f"  rooms formed: {len(t.full_rooms):,} (ideal {r.players // GROUP:,}); rooms not pushed "
          f"to exactly {GROUP} players: {odd}; players matched twice: {twice}")  # fmt: skip
    total = sum(r.commands.values())
    top = ", ".join(f"{k} {v / joins:.2f}" for k, v in sorted(r.commands.items(),
                    key=lambda kv: -kv[1]))  # fmt: skip
    print(f"  store commands per join: {total / joins:.2f} ({top})")
    for error, count in sorted(t.errors.items()):
        print(f"  ERROR x{count}: {error}")


def ratios(
    results: list[Result],
    local: dict[str, Any] | None,
    redis: dict[str, Any] | None,
    floor: Result | None,
) -> None:
    print("\nratios to Colyseus 0.18 and to the floor in this run (docs/spec.md §11 targets):")
    for r in results:
        head = f"  roomsvc {r.processes}p"
        if floor is not None and floor.tally.matched and r.processes == 1:
            print(f"{head} / the floor: server CPU per join {r.cpu_ms / floor.cpu_ms:.2f}x "
                  f"({r.cpu_ms:.3f} ms against {floor.cpu_ms:.3f} ms); joins/s "
                  f"{r.joins_per_s / floor.joins_per_s:.2f}x")  # fmt: skip
        if local and "error" not in local:
            rate = r.joins_per_s / local["joins_per_s"]
            cpu = r.cpu_ms / colyseus_cpu_ms(local)
            seated = [percentile(r.tally.seated, q) * 1000 for q in (0.5, 0.99)]
            matched = [percentile(r.tally.matched, q) * 1000 for q in (0.5, 0.99)]
            print(f"{head} / Colyseus local: joins/s {rate:.2f}x (target >= {TARGET_LOCAL:g}x: "
                  f"{'met' if rate >= TARGET_LOCAL else 'NOT met'}); server CPU per join "
                  f"{cpu:.2f}x; p50/p99 to seated {seated[0] / local['p50_ms']:.2f}x/"
                  f"{seated[1] / local['p99_ms']:.2f}x, to matched "
                  f"{matched[0] / local['p50_ms']:.2f}x/"
                  f"{matched[1] / local['p99_ms']:.2f}x")  # fmt: skip
        if redis and "error" not in redis:
            rate = r.joins_per_s / redis["joins_per_s"]
            met = "met" if rate >= TARGET_REDIS else "NOT met"
            print(f"{head} / Colyseus Redis: joins/s {rate:.2f}x (target >= {TARGET_REDIS:g}x: "
                  f"{met}); rooms {len(r.tally.full_rooms)} vs {redis['rooms']}")  # fmt: skip
        ok = "met" if r.cpu_ms <= TARGET_CPU_MS else "NOT met"
        print(f"{head}: server CPU per join {r.cpu_ms:.3f} ms (target <= {TARGET_CPU_MS} ms: "
              f"{ok}: {r.cpu_ms / TARGET_CPU_MS:.2f}x the target)")  # fmt: skip


# ---- main ------------------------------------------------------------------------------------


async def run(args: argparse.Namespace) -> None:
    print(f"bench_join: {args.players:,} players, {args.in_flight} in flight, rooms of {GROUP}, "
          f"warm-up {args.warmup}; load average {os.getloadavg()[0]:.2f}")  # fmt: skip
    results = []
    for processes in args.processes:
        result = await measure(args, processes)
        describe(result)
        results.append(result)
    local = redis = None
    if args.colyseus:
        directory = colyseus_dir(Path(os.path.abspath(args.colyseus)))  # noqa: ASYNC240
        local = colyseus_join(directory, args.players, args.in_flight, redis=False)
        describe_peer("single process", local)
        redis = colyseus_join(directory, args.players, args.in_flight, redis=True)
        describe_peer("with Redis presence + driver", redis)
    floor = None
    if args.floor:
        floor = await measure_floor(args)
        print("\nthe floor (scripts/join_floor.py: the frames of a join and nothing else):")
        describe(floor)
    ratios(results, local, redis, floor)
    if args.profile:
        one = next((r for r in results if r.processes == 1), None)
        for mode, suffix in (("cpu", ".cpu.json"), ("calls", ".calls.prof")):
            path = args.profile + suffix
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
            print(f"\nprofiled pass ({mode}), 1 process:", end="")
            profiled = await measure(args, 1, profile=(mode, path))
            describe(profiled)
            if mode == "cpu":
                report_samples(path, len(profiled.tally.matched), (one or profiled).cpu_ms)
            else:
                report_calls(path, len(profiled.tally.matched))
    print(f"\nload average at the end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", type=int, default=1000)
    parser.add_argument(
        "--in-flight",
        type=int,
        default=100,
        help="players between opening their socket and being seated",
    )
    parser.add_argument("--processes", default="1,2", help="server process counts, e.g. 1,2")
    parser.add_argument("--warmup", type=int, default=200, help="untimed players first")
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds for all to match")
    parser.add_argument("--colyseus", default=None, help="the Colyseus peer's directory")
    parser.add_argument(
        "--no-floor",
        dest="floor",
        action="store_false",
        help="skip the bare join server (scripts/join_floor.py)",
    )
    add_floor_ws(parser)
    parser.add_argument(
        "--profile",
        default=None,
        metavar="PREFIX",
        help="two more 1-process passes, profiled: PREFIX.cpu.json (CPU-weighted "
        "stack samples) and PREFIX.calls.prof (cProfile call counts)",
    )
    parser.add_argument(
        "--profile-in-flight", type=int, default=20, help="players in flight in the profiled pass"
    )
    args = parser.parse_args()
    args.processes = [int(p) for p in args.processes.split(",") if p]
    if args.players % GROUP or args.warmup % GROUP:
        parser.error(f"--players and --warmup must be multiples of {GROUP}")
    import uvloop

    uvloop.run(run(args))


if __name__ == "__main__":
    main()
