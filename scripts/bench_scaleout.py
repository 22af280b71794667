#!/usr/bin/env python
"""Scale-out cost (docs/spec.md §10, §11): room mutations through one and through two `roomsvc
serve` processes on one Redis, and the CPU time each configuration spends per mutation.

For each configuration the script starts a fresh valkey-server and 1 or 2 `roomsvc serve`
processes (one worker each, as separate hosts would run them), then drives a fixed number of
rooms over raw keep-alive HTTP/1.1: create with 7 invitees, every invitee joins, reportStatus
both ways per invitee, everyone leaves (29 mutations per room, creates counted apart). Every
player is pinned to one process (by a hash of its id, as a load balancer would spread
players), so with two processes a room is mutated through both of them and their room caches
go stale: the compare-and-set catches that, at the price of a re-read, which is the cost
of scale-out this measures.

CPU time is read from /proc/<pid>/stat (utime + stime) of every server and of valkey before
and after the measured rooms (after a warm-up). On a 2-core machine the load generator
competes for the CPU, so compare CPU per mutation, not raw rates (the goal: two processes
spend no more than 10% more server CPU per mutation than one).

    .venv/bin/python scripts/bench_scaleout.py --rooms 400 --concurrency 32
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
import zlib
from pathlib import Path

import httpx
import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rawhttp import Http  # noqa: E402

from roomsvc.auth.tokens import SCOPE_GAMES, mint_token  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402

SECRET = "bench-secret-" + "x" * 24
INVITEES = 7
MUTATIONS_PER_ROOM = INVITEES + 2 * INVITEES + INVITEES + 1  # joins, reportStatus, leaves
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


class Driver:
    """Plays rooms through `ports`, each player pinned to one of them."""

    def __init__(self, ports: list[int], app: str, affinity: str = "player") -> None:
        self.ports = ports
        self.app = app
        self.affinity = affinity
        self.tokens: dict[str, str] = {}
        self.mutations = 0
        self.errors: dict[str, int] = {}

    def token(self, player: str) -> str:
        if player not in self.tokens:
            self.tokens[player] = mint_token(
                SECRET, player, self.app, scopes=(SCOPE_GAMES,), ttl_seconds=3600
            )
        return self.tokens[player]

    def pick(self, conns: list[Http], player: str) -> Http:
        # player: spread by player (a room is mutated through every process); room: every
        # player of a room on one process (players are `<room tag><role>`), no stale caches.
        key = player if self.affinity == "player" else player.rstrip("0123456789")[:-1]
        return conns[zlib.crc32(key.encode()) % len(conns)]

    async def call(self, conns: list[Http], path: str, player: str, body: bytes) -> bytes:
        status, reply = await self.pick(conns, player).post(path, self.token(player), body)
        if status != 200:
            key = f"{path.rsplit('/', 1)[-1]} {status}"
            self.errors[key] = self.errors.get(key, 0) + 1
        return reply if status == 200 else b""

    async def room(self, conns: list[Http], tag: str) -> None:
        creator = f"{tag}c"
        invitees = [f"{tag}i{k}" for k in range(INVITEES)]
        raw = await self.call(
            conns, "/games/v1/rooms/create", creator,
            msgspec.json.encode({"invitedPlayerIds": invitees}),
        )  # fmt: skip
        if not raw:
            return
        room = msgspec.json.decode(raw)
        base = f"/games/v1/rooms/{room['roomId']}"
        ids = {p["player"]["playerId"]: p["id"] for p in room["participants"]}
        for invitee in invitees:
            await self.call(conns, f"{base}/join", invitee, b"{}")
            for who, peer in ((invitee, creator), (creator, invitee)):
                update = {"participantId": ids[peer], "status": "CONNECTION_ESTABLISHED"}
                body = msgspec.json.encode({"updates": [update]})
                await self.call(conns, f"{base}/reportstatus", who, body)
        for player in [*invitees, creator]:
            await self.call(conns, f"{base}/leave", player, b'{"reason":"PLAYER_LEFT"}')
        self.mutations += MUTATIONS_PER_ROOM

    async def run(self, rooms: int, concurrency: int, prefix: str) -> None:
        queue = iter(range(rooms))

        async def worker(w: int) -> None:
            conns = [Http("127.0.0.1", port) for port in self.ports]
            try:
                for n in queue:
                    await self.room(conns, f"{prefix}w{w}r{n}")
            finally:
                for conn in conns:
                    await conn.close()

        await asyncio.gather(*(worker(w) for w in range(concurrency)))


def start_valkey(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", workdir]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return process, f"redis://127.0.0.1:{port}/0"


def start_server(redis_url: str, workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update({"REDIS_URL": redis_url, "ROOMSVC_JWT_SECRET": SECRET,
                "ROOMSVC_LOG_LEVEL": "WARNING"})  # fmt: skip
    argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--port", str(port)]
    process = subprocess.Popen(
        argv, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process, port
        time.sleep(0.1)
    process.kill()
    raise RuntimeError("roomsvc serve did not become ready")


def measure(
    processes: int, rooms: int, warmup: int, concurrency: int, affinity: str
) -> dict[str, float]:
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-")
    valkey, url = start_valkey(workdir)
    servers: list[tuple[subprocess.Popen[bytes], int]] = []
    try:
        time.sleep(0.3)
        servers = [start_server(url, workdir) for _ in range(processes)]
        ports = [port for _, port in servers]
        driver = Driver(ports, "bench-" + uuid.uuid4().hex[:8], affinity)
        asyncio.run(driver.run(warmup, concurrency, "warm"))
        driver.mutations, driver.errors = 0, {}
        pids = [p.pid for p, _ in servers]
        cpu_before = [cpu_seconds(pid) for pid in pids]
        store_before = cpu_seconds(valkey.pid)
        started = time.perf_counter()
        asyncio.run(driver.run(rooms, concurrency, "run"))
        wall = time.perf_counter() - started
        server_cpu = sum(cpu_seconds(pid) - b for pid, b in zip(pids, cpu_before, strict=True))
        store_cpu = cpu_seconds(valkey.pid) - store_before
        if driver.errors:
            print(f"  errors: {driver.errors}", file=sys.stderr)
        return {
            "mutations": driver.mutations,
            "rate": driver.mutations / wall,
            "server_ms": server_cpu * 1000 / driver.mutations,
            "store_ms": store_cpu * 1000 / driver.mutations,
            "errors": sum(driver.errors.values()),
        }
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=15)
        valkey.terminate()
        valkey.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=400, help="measured rooms (29 mutations each)")
    parser.add_argument("--warmup", type=int, default=40, help="rooms played before measuring")
    parser.add_argument("--concurrency", type=int, default=32, help="rooms in flight")
    parser.add_argument("--repeat", type=int, default=1, help="runs per configuration (medians)")
    args = parser.parse_args()
    configs = [(1, "player"), (2, "player"), (2, "room")]
    results: dict[tuple[int, str], list[dict[str, float]]] = {c: [] for c in configs}
    for _ in range(args.repeat):
        for config in configs:
            results[config].append(measure(*config[:1], args.rooms, args.warmup,
                                           args.concurrency, config[1]))  # fmt: skip

    def median(config: tuple[int, str], key: str) -> float:
        values = sorted(r[key] for r in results[config])
        return values[len(values) // 2]

    print(f"{os.cpu_count()} CPUs; {args.rooms} rooms x {MUTATIONS_PER_ROOM} mutations, "
          f"{args.concurrency} in flight, median of {args.repeat}")  # fmt: skip
    labels = {
        (1, "player"): "1 process              ",
        (2, "player"): "2 processes, by player ",
        (2, "room"): "2 processes, by room   ",
    }
    for config in configs:
        print(
            f"  {labels[config]}: {median(config, 'rate'):6.0f} mutations/s   "
            f"server CPU {median(config, 'server_ms'):.3f} ms/mutation   "
            f"valkey CPU {median(config, 'store_ms'):.3f} ms/mutation   "
            f"errors {median(config, 'errors'):.0f}"
        )
    one = median((1, "player"), "server_ms")
    for config in configs[1:]:
        ratio = median(config, "server_ms") / one
        print(f"  server CPU per mutation, {labels[config].strip()} / 1 process: {ratio:.3f}")
    print("  (goal: <= 1.10)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
