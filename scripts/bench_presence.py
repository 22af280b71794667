"""Presence release time (docs/spec.md §6): a dropped socket -> the push showing its player LEFT,
against the number of connected players.

    .venv/bin/python scripts/bench_presence.py [--players 100,1000] [--room-size 4] [--grace 1]
                                               [--spread 5] [--load 150]

For each `--players` count N: starts a throwaway valkey-server from the wheel and one
`roomsvc serve` process with ROOMSVC_PRESENCE_GRACE_SECONDS=`--grace`, creates N/`--room-size`
rooms over REST (a host inviting the others, who join), and opens one realtime socket per
player. Half of the rooms are load: a child process holds their sockets and commits `--load`
room changes per second to them through the store layer (`RoomStore.mutate` of a peer report:
pushes to every socket, the busy server a real game sees). In the other half, held by this
process, the last player of every room cuts its socket without a close frame (as a lost
network would), at random instants over `--spread` seconds; each remaining participant
timestamps the first `roomStatus` showing the dropped player LEFT (this process's clock, and
this process only receives those rooms' pushes, so its timestamps are prompt). Prints, per N,
the latency of every such push (p50/p99/max), the same net of the grace period, how many never
came within `3 * grace + 10` seconds, the part up to the release's commit (the room's
updated_ms), /healthz round trips meanwhile (the server's event-loop delay), and, measured
before the drops, the server's CPU and the store's commands per second per connected player
(heartbeats, sweeps, the load's writes), by command.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx
import redis
import redis.asyncio as aioredis
from wsbench_support import SECRET, cpu_seconds, percentile, retrying_post, wait_for

from roomsvc.auth.tokens import mint_token
from roomsvc.client import RoomsvcClient
from roomsvc.common.clock import now_ms
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore
from roomsvc.store.embedded import free_port, server_binary


def command_calls(port: int) -> dict[str, int]:
    """The commands the store ran so far, by name (INFO commandstats; a script's inner calls
    count)."""
    stats = redis.Redis(port=port).info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()
            if k != "cmdstat_info"}  # fmt: skip


class Servers:
    """A throwaway valkey-server and one `roomsvc serve` on free loopback ports."""

    def __init__(self, grace: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="roomsvc-bench-presence-")
        self.store_port = free_port()
        argv = [str(server_binary()), "--port", str(self.store_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]  # fmt: skip
        self.valkey = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: redis.Redis(port=self.store_port).ping())
        self.redis_url = f"redis://127.0.0.1:{self.store_port}/0"
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        env.update(REDIS_URL=self.redis_url, ROOMSVC_JWT_SECRET=SECRET,
                   ROOMSVC_LOG_LEVEL="WARNING", ROOMSVC_PRESENCE_GRACE_SECONDS=str(grace),
                   ROOMSVC_DATA_DIR=os.path.join(self.dir, "data"))  # fmt: skip
        argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port)]  # fmt: skip
        self.server = subprocess.Popen(argv, cwd=self.dir, env=env, stdin=subprocess.DEVNULL)
        self.base = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.base}/healthz").status_code == 200)

    def stop(self) -> None:
        for process, grace in ((self.server, 60), (self.valkey, 30)):
            process.terminate()
            try:
                process.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


class Watcher:
    """One remaining participant (`roomsvc.client`): when each dropped player first showed LEFT.
    The stamp is taken in the listener, after the client parsed the frame (~7 us; the client
    costs no more CPU per push than raw sockets: docs/performance.md "Load generators")."""

    def __init__(self, client: RoomsvcClient, left_at: dict[tuple[str, str], list[float]],
                 gone: dict[str, str]) -> None:  # fmt: skip
        self.left_at, self.gone = left_at, gone
        self.seen: set[str] = set()
        client.on("roomStatus", self.on_room)

    def on_room(self, room: dict[str, Any]) -> None:
        at = time.perf_counter()
        room_id = room["roomId"]
        player = self.gone.get(room_id)
        if player is None or room_id in self.seen:
            return
        for p in room.get("participants") or ():
            if (p.get("player") or {}).get("playerId") == player and (
                p.get("status") == "PARTICIPANT_LEFT"
            ):
                self.seen.add(room_id)
                self.left_at.setdefault((room_id, player), []).append(at)


async def setup_rooms(base: str, app: str, players: int, size: int) -> list[list[str]]:
    made: list[list[str]] = []
    async with httpx.AsyncClient(base_url=base, timeout=60,
                                 limits=httpx.Limits(max_connections=64)) as http:  # fmt: skip
        post = retrying_post(http, app, "bench_presence")

        gate = asyncio.Semaphore(32)

        async def one(n: int) -> None:
            names = [f"p{n}x{k}" for k in range(size)]
            async with gate:
                room = await post("/games/v1/rooms/create", names[0],
                                  {"invitedPlayerIds": names[1:]})  # fmt: skip
                for name in names[1:]:
                    await post(f"/games/v1/rooms/{room['roomId']}/join", name, {})
            made.append([room["roomId"], *names])

        await asyncio.gather(*(one(n) for n in range(players // size)))
    return made


async def one_size(args: argparse.Namespace, players: int) -> dict[str, Any]:
    servers = Servers(args.grace)
    try:
        return await measure(args, players, servers)
    finally:
        servers.stop()


def player_client(base: str, app: str, player: str) -> RoomsvcClient:
    """A player that never reconnects: a drop must stay a drop."""
    return RoomsvcClient(base, mint_token(SECRET, player, app), reconnect=False,
                         compression=None, call_timeout=60)  # fmt: skip


def load_child(base: str, redis_url: str, app: str, made: list[list[str]], rate: float,
               ready: Any, stop: Any) -> None:  # fmt: skip
    """Another process: holds the sockets of the load rooms and commits `rate` changes/s."""
    import uvloop

    uvloop.run(load_rooms(base, redis_url, app, made, rate, ready, stop))


async def load_rooms(base: str, redis_url: str, app: str, made: list[list[str]], rate: float,
                     ready: Any, stop: Any) -> None:  # fmt: skip
    gate = asyncio.Semaphore(64)

    async def open_one(player: str) -> RoomsvcClient:
        client = player_client(base, app, player)
        async with gate:
            await client.connect()  # the welcome: registered, presence deadline written
        return client

    sockets = await asyncio.gather(*(open_one(p) for _, *names in made for p in names))
    store = aioredis.Redis.from_url(redis_url, max_connections=64)
    limits = Limits()
    room_store = RoomStore(store, limits, 3_600_000)
    ids: dict[str, list[tuple[str, str]]] = {}
    for room_id, *_ in made:
        doc = await room_store.load(app, room_id, fresh=True)
        if doc is not None:
            ids[room_id] = [(p.player_id, p.id) for p in doc.participants]
    ready.set()
    in_flight = asyncio.Semaphore(32)

    async def change(room_id: str, status: str) -> None:
        (me, _), (_, peer) = ids[room_id][0], ids[room_id][1]

        def apply(doc: rooms.RoomDoc) -> rooms.RoomDoc | None:
            return rooms.report_status(doc, me, [(peer, status)], now_ms=now_ms(), limits=limits)

        async with in_flight:
            with contextlib.suppress(Exception):  # a room that no longer allows it: skipped
                await room_store.mutate(app, room_id, apply, request_id=uuid.uuid4().hex)

    tasks: set[asyncio.Task[None]] = set()
    room_ids, n, start = list(ids), 0, time.perf_counter()
    while not stop.is_set() and rate > 0 and room_ids:
        delay = start + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        status = "CONNECTION_FAILED" if (n // len(room_ids)) % 2 else "CONNECTION_ESTABLISHED"
        task = asyncio.create_task(change(room_ids[n % len(room_ids)], status))
        tasks.add(task)
        task.add_done_callback(tasks.discard)
        n += 1
    while not stop.is_set():  # noqa: ASYNC110 (a process's event, not the loop's)
        await asyncio.sleep(0.1)
    await asyncio.gather(*tasks)
    for client in sockets:
        client.drop()
    await asyncio.gather(*(client.close() for client in sockets))
    await store.aclose()


async def measure(args: argparse.Namespace, players: int, servers: Servers) -> dict[str, Any]:
    app = "bench-" + uuid.uuid4().hex[:8]
    made = await setup_rooms(servers.base, app, players, args.room_size)
    # Half of the players (at least one room) sit in rooms that lose a player, held by this
    # process, which timestamps their pushes; the others are the load, held by a child.
    dropping = made[: max(1, len(made) // 2)]
    ctx = multiprocessing.get_context("spawn")
    ready, stop = ctx.Event(), ctx.Event()
    child = ctx.Process(target=load_child, args=(servers.base, servers.redis_url, app,
                        made[len(dropping) :], args.load, ready, stop))  # fmt: skip
    child.start()
    gone: dict[str, str] = {}  # room -> the player who drops, filled at the drop
    left_at: dict[tuple[str, str], list[float]] = {}
    sockets: dict[str, RoomsvcClient] = {}
    watchers: list[Watcher] = []
    gate = asyncio.Semaphore(64)

    async def open_one(player: str, watch: bool) -> None:
        client = sockets[player] = player_client(servers.base, app, player)
        if watch:
            watchers.append(Watcher(client, left_at, gone))
        async with gate:
            await client.connect()  # the welcome: registered, presence deadline written

    try:
        await asyncio.gather(*(open_one(p, p != names[-1])
                               for _, *names in dropping for p in names))  # fmt: skip
        while not ready.is_set():  # polled: a process's event, not the loop's
            if not child.is_alive():
                raise SystemExit("bench_presence: the load process failed")
            await asyncio.sleep(0.1)
        return await drops(args, app, players, servers, dropping, sockets, gone, left_at)
    finally:
        stop.set()
        child.join(timeout=60)
        for client in sockets.values():
            client.drop()
        await asyncio.gather(*(client.close() for client in sockets.values()))


async def drops(args: argparse.Namespace, app: str, players: int, servers: Servers,
                dropping: list[list[str]], sockets: dict[str, RoomsvcClient],
                gone: dict[str, str],
                left_at: dict[tuple[str, str], list[float]]) -> dict[str, Any]:  # fmt: skip
    # Heartbeats (and the load) alone: every player connected.
    pid = servers.server.pid
    await asyncio.sleep(2 * args.grace + 1)
    cpu0, cmds0, t0 = cpu_seconds(pid), command_calls(servers.store_port), time.perf_counter()
    await asyncio.sleep(args.settle)
    settled_s = time.perf_counter() - t0
    settled_cpu = (cpu_seconds(pid) - cpu0) / settled_s
    cmds1 = command_calls(servers.store_port)
    by_name = {k: (v - cmds0.get(k, 0)) / settled_s for k, v in cmds1.items()}
    settled_cmds = sum(by_name.values())
    top = sorted(((-v, k) for k, v in by_name.items() if v > 0))[:6]

    rng = random.Random(args.seed)
    dropped_at: dict[tuple[str, str], float] = {}

    async def drop(room_id: str, player: str) -> None:
        await asyncio.sleep(rng.uniform(0, args.spread))
        gone[room_id] = player
        dropped_at[(room_id, player)] = time.perf_counter()
        sockets[player].drop()

    cpu1 = cpu_seconds(pid)
    began = time.perf_counter()
    await asyncio.gather(*(drop(room_id, names[-1]) for room_id, *names in dropping))
    watchers_of = args.room_size - 1
    bound = time.perf_counter() + 3 * args.grace + 10
    health: list[float] = []  # /healthz round trips meanwhile: the server's event-loop delay
    async with httpx.AsyncClient(base_url=servers.base, timeout=30) as http:
        while time.perf_counter() < bound:  # polled: arrivals are counted, not signalled
            if sum(map(len, left_at.values())) >= len(dropped_at) * watchers_of:
                break
            sent = time.perf_counter()
            await http.get("/healthz")
            health.append(time.perf_counter() - sent)
            await asyncio.sleep(0.1)
    busy_cpu = (cpu_seconds(pid) - cpu1) / (time.perf_counter() - began)
    latencies = [at - dropped_at[key] for key, ats in left_at.items() for at in ats]
    # The server's commit time of each release (the room's updated_ms: nothing else changes
    # these rooms), on the wall clock this process shares with it: drop -> commit is the
    # sweep's part, commit -> push the delivery's.
    offset = time.time() - time.perf_counter()
    store = aioredis.Redis.from_url(servers.redis_url)
    room_store = RoomStore(store, Limits(), 3_600_000)
    to_commit: list[float] = []
    for (room_id, player), at in dropped_at.items():
        doc = await room_store.load(app, room_id, fresh=True)
        if doc is not None and (p := doc.of_player(player)) and p.status is rooms.PStatus.LEFT:
            to_commit.append(doc.updated_ms / 1000 - (at + offset))
    await store.aclose()
    missing = len(dropped_at) * watchers_of - len(latencies)
    return {"players": players, "drops": len(dropped_at), "pushes": len(latencies),
            "missing": missing, "p50": percentile(latencies, 0.5),
            "commit_p50": percentile(to_commit, 0.5), "commit_p99": percentile(to_commit, 0.99),
            "p99": percentile(latencies, 0.99), "max": max(latencies, default=float("nan")),
            "settled_cpu": settled_cpu, "settled_cmds": settled_cmds,
            "settled_top": ", ".join(f"{k} {-v:.0f}" for v, k in top),
            "busy_cpu": busy_cpu, "health_p50": percentile(health, 0.5),
            "health_p99": percentile(health, 0.99)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--players", default="100,1000", help="comma-separated counts")
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--grace", type=int, default=1, help="ROOMSVC_PRESENCE_GRACE_SECONDS")
    parser.add_argument("--spread", type=float, default=5.0, help="seconds the drops span")
    parser.add_argument("--load", type=float, default=150.0, help="room changes/s meanwhile")
    parser.add_argument("--settle", type=float, default=5.0,
                        help="seconds measured before the drops (heartbeats and load)")  # fmt: skip
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    if args.room_size < 2:
        parser.error("--room-size >= 2: somebody must see the drop")
    print("bench_presence:", " ".join(sys.argv), f"(load average {os.getloadavg()[0]:.2f})")
    import uvloop

    for players in (int(n) for n in args.players.split(",")):
        r = uvloop.run(one_size(args, players))
        print(f"bench_presence: {r['players']} players, {r['drops']} drops over {args.spread:g}s "
              f"with {args.load:g} changes/s: drop -> LEFT push p50 {r['p50']:.2f}s, "
              f"p99 {r['p99']:.2f}s, max {r['max']:.2f}s (grace {args.grace}s; p50 "
              f"{r['p50'] - args.grace:+.2f}s, p99 {r['p99'] - args.grace:+.2f}s past it); "
              f"{r['missing']} of {r['pushes'] + r['missing']} pushes missing")  # fmt: skip
        print(f"bench_presence: {r['players']} players: drop -> release committed p50 "
              f"{r['commit_p50']:.2f}s, p99 {r['commit_p99']:.2f}s (the rest is the push); "
              f"/healthz meanwhile p50 {1000 * r['health_p50']:.0f} ms, "
              f"p99 {1000 * r['health_p99']:.0f} ms")  # fmt: skip
        print(f"bench_presence: {r['players']} players connected, before the drops: server "
              f"CPU {100 * r['settled_cpu']:.1f}% of a core, store {r['settled_cmds']:.0f} "
              f"commands/s ({r['settled_cmds'] / r['players']:.3f} per player per second); "
              f"during the drops: server CPU {100 * r['busy_cpu']:.0f}%")  # fmt: skip
        print(f"bench_presence: {r['players']} players connected, commands/s: {r['settled_top']}")
    print(f"bench_presence: load average {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
