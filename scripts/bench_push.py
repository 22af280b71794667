"""Push latency: room change committed -> frame on every participant's socket (docs/spec.md §11
target: p99 <= 10 ms at 1,000 pushes/s, with 1,000 connections).

    .venv/bin/python scripts/bench_push.py [--connections 1000] [--room-size 4] [--rate 250]
                                            [--seconds 10] [--profile push.cpu.json]

Starts a throwaway valkey-server from the wheel and one `roomsvc serve` process on it. This
process opens `--connections` realtime sockets (`roomsvc.client`, one player each,
`--room-size` players per room, rooms created and joined over REST), then commits `--rate` room
changes per second for `--seconds` through the store layer itself (`RoomStore.mutate`: the same
compare-and-set script that publishes), spread over the rooms, and timestamps each commit just
before the script is sent. Each socket timestamps each `roomStatus` it receives; the clock is
this process's, so the two are comparable. Prints, per delivery and per change (until its LAST
participant has it), p50/p99/max, and the deliveries/s achieved. A push is one frame on one
socket: the default rate of 250 changes/s to rooms of 4 makes 1,000 pushes/s.

Then, in the same run, the limit docs/spec.md §11 quotes beside the figure: the bare fan-out of a
uvicorn server with the same WebSocket settings sending a frame of the same size to as many
sockets, with nothing else to do (wsbench_support.py). Both are reported as server CPU per
delivery and as the deliveries/s one core would sustain, with their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import shutil
import signal
import sys
import tempfile
import time
import uuid
from typing import Any

import httpx
import join_profile
import msgspec
import redis.asyncio as aioredis
from join_profile import report_samples
from wsbench_support import (
    SECRET,
    add_floor_ws,
    cpu_seconds,
    cpu_split,
    measure_bare_fanout,
    percentile,
    retrying_post,
    start_bare_fanout,
    start_server,
    start_valkey,
    stop,
)

from roomsvc.auth.tokens import mint_token
from roomsvc.client import RoomsvcClient
from roomsvc.common.clock import now_ms
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore

_encode = msgspec.json.Encoder().encode
BARE_ROUNDS = 50


def server_histogram(metrics: str) -> str:
    """p50/p99 upper bounds from the server's roomsvc_push_seconds histogram buckets."""
    buckets = []
    for line in metrics.splitlines():
        if line.startswith("roomsvc_push_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0
    if not total:
        return "no pushes recorded"
    bound_at = {q: next(b for b, c in buckets if c >= q * total) for q in (0.5, 0.99)}
    return f"p50 <= {bound_at[0.5] * 1000:g} ms, p99 <= {bound_at[0.99] * 1000:g} ms (buckets)"


def gc_pauses(metrics: str) -> str:
    """The server's collector pauses (roomsvc_gc_pause_seconds) since it started, by
    generation: a full collection stalls every socket at once, so it sets the p99."""
    counts: dict[str, float] = {}
    sums: dict[str, float] = {}
    for line in metrics.splitlines():
        for suffix, into in (("_count{", counts), ("_sum{", sums)):
            if line.startswith("roomsvc_gc_pause_seconds" + suffix):
                generation = line.split('generation="')[1].split('"')[0]
                into[generation] = float(line.rsplit(" ", 1)[1])
    return ", ".join(
        f"gen{g}: {counts[g]:.0f} x {sums.get(g, 0) / counts[g] * 1000:.2f} ms"
        for g in sorted(counts) if counts[g]
    ) or "none recorded"  # fmt: skip


class Receiver:
    """One participant on `roomsvc.client` (compression off, no reconnect). Its arrival stamp
    is taken in the listener, after the client parsed the frame: ~7 us later than the frame's
    arrival, and the client costs no more CPU per push than raw sockets that parse with msgspec
    (docs/performance.md "Load generators")."""

    def __init__(self, client: RoomsvcClient,
                 arrivals: dict[tuple[str, int], list[float]]) -> None:  # fmt: skip
        self.client = client
        self.arrivals = arrivals
        self.size = 0  # characters of a roomStatus frame (the bare fan-out sends as many)
        client.on("roomStatus", self.on_room)

    def on_room(self, params: dict[str, Any]) -> None:
        at = time.perf_counter()
        key = (params["roomId"], params["roomStatusVersion"])
        self.arrivals.setdefault(key, []).append(at)
        if not self.size:  # once: the frame as the server encodes it
            frame = {"jsonrpc": "2.0", "method": "roomStatus", "params": params}
            self.size = len(_encode(frame))


async def setup_rooms(
    base: str, app: str, connections: int, size: int
) -> list[tuple[str, list[str]]]:
    made: list[tuple[str, list[str]]] = []
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=base, timeout=60, limits=limits) as http:
        post = retrying_post(http, app, "bench_push")

        async def one(n: int) -> None:
            players = [f"p{n}x{k}" for k in range(size)]
            room = await post(
                "/games/v1/rooms/create", players[0], {"invitedPlayerIds": players[1:]}
            )
            for player in players[1:]:
                await post(f"/games/v1/rooms/{room['roomId']}/join", player, {})
            made.append((room["roomId"], players))

        await asyncio.gather(*(one(n) for n in range(connections // size)))
    return made


async def run(
    args: argparse.Namespace, base: str, redis_url: str, server_pid: int, bare: tuple[int, int]
) -> None:
    app = "bench-" + uuid.uuid4().hex[:8]
    made = await setup_rooms(base, app, args.connections, args.room_size)
    arrivals: dict[tuple[str, int], list[float]] = {}
    receivers: list[Receiver] = []
    gate = asyncio.Semaphore(100)

    async def open_one(player: str) -> None:
        async with gate:
            client = RoomsvcClient(base, mint_token(SECRET, player, app), reconnect=False,
                                   compression=None, call_timeout=60)  # fmt: skip
            receiver = Receiver(client, arrivals)
            await client.connect()  # the welcome: the socket is registered
            receivers.append(receiver)

    await asyncio.gather(*(open_one(p) for _, players in made for p in players))
    print(f"bench_push: {len(receivers)} sockets open, {len(made)} rooms of {args.room_size}")

    store = aioredis.Redis.from_url(redis_url, max_connections=128)
    in_flight = asyncio.Semaphore(64)
    limits = Limits()
    room_store = RoomStore(store, limits, 3_600_000)
    docs = {room_id: await room_store.load(app, room_id, fresh=True) for room_id, _ in made}
    pids = {
        room_id: [(p.player_id, p.id) for p in doc.participants]  # type: ignore[union-attr]
        for room_id, doc in docs.items()
    }
    committed: dict[tuple[str, int], float] = {}
    total = int(args.rate * args.seconds)
    interval = 1.0 / args.rate

    async def change(n: int) -> None:
        room_id, _ = made[n % len(made)]
        (me, _), (_, peer) = pids[room_id][0], pids[room_id][1]
        status = "CONNECTION_ESTABLISHED" if (n // len(made)) % 2 == 0 else "CONNECTION_FAILED"

        def apply(doc: rooms.RoomDoc) -> rooms.RoomDoc | None:
            return rooms.report_status(doc, me, [(peer, status)], now_ms=now_ms(), limits=limits)

        async with in_flight:
            sent = time.perf_counter()
            applied = await room_store.mutate(app, room_id, apply, request_id=uuid.uuid4().hex)
        if applied.changed:
            committed[(room_id, applied.room.version)] = sent

    # This process's own collector would pause it for 100+ ms with a thousand sockets open,
    # delaying commits after their timestamps and arrivals before theirs: the figures would
    # be the client's. It is off while measuring (the window allocates little).
    gc.collect()
    gc.freeze()
    gc.disable()
    if args.profile:
        os.kill(server_pid, signal.SIGUSR1)  # the sampler starts (scripts/join_profile.py)
    idle_from = cpu_seconds(server_pid)
    await asyncio.sleep(2.0)  # the server's own background (duties, pings), to subtract
    idle_per_s = (cpu_seconds(server_pid) - idle_from) / 2.0
    cpu_before = cpu_seconds(server_pid)
    split_before = cpu_split(server_pid)
    start = time.perf_counter()
    tasks = []
    for n in range(total):
        delay = start + n * interval - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(change(n)))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - start
    await asyncio.sleep(1.0)  # let the last pushes land
    if args.profile:
        os.kill(server_pid, signal.SIGUSR2)  # ... and writes what it sampled
    gc.enable()
    gc.unfreeze()
    server_cpu = cpu_seconds(server_pid) - cpu_before
    user, system = (a - b for a, b in zip(cpu_split(server_pid), split_before, strict=True))
    pushing_cpu = max(0.0, server_cpu - idle_per_s * (time.perf_counter() - start))

    per_delivery: list[float] = []
    per_change: list[float] = []
    missing = 0
    for key, sent in committed.items():
        got = arrivals.get(key, [])
        missing += args.room_size - len(got)
        per_delivery += [(at - sent) * 1000 for at in got]
        if len(got) == args.room_size:
            per_change.append((max(got) - sent) * 1000)
    deliveries = sum(len(v) for k, v in arrivals.items() if k in committed)
    print(f"bench_push: {len(committed)} changes in {elapsed:.1f}s "
          f"({len(committed) / elapsed:.0f} changes/s, {deliveries / elapsed:.0f} pushes/s), "
          f"{missing} deliveries coalesced away")  # fmt: skip
    per_push_us = pushing_cpu / max(1, deliveries) * 1e6
    one_core = 1e6 / max(per_push_us, 1e-9)
    print(f"bench_push: server CPU {server_cpu:.2f}s (user {user:.2f}s, system {system:.2f}s), "
          f"{idle_per_s:.2f}s/s of it background: "
          f"{per_push_us:.0f} us per push (one core: {one_core:.0f} pushes/s)")  # fmt: skip
    for label, values in (("per push", per_delivery), ("per change, all sockets", per_change)):
        p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
        print(f"bench_push: {label}: p50 {p50:.2f} ms, p99 {p99:.2f} ms, "
              f"max {max(values, default=0):.2f} ms")  # fmt: skip
    async with httpx.AsyncClient() as http:
        exposed = (await http.get(f"{base}/metrics")).text
        print("bench_push: server side (commit -> frame written):", server_histogram(exposed))
        print("bench_push: server's collector pauses since start (count x mean):",
              gc_pauses(exposed))  # fmt: skip
    for receiver in receivers:
        await receiver.client.close()
    await store.aclose()
    size = max((r.size for r in receivers), default=1000)
    bare_cpu, bare_rate = await measure_bare_fanout(*bare, len(receivers), BARE_ROUNDS, size)
    bare_core = 1 / max(bare_cpu, 1e-9)
    print(f"bench_push: bare fan-out limit, same run ({len(receivers)} sockets, {size}-char "
          f"frames, served with {args.floor_ws}'s WebSocket protocol): "
          f"{bare_cpu * 1e6:.1f} us server CPU per delivery (one core: {bare_core:.0f} "
          f"deliveries/s; {bare_rate:.0f}/s received)")  # fmt: skip
    print(f"bench_push: push path vs bare fan-out: {one_core / bare_core:.3f} of the limit "
          f"({per_push_us / (bare_cpu * 1e6):.1f}x the CPU of a bare delivery)")  # fmt: skip
    if args.profile:
        for _ in range(100):
            if os.path.exists(args.profile):  # noqa: ASYNC240 (written by the server)
                break
            await asyncio.sleep(0.1)
        # (the 2 s of background before the changes are sampled too: a few percent)
        report_samples(args.profile, max(1, deliveries), per_push_us / 1000, unit="push",
                       basis="measured in this run, the sampler on")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--room-size", type=int, default=4)
    parser.add_argument("--rate", type=float, default=250.0, help="room changes per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--profile",
        default=None,
        metavar="FILE",
        help="run the server under the CPU sampler of scripts/join_profile.py while the changes "
        "are made, write its samples to FILE and print where a push's CPU goes",
    )
    add_floor_ws(parser)
    args = parser.parse_args()
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-push-")
    valkey, redis_url = start_valkey(workdir)
    env = {"ROOMSVC_WS_MAX_CONNECTIONS_PER_PLAYER": "2"}
    try:
        launcher = None
        if args.profile:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(args.profile)
            launcher = [sys.executable, join_profile.__file__, "cpu", args.profile, "--"]
        server, base = start_server(redis_url, workdir, env, launcher=launcher)
        bare, bare_port = start_bare_fanout(args.floor_ws)
        try:
            import uvloop

            uvloop.run(run(args, base, redis_url, server.pid, (bare.pid, bare_port)))
        finally:
            stop([(server, 60), (bare, 10)], "bench_push")
    finally:
        stop([(valkey, 30)], "bench_push")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
