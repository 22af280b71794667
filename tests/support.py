"""Real parts for tests: a throwaway valkey-server from the wheel, real `roomsvc serve`
processes on free ports, and token helpers. Never a fake store (README, Testing)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import redis.asyncio as aioredis

from roomsvc.auth.tokens import SCOPE_GAMES, Principal, mint_token
from roomsvc.matching.pools import PoolStore
from roomsvc.rooms import wire
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.service import RoomsService
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import ViewContext
from roomsvc.store.embedded import free_port, server_binary

# Every duration in a test is a multiple of this unit, so a slow machine can scale them all
# (ROOMSVC_TEST_TIME_SCALE=3). No test asserts a timing.
UNIT = 0.1 * float(os.environ.get("ROOMSVC_TEST_TIME_SCALE", "1"))
JWT_SECRET = "test-secret-" + "x" * 24
ROOT = Path(__file__).resolve().parent.parent
LOADTEST_SCRIPT = ROOT / "scripts" / "loadtest.py"


def wait_until(predicate: Callable[[], Any], timeout: float = 100 * UNIT,
               interval: float = 0.02) -> Any:  # fmt: skip
    """Poll `predicate` (blocking) until it returns something truthy, and return that."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout:.1f}s: {predicate}")
        time.sleep(interval)


async def eventually(check: Callable[[], Awaitable[Any]], what: str = "the condition",
                     within: float = 100 * UNIT, every: float = 0.025) -> Any:  # fmt: skip
    """Poll `check` until it returns something truthy, and return that: for what happens in
    the background (the matcher, sweeps, pushes, a store coming back)."""
    deadline = time.monotonic() + within
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"never within {within:.1f}s: {what}")
        await asyncio.sleep(every)


class ValkeyProcess:
    """A valkey-server child on a free loopback port (no persistence unless asked)."""

    def __init__(self, port: int | None = None, extra: tuple[str, ...] = ()) -> None:
        self.port = port or free_port()
        self.dir = tempfile.mkdtemp(prefix="roomsvc-valkey-")
        self.extra = extra
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ValkeyProcess:
        argv = [
            str(server_binary()),
            "--port", str(self.port), "--bind", "127.0.0.1",
            "--save", "", "--appendonly", "no", "--dir", self.dir,
            *self.extra,
        ]  # fmt: skip
        self.process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self.ping)
        return self

    def ping(self) -> bool:
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as sock:
                sock.sendall(b"*1\r\n$4\r\nPING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
            self.process = None


class ServerProcess:
    """A real `roomsvc serve` on a free port, with its output kept for assertions."""

    def __init__(self, redis_url: str | None, env: dict[str, str] | None = None,
                 workers: int = 1, cwd: Path | None = None) -> None:  # fmt: skip
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.workers = workers
        self.cwd = cwd or Path(tempfile.mkdtemp(prefix="roomsvc-serve-"))
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        self.env.pop("REDIS_URL", None)
        self.env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        self.env["ROOMSVC_JWT_SECRET"] = JWT_SECRET
        if redis_url:
            self.env["REDIS_URL"] = redis_url
        self.env.update(env or {})
        self.log_path = self.cwd / f"serve-{self.port}.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> ServerProcess:
        argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--port", str(self.port),
                "--workers", str(self.workers)]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                argv, cwd=self.cwd, env=self.env, stdout=log, stderr=log, stdin=subprocess.DEVNULL
            )
        if wait:
            wait_until(self.healthy, timeout=200 * UNIT)
        return self

    def healthy(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"roomsvc serve exited early:\n{self.output()}")
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        if self.process is not None:
            self.process.send_signal(sig)

    def stop(self, timeout: float = 30) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        code = self.process.returncode
        self.process = None
        return code

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None


@contextlib.contextmanager
def running_server(redis_url: str | None, **kwargs) -> Iterator[ServerProcess]:  # type: ignore[no-untyped-def]
    server = ServerProcess(redis_url, **kwargs).start()
    try:
        yield server
    finally:
        server.stop()


def new_app_id() -> str:
    """A fresh tenant per test: tests never see each other's rooms, so no flushing."""
    return "app-" + uuid.uuid4().hex[:10]


def token(player: str, app: str, *, name: str | None = None,
          scopes: tuple[str, ...] = (SCOPE_GAMES,), ttl: int = 3600) -> str:  # fmt: skip
    return mint_token(JWT_SECRET, player, app, name=name, scopes=scopes, ttl_seconds=ttl)


def auth(player: str, app: str, **kwargs) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {"Authorization": f"Bearer {token(player, app, **kwargs)}"}


