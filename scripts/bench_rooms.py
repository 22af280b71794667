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

    .venv/bin/python scripts/bench_rooms.py --duration 10
    .venv/bin/python scripts/bench_rooms.py --url http://127.0.0.1:8080 \
        --redis-url redis://127.0.0.1:6379/0 --jwt-secret "$ROOMSVC_JWT_SECRET"
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import itertools
import os
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from rawhttp import Http  # noqa: E402
from wsbench_support import percentile  # noqa: E402

from roomsvc.auth.tokens import SCOPE_GAMES, mint_token  # noqa: E402
from roomsvc.rooms import rules as rooms  # noqa: E402
from roomsvc.rooms.store import LIVE_ROOM_TTL_MS  # noqa: E402
from roomsvc.store import keys  # noqa: E402
from roomsvc.store.batching import CommandBatcher  # noqa: E402
from roomsvc.store.scripts import register, script  # noqa: E402

INVITEES = 7
TARGET_RATE, TARGET_P99_MS = 3000, 20.0


class Tally:
    """Latencies (ms) of mutations that completed inside the measured window."""

    def __init__(self, start: float, end: float) -> None:
        self.start, self.end = start, end
        self.latencies: list[float] = []
        self.by_kind: dict[str, int] = {}
        self.errors: dict[str, int] = {}
        self.creates = 0

    def record(self, kind: str, began: float, done: float, status: int, body: bytes) -> None:
        if status != 200:
            key = f"{kind} {status} {body[:120]!r}"
            self.errors[key] = self.errors.get(key, 0) + 1
        if not self.start <= done <= self.end:
            return
        if kind == "create":
            self.creates += 1
            return
        self.latencies.append((done - began) * 1000)
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1


class RestPlayers:
    """Each worker's players over one keep-alive HTTP connection (the worker's)."""

    def __init__(self, url: str, secret: str, app: str) -> None:
        split = urlsplit(url)
        self.host, self.port = split.hostname or "127.0.0.1", split.port or 80
        self.secret, self.app = secret, app
        self.http: Http | None = None
        self.tokens: dict[str, str] = {}

    async def open(self, players: list[str]) -> None:
        self.http = Http(self.host, self.port)
        for player in players:
            self.tokens[player] = mint_token(
                self.secret, player, self.app, scopes=(SCOPE_GAMES,), ttl_seconds=3600
            )

    async def call(self, player: str, method: str, room_id: str | None, body: bytes) -> Reply:
        assert self.http is not None
        path = REST_PATHS[method].format(room_id=room_id)
        return await self.http.post(path, self.tokens[player], body)

    async def close(self) -> None:
        if self.http is not None:
            await self.http.close()


REST_PATHS = {
    "rooms.create": "/games/v1/rooms/create",
    "rooms.join": "/games/v1/rooms/{room_id}/join",
    "rooms.reportStatus": "/games/v1/rooms/{room_id}/reportstatus",
    "rooms.leave": "/games/v1/rooms/{room_id}/leave",
}
Reply = tuple[int, bytes]


class RpcPlayers:
    """Each player on its own realtime socket (compression off, docs/spec.md §11); every call a
    JSON-RPC request matched to its reply by id; pushes are counted and dropped unread."""

    def __init__(self, url: str, secret: str, app: str) -> None:
        self.ws_url = url.replace("http", "ws", 1) + "/games/v1/realtime"
        self.secret, self.app = secret, app
        self.sockets: dict[str, Any] = {}
        self.pending: dict[int, asyncio.Future[bytes]] = {}
        self.ids = itertools.count(1)
        self.readers: list[asyncio.Task[None]] = []
        self.pushes = 0

    async def open(self, players: list[str]) -> None:
        from websockets.asyncio.client import connect

        for player in players:
            token = mint_token(self.secret, player, self.app, scopes=(SCOPE_GAMES,))
            ws = await connect(self.ws_url, compression=None, max_queue=None,
                               additional_headers={"Authorization": f"Bearer {token}"})  # fmt: skip
            await ws.recv()  # the welcome
            self.sockets[player] = ws
            self.readers.append(asyncio.create_task(self._read(ws)))

    async def _read(self, ws: Any) -> None:
        with contextlib.suppress(Exception):
            async for raw in ws:
                if raw.startswith('{"jsonrpc":"2.0","method"'):
                    self.pushes += 1
                    continue
                reply = msgspec.json.decode(raw)
                future = self.pending.pop(reply.get("id"), None)
                if future is not None and not future.done():
                    future.set_result(raw)

    async def call(self, player: str, method: str, room_id: str | None, body: bytes) -> Reply:
        request_id = next(self.ids)
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        room = f'"roomId":"{room_id}",' if room_id else ""
        await self.sockets[player].send(
            f'{{"jsonrpc":"2.0","id":{request_id},"method":"{method}",'
            f'"params":{{{room}"body":{body.decode()}}}}}'
        )
        raw = await future
        reply = msgspec.json.decode(raw)
        if "error" in reply:
            return int(reply["error"].get("data", {}).get("code", 500)), raw.encode()
        return 200, msgspec.json.encode(reply["result"])

    async def close(self) -> None:
        for ws in self.sockets.values():
            with contextlib.suppress(Exception):
                await ws.close()
        for reader in self.readers:
            reader.cancel()


