#!/usr/bin/env python
"""Auto-matched joins into rooms of 4 (docs/spec.md §11): players connect, get the welcome,
create a room with auto-matching for 3 others, and wait for the push of their full room.

    .venv/bin/python scripts/bench_join.py [--players 1000] [--in-flight 100] [--processes 1,2]
        [--warmup 200] [--colyseus ../shared/peers/colyseus] [--profile join.prof]

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
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import join_profile
import msgspec
import redis.asyncio as aioredis
from colyseus_peer import colyseus_cpu_ms, colyseus_dir, colyseus_join, describe_peer
from join_profile import report_calls, report_samples
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed
from wsbench_support import (
    cpu_seconds,
    percentile,
    start_server,
    start_valkey,
    stop,
    ws_url,
)

GROUP = 4
VARIANT = 7
TARGET_CPU_MS = 0.6  # docs/spec.md §11: server CPU per auto-matched join
TARGET_LOCAL, TARGET_REDIS = 2.0, 10.0  # x Colyseus joins/s, single-process and Redis mode
STALL_S = 10.0  # no new room for this long: the players still waiting never will
LIVE = ("ROOM_CONNECTING", "ROOM_ACTIVE")
CREATE = msgspec.json.encode(
    {"jsonrpc": "2.0", "id": 1, "method": "rooms.create", "params": {"body": {
        "autoMatchingCriteria": {"minAutoMatchingPlayers": GROUP - 1,
                                 "maxAutoMatchingPlayers": GROUP - 1},
        "variant": VARIANT}}}
).decode()  # fmt: skip


# Only the fields the client looks at: msgspec skips the rest of each frame without building it.
class PlayerRef(msgspec.Struct):
    playerId: str = ""  # the wire's names


class Part(msgspec.Struct):
    status: str = ""
    player: PlayerRef | None = None


class RoomView(msgspec.Struct):
    roomId: str = ""
    status: str = ""
    participants: list[Part] = []


class Frame(msgspec.Struct):
    method: str | None = None
    id: int | None = None
    params: RoomView | None = None
    result: RoomView | None = None
    error: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(Frame).decode


@dataclass
class Tally:
    seated: list[float] = field(default_factory=list)  # s from the socket's opening
    matched: list[float] = field(default_factory=list)
    full_rooms: dict[str, set[str]] = field(default_factory=dict)  # room -> players pushed it
    rooms_of: dict[str, set[str]] = field(default_factory=dict)  # player -> its full rooms
    pushes: dict[str, int] = field(default_factory=dict)  # player -> roomStatus until matched
    late_pushes: int = 0  # roomStatus pushes after the player's full room
    errors: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    last_match: float = 0.0  # perf_counter of the latest full-room push
    sockets: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    all_matched: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, what: str) -> None:
        self.errors[what[:160]] = self.errors.get(what[:160], 0) + 1

    def done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.all_matched.set()


async def player(name: str, url: str, gate: asyncio.Semaphore, tally: Tally,
                 sockets: list[Any]) -> None:  # fmt: skip
    """One player: open, welcome, create (seated), pushes until its full room (matched); then
    it keeps reading (and counting pushes) until the socket is closed at the end."""
    counted = False
    try:
        async with gate:
            opened = time.perf_counter()
            ws = await connect(url, compression=None, max_queue=None, ping_interval=None,
                               open_timeout=120, close_timeout=5)  # fmt: skip
            sockets.append(ws)
            welcome = _decode(await ws.recv())
            if welcome.method != "welcome":
                raise RuntimeError(f"no welcome: {welcome}")
            await ws.send(CREATE)
            pushes = 0
            while True:
                frame = _decode(await ws.recv())
                if frame.id == 1:
                    if frame.error is not None or frame.result is None:
                        raise RuntimeError(f"rooms.create failed: {frame.error}")
                    tally.seated.append(time.perf_counter() - opened)
                    break
                if frame.method == "roomStatus":
                    pushes += 1
        matched = False
        async for raw in ws:
            frame = _decode(raw)
            if frame.method != "roomStatus" or frame.params is None:
                continue
            if matched:
                tally.late_pushes += 1
                continue
            pushes += 1
            room = frame.params
            if len(room.participants) == GROUP and room.status in LIVE and any(
                p.player is not None and p.player.playerId == name
                and p.status == "PARTICIPANT_JOINED" for p in room.participants
            ):  # fmt: skip
                matched = True
                now = time.perf_counter()
                tally.matched.append(now - opened)
                tally.last_match = now
                tally.pushes[name] = pushes
                tally.full_rooms.setdefault(room.roomId, set()).add(name)
                tally.rooms_of.setdefault(name, set()).add(room.roomId)
                counted = True
                tally.done()
    except ConnectionClosed as exc:
        if not counted:  # closed by the server before the full room (e.g. 1013 overloaded)
            rcvd = exc.rcvd
            tally.error(f"socket closed before matched: {rcvd.code if rcvd else None} "
                        f"{rcvd.reason if rcvd else ''}")  # fmt: skip
    except Exception as exc:
        tally.error(f"{type(exc).__name__}: {exc}")
    finally:
        if not counted:
            tally.done()


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

    @property
    def joins_per_s(self) -> float:
        return len(self.tally.matched) / self.wall

    @property
    def cpu_ms(self) -> float:
        return self.server_cpu / max(1, len(self.tally.matched)) * 1000


async def crowd(urls: list[tuple[str, str]], in_flight: int, give_up_s: float) -> Tally:
    """Every player of `urls` through the four steps; sockets closed once all are matched."""
    tally = Tally(remaining=len(urls))
    gate = asyncio.Semaphore(in_flight)
    sockets: list[Any] = []
    tasks = [asyncio.create_task(player(name, url, gate, tally, sockets)) for name, url in urls]
    started = tally.last_match = time.perf_counter()
    # Until every player is matched or failed; players left waiting (fewer than a room, their
    # partners failed) end it once no room has formed for STALL_S.
    while not tally.all_matched.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_matched.wait(), 0.5)
        now = time.perf_counter()
        if now - tally.last_match > STALL_S or now - started > give_up_s:
            tally.error(f"gave up: {tally.remaining} players not matched "
                        f"({now - tally.last_match:.1f} s without a new room)")  # fmt: skip
            break
    tally.sockets, tally.tasks = sockets, tasks
    return tally


async def close_all(tally: Tally) -> None:
    await asyncio.gather(*(ws.close() for ws in tally.sockets), return_exceptions=True)
    await asyncio.gather(*tally.tasks, return_exceptions=True)


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


def describe(r: Result) -> None:
    t, joins = r.tally, max(1, len(r.tally.matched))
    plural = "es" if r.processes > 1 else ""
    print(f"\nroomsvc, {r.processes} process{plural}: {len(t.matched):,} of {r.players:,} "
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
    results: list[Result], local: dict[str, Any] | None, redis: dict[str, Any] | None
) -> None:
    print("\nratios to Colyseus 0.18 in this run (docs/spec.md §11 targets):")
    for r in results:
        head = f"  roomsvc {r.processes}p"
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
    ratios(results, local, redis)
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