def raw_websocket(server: ServerProcess, player: str, app: str,
                  receive_buffer: int | None = None) -> socket.socket:  # fmt: skip
    """A realtime socket opened by hand: the handshake and nothing more, so the test decides
    whether it ever answers a ping or reads a frame. The response head is read byte by byte:
    nothing the server sends after it is consumed."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:  # set before connecting: the window is negotiated then
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.settimeout(100 * UNIT)
    sock.connect(("127.0.0.1", server.port))
    key = base64.b64encode(os.urandom(16)).decode()
    request = (
        f"GET /games/v1/realtime?access_token={token(player, app)} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    sock.sendall(request.encode())
    head = b""
    while not head.endswith(b"\r\n\r\n"):
        byte = sock.recv(1)
        if not byte:
            raise AssertionError(f"closed during the handshake: {head[:80]!r}")
        head += byte
    assert head.startswith(b"HTTP/1.1 101"), head[:80]
    return sock


def roomsvc_cli(*args: str, env: dict[str, str] | None = None, cwd: Path | None = None,
                timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    base = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    base.pop("REDIS_URL", None)
    base.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "roomsvc.cli", *args],
        env=base, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def google_client(base_url: str, player: str, app: str, *, name: str | None = None,
                  scopes: tuple[str, ...] = (SCOPE_GAMES,)):  # type: ignore[no-untyped-def]  # fmt: skip
    """Google's own API client, built from the discovery document roomsvc serves (docs/spec.md
    §3)."""
    from google.oauth2.credentials import Credentials
    from googleapiclient.discovery import build_from_document

    document = _served_discovery(base_url)
    credentials = Credentials(token=token(player, app, name=name, scopes=scopes))
    return build_from_document(document, credentials=credentials)


_DISCOVERY_CACHE: dict[str, str] = {}


def _served_discovery(base_url: str) -> str:
    if base_url not in _DISCOVERY_CACHE:
        response = httpx.get(f"{base_url}/discovery/v1/apis/games/v1/rest", timeout=10)
        response.raise_for_status()
        _DISCOVERY_CACHE[base_url] = response.text
    return _DISCOVERY_CACHE[base_url]


def pid_of(room: dict[str, Any], player: str) -> str:
    return next(
        p["id"] for p in room["participants"] if p.get("player", {}).get("playerId") == player
    )


async def two_player_room(
    rest: httpx.AsyncClient, server: ServerProcess, app: str, creator: str, other: str
) -> dict:
    reply = await rest.post(
        f"{server.base_url}/games/v1/rooms/create",
        json={"invitedPlayerIds": [other]},
        headers=auth(creator, app),
    )
    assert reply.status_code == 200, reply.text
    return await join_room(rest, server, app, other, reply.json()["roomId"])


def leave_reasons(room: dict) -> dict[str, tuple[str, str | None]]:
    return {
        p["player"]["playerId"]: (p["status"], p.get("leaveReason"))
        for p in room["participants"]
        if "player" in p
    }


def stores(client: aioredis.Redis) -> tuple[RoomStore, RoomsService]:
    limits = Limits()
    room_store = RoomStore(client, limits, 3_600_000)
    return room_store, RoomsService(room_store, limits, PoolStore(client))


async def joined_room(service: RoomsService, app: str, creator: str, guest: str) -> str:
    ctx = ViewContext()
    room = await service.create(
        Principal(creator, app, frozenset({SCOPE_GAMES})),
        wire.RoomCreateRequest(invited_player_ids=[guest]),
        ctx,
    )
    assert room.room_id is not None
    await service.join(
        Principal(guest, app, frozenset({SCOPE_GAMES})), room.room_id, wire.RoomJoinRequest(), ctx
    )
    return room.room_id


def loadtest(*args: str, secret: str | None = None) -> tuple[int, dict[str, Any], str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.pop("REDIS_URL", None)
    if secret is not None:
        env["ROOMSVC_JWT_SECRET"] = secret
    done = subprocess.run(
        [sys.executable, str(LOADTEST_SCRIPT), "--json", *args],
        env=env, capture_output=True, text=True, timeout=250 * UNIT + 30, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout) if done.stdout.strip() else {}
    return done.returncode, report, done.stderr


async def join_room(
    rest: httpx.AsyncClient, server: ServerProcess, app: str, player: str, room_id: str
) -> dict:
    reply = await rest.post(
        f"{server.base_url}/games/v1/rooms/{room_id}/join", json={}, headers=auth(player, app)
    )
    assert reply.status_code == 200, reply.text
    return reply.json()
