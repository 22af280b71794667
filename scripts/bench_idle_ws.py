"""Idle realtime sockets one process holds, and its RSS per socket (docs/spec.md §11 target: >=
19,500 idle WebSockets in one process at <= 30 KB RSS each; a bare uvicorn socket costs ~25 KB
here).

    ulimit -n 20000   # the open-file cap bounds both the server and each client process
    .venv/bin/python scripts/bench_idle_ws.py [--connections 19500] [--clients 4]

Starts a throwaway valkey-server from the wheel and one `roomsvc serve` process (one worker).
Warms the server up with a few hundred sockets, closes them, and reads its RSS from /proc;
then `--clients` child processes open `--connections` realtime sockets in total, one player
each (every socket gets its welcome, its pub/sub subscription and its presence deadline, as
in production), and hold them idle. Prints how many the server holds, its RSS growth per
socket, and whether it still answers /healthz and a new socket's welcome.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

import httpx
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from wsbench_support import rss_kb, start_server, start_valkey, stop, ws_url


async def hold(base: str, app: str, first: int, count: int) -> None:
    """Child: open `count` sockets (players first..first+count-1), report, hold until stdin ends."""
    sockets = []
    gate = asyncio.Semaphore(64)

    async def open_one(n: int) -> None:
        async with gate:
            for _ in range(20):
                try:
                    ws = await connect(ws_url(base, app, f"idle{n}"), compression=None,
                                       open_timeout=60)  # fmt: skip
                    await ws.recv()  # welcome
                    sockets.append(ws)
                    return
                except (TimeoutError, OSError, ConnectionClosed, InvalidStatus):
                    await asyncio.sleep(0.5)  # e.g. 1013 while the server is busy: retry

    await asyncio.gather(*(open_one(n) for n in range(first, first + count)))
    print(f"ready {len(sockets)}", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    for ws in sockets:
        await ws.close()


def open_sockets(base: str) -> int:
    """The server's own count: the roomsvc_websocket_connections gauge on /metrics."""
    for line in httpx.get(f"{base}/metrics", timeout=30).text.splitlines():
        if line.startswith("roomsvc_websocket_connections "):
            return int(float(line.split()[1]))
    raise SystemExit("bench: no roomsvc_websocket_connections on /metrics")


async def warm_up(base: str, app: str, count: int) -> None:
    sockets = [await connect(ws_url(base, app, f"warm{n}"), compression=None) for n in range(count)]
    for ws in sockets:
        await ws.recv()
    for ws in sockets:
        await ws.close()


async def still_serving(base: str, app: str) -> bool:
    async with httpx.AsyncClient() as http:
        healthy = (await http.get(f"{base}/healthz", timeout=10)).status_code == 200
    ws = await connect(ws_url(base, app, "late"), compression=None, open_timeout=30)
    welcome = await ws.recv()
    await ws.close()
    return healthy and '"welcome"' in str(welcome)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=19_500)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--child", nargs=4, metavar=("BASE", "APP", "FIRST", "COUNT"))
    args = parser.parse_args()
    import uvloop

    if args.child:
        base, app, first, count = args.child
        uvloop.run(hold(base, app, int(first), int(count)))
        return
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-idle-")
    valkey, redis_url = start_valkey(workdir)
    server: subprocess.Popen[bytes] | None = None
    children: list[subprocess.Popen[str]] = []
    try:
        env = {"ROOMSVC_WS_MAX_CONNECTIONS": str(args.connections + 1000)}
        server, base = start_server(redis_url, workdir, env)
        app = "bench-" + uuid.uuid4().hex[:8]
        uvloop.run(warm_up(base, app, 300))
        time.sleep(1.0)
        before = rss_kb(server.pid)
        share = args.connections // args.clients
        started = time.monotonic()
        for index in range(args.clients):
            count = share if index < args.clients - 1 else args.connections - share * index
            children.append(subprocess.Popen(
                [sys.executable, __file__, "--child", base, app, str(index * share), str(count)],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            ))  # fmt: skip
        for child in children:
            if child.stdout:
                child.stdout.readline()  # "ready N" once its sockets are open (or it failed)
        opened_in = time.monotonic() - started
        time.sleep(2.0)
        held = open_sockets(base)
        after = rss_kb(server.pid)
        serving = uvloop.run(still_serving(base, app))
        per_socket = (after - before) / max(1, held)
        print(f"bench_idle_ws: {held} of {args.connections} idle sockets held by one process "
              f"(opened in {opened_in:.1f}s, {held / opened_in:.0f}/s)")  # fmt: skip
        print(f"bench_idle_ws: server RSS {before / 1024:.1f} MB -> {after / 1024:.1f} MB = "
              f"{per_socket:.1f} KB per socket (target <= 30 KB)")  # fmt: skip
        print(f"bench_idle_ws: still answering /healthz and a new socket's welcome: {serving}")
    finally:
        for child in children:
            if child.stdin:
                child.stdin.close()
        for child in children:
            try:
                child.wait(timeout=60)
            except subprocess.TimeoutExpired:
                child.kill()
        stop([(server, 60)] if server is not None else [], "bench_idle_ws")
        stop([(valkey, 30)], "bench_idle_ws")
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