async def worker(players: RestPlayers | RpcPlayers, number: int, deadline: float,
                 tally: Tally) -> None:  # fmt: skip
    """Play rooms one after another with the same 8 players (a studio's players play game
    after game, so a token is verified once and then cached, as in production)."""
    clock = time.perf_counter
    creator = f"w{number}c"
    invitees = [f"w{number}i{k}" for k in range(INVITEES)]
    await players.open([creator, *invitees])

    async def call(kind: str, method: str, player: str, room_id: str | None,
                   body: bytes) -> dict[str, Any]:  # fmt: skip
        began = clock()
        status, reply = await players.call(player, method, room_id, body)
        tally.record(kind, began, clock(), status, reply)
        return msgspec.json.decode(reply) if status == 200 else {}

    try:
        while clock() < deadline:
            invited = msgspec.json.encode({"invitedPlayerIds": invitees})
            room = await call("create", "rooms.create", creator, None, invited)
            if not room:
                continue
            room_id = room["roomId"]
            pids = {p["player"]["playerId"]: p["id"] for p in room["participants"]}
            for invitee in invitees:
                if clock() >= deadline:
                    return
                await call("join", "rooms.join", invitee, room_id, b"{}")
                for who, peer in ((invitee, creator), (creator, invitee)):
                    update = {"participantId": pids[peer], "status": "CONNECTION_ESTABLISHED"}
                    body = msgspec.json.encode({"updates": [update]})
                    await call("reportStatus", "rooms.reportStatus", who, room_id, body)
            for player in [*invitees, creator]:
                await call("leave", "rooms.leave", player, room_id, b'{"reason":"PLAYER_LEFT"}')
    finally:
        await players.close()


class FloorPlayers(RestPlayers):
    """The same requests to `http_floor_app.py`: what uvicorn + Starlette alone cost."""

    async def call(self, player: str, method: str, room_id: str | None, body: bytes) -> Reply:
        if method == "rooms.create":  # the floor has no rooms: make up the create's reply
            return 200, msgspec.json.encode(
                {
                    "roomId": "floor",
                    "participants": [
                        {"id": f"p{n}", "player": {"playerId": p}}
                        for n, p in enumerate(self.tokens)
                    ],
                }
            )
        return await super().call(player, method, room_id, body)


@contextlib.contextmanager
def floor_server() -> Iterator[tuple[str, int]]:
    """`http_floor_app.py` under uvicorn with `roomsvc serve`'s HTTP flags."""
    import subprocess

    from roomsvc.store.embedded import free_port
    from tests.support import wait_until

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "scripts"),
            "http_floor_app:app", "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(argv)
    try:
        wait_until(lambda: _listening(port))
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


async def transport_phase(kind: type[RestPlayers] | type[RpcPlayers], url: str, secret: str,
                          duration: float, concurrency: int) -> tuple[Tally, int]:  # fmt: skip
    app = "bench-" + uuid.uuid4().hex[:8]
    warmup = min(2.0, duration / 5)
    now = time.perf_counter()
    tally = Tally(now + warmup, now + warmup + duration)
    transports = [kind(url, secret, app) for _ in range(concurrency)]
    await asyncio.gather(*(worker(t, w, tally.end, tally) for w, t in enumerate(transports)))
    return tally, sum(getattr(t, "pushes", 0) for t in transports)


def sample_room(app: str, room_id: str) -> rooms.RoomDoc:
    """An 8-player room after everyone joined, as the server stores it."""
    ids = (f"p_{i:012x}" for i in itertools.count())
    doc = rooms.create(
        room_id=room_id,
        app_id=app,
        player_id="bench-creator",
        name="Creator",
        avatar="https://example.com/a.png",
        invited=[f"bench-invitee-{k}" for k in range(INVITEES)],
        criteria=None,
        variant=None,
        capabilities=[],
        xmpp_address=None,
        ids=ids,
        now_ms=1_700_000_000_000,
        limits=rooms.Limits(),
    )
    for k in range(INVITEES):
        doc = rooms.join(
            doc,
            f"bench-invitee-{k}",
            capabilities=[],
            xmpp_address=None,
            now_ms=1_700_000_000_000 + k,
            limits=rooms.Limits(),
        )
    return doc


async def cas_phase(redis_url: str, duration: float, concurrency: int, *, batched: bool) -> Tally:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, max_connections=concurrency + 4)
    cas = (
        functools.partial(CommandBatcher(client).call, script("room_cas"))
        if batched
        else register(client, "room_cas")
    )
    app = "bench-cas-" + uuid.uuid4().hex[:8]
    warmup = min(2.0, duration / 5)
    now = time.perf_counter()
    tally = Tally(now + warmup, now + warmup + duration)
    clock = time.perf_counter

    async def driver(n: int) -> None:
        room_id = f"cas{n}"
        doc = sample_room(app, room_id)
        encoded = msgspec.msgpack.encode(doc)
        channels = [keys.player_channel(app, p.player_id) for p in doc.participants]
        room_keys = [keys.room(app, room_id), keys.room_applied(app, room_id)]
        version = 0
        while clock() < tally.end:
            began = clock()
            reply = await cas(
                keys=room_keys,
                args=[version, version + 1, encoded, uuid.uuid4().hex, LIVE_ROOM_TTL_MS,
                      f"{room_id} {version + 1}", *channels],
            )  # fmt: skip
            tally.record("cas", began, clock(), 200 if int(reply[0]) == 1 else 409, b"")
            version += 1

    try:
        await asyncio.gather(*(driver(n) for n in range(concurrency)))
    finally:
        await client.aclose()
    return tally


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
