"""The embedded store (docs/spec.md §1): `roomsvc serve` with no REDIS_URL runs its own
valkey-server under `./.roomsvc/`, AOF on, that survives worker crashes and restarts, and is never
shared by two `serve` commands by accident."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from roomsvc.store.embedded import free_port
from tests.support import UNIT, ServerProcess, roomsvc_cli, wait_until


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped) is not alive for our purposes.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    return False


def children(pid: int) -> list[int]:
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            found += [int(c) for c in (task / "children").read_text().split()]
    return found


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def worker_pids(serve_pid: int) -> list[int]:
    """uvicorn's worker processes (not the store, not multiprocessing's resource tracker)."""
    return [p for p in children(serve_pid) if "spawn_main" in cmdline(p)]


def valkey_pid(data_dir: Path) -> int | None:
    try:
        return int((data_dir / "valkey.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def ready(server: ServerProcess) -> bool:
    try:
        return httpx.get(f"{server.base_url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def store_client(data_dir: Path) -> redis.Redis:
    return redis.Redis.from_url(f"unix://{data_dir / 'valkey.sock'}", socket_timeout=5)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A fresh current directory, like a new clone; any store left running is stopped."""
    path = Path(tempfile.mkdtemp(prefix="roomsvc-quick-", dir="/tmp"))
    yield path
    pid = valkey_pid(path / ".roomsvc")
    if pid is not None and alive(pid) and "valkey-server" in cmdline(pid):
        os.kill(pid, signal.SIGKILL)


def test_quickstart_starts_the_embedded_store(workdir: Path) -> None:
    """With no REDIS_URL, serve is ready and .roomsvc/ holds the AOF dir and the socket."""
    server = ServerProcess(None, cwd=workdir)
    server.env.pop("ROOMSVC_JWT_SECRET")  # a fresh machine has none
    server.start()
    try:
        assert ready(server)
        assert "ROOMSVC_JWT_SECRET is unset" in server.output()  # the loud warning
        data = workdir / ".roomsvc"
        assert (data / "valkey.sock").is_socket()
        assert (data / "appendonlydir").is_dir()
        with store_client(data) as client:
            assert client.config_get("appendonly") == {"appendonly": "yes"}
            assert client.ping()
        pid = valkey_pid(data)
        assert pid is not None and "valkey-server" in cmdline(pid)
        assert pid in children(server.process.pid)  # type: ignore[union-attr]
    finally:
        assert server.stop() == 0


def test_data_survives_a_restart_and_the_store_stops_with_serve(workdir: Path) -> None:
    """A key written before SIGTERM is there after the next start; the store stops with serve."""
    data = workdir / ".roomsvc"
    server = ServerProcess(None, cwd=workdir).start()
    try:
        with store_client(data) as client:
            client.set("roomsvc:test:durable", b"kept")
        store_pid = valkey_pid(data)
        assert store_pid is not None
    finally:
        assert server.stop() == 0
    assert not alive(store_pid)

    again = ServerProcess(None, cwd=workdir).start()
    try:
        wait_until(lambda: ready(again))
        with store_client(data) as client:
            assert client.get("roomsvc:test:durable") == b"kept"
        assert valkey_pid(data) != store_pid
        second_pid = valkey_pid(data)
        again.signal(signal.SIGINT)  # Ctrl-C stops the store too
        assert again.process is not None and again.process.wait(timeout=30) == 0
        assert second_pid is not None and not alive(second_pid)
    finally:
        again.stop()


def test_second_serve_on_the_same_data_dir_refuses(workdir: Path) -> None:
    """A second serve on one data dir exits with one clear line naming REDIS_URL."""
    server = ServerProcess(None, cwd=workdir).start()
    try:
        result = roomsvc_cli("serve", "--port", str(free_port()), cwd=workdir)
        assert result.returncode != 0
        assert "Traceback" not in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert "REDIS_URL=unix://" in result.stderr
        assert str(server.process.pid) in result.stderr  # type: ignore[union-attr]
        assert ready(server)  # the first one is untouched
    finally:
        assert server.stop() == 0


def test_a_worker_crash_does_not_take_the_store_down(workdir: Path) -> None:
    """kill -9 of one worker: the store keeps answering and uvicorn replaces the worker."""
    data = workdir / ".roomsvc"
    server = ServerProcess(None, cwd=workdir, workers=2).start()
    try:
        serve_pid = server.process.pid  # type: ignore[union-attr]
        wait_until(lambda: len(worker_pids(serve_pid)) == 2)
        with store_client(data) as client:
            client.set("roomsvc:test:crash", b"1")
        victim = worker_pids(serve_pid)[0]
        store_pid = valkey_pid(data)
        os.kill(victim, signal.SIGKILL)
        wait_until(lambda: victim not in worker_pids(serve_pid))
        with store_client(data) as client:
            assert client.get("roomsvc:test:crash") == b"1"
        assert valkey_pid(data) == store_pid and alive(store_pid)  # type: ignore[arg-type]
        wait_until(lambda: len(worker_pids(serve_pid)) == 2, timeout=200 * UNIT)
        wait_until(lambda: all(ready(server) for _ in range(4)))
        # /metrics aggregates every worker's figures.
        metrics = httpx.get(f"{server.base_url}/metrics").text
        assert 'roomsvc_request_seconds_count{code="200",method="GET",route="/readyz"}' in metrics
    finally:
        assert server.stop() == 0


def test_a_killed_serve_leaves_the_store_for_the_next_to_adopt(workdir: Path) -> None:
    """SIGKILL on serve leaves valkey running; the next serve adopts it, data intact."""
    data = workdir / ".roomsvc"
    first = ServerProcess(None, cwd=workdir).start()
    with store_client(data) as client:
        client.set("roomsvc:test:adopt", b"still here")
    store_pid = valkey_pid(data)
    assert store_pid is not None
    first.kill()
    assert alive(store_pid)

    second = ServerProcess(None, cwd=workdir).start()
    try:
        wait_until(lambda: ready(second))
        assert valkey_pid(data) == store_pid  # adopted, not restarted
        with store_client(data) as client:
            assert client.get("roomsvc:test:adopt") == b"still here"
    finally:
        assert second.stop() == 0
    wait_until(lambda: not alive(store_pid))  # the adopter stops it on exit


def test_a_killed_serve_takes_its_workers_with_it(workdir: Path) -> None:
    """SIGKILL on a multi-worker serve ends its workers, so the port is free for the next one."""
    server = ServerProcess(None, cwd=workdir, workers=2).start()
    serve_pid = server.process.pid  # type: ignore[union-attr]
    wait_until(lambda: len(worker_pids(serve_pid)) == 2)
    workers = worker_pids(serve_pid)
    server.kill()
    wait_until(lambda: not any(alive(pid) for pid in workers))
    # The port is free again: the next serve on it adopts the store.
    again = ServerProcess(None, cwd=workdir)
    again.port, again.base_url = server.port, server.base_url
    again.start()
    try:
        assert ready(again)
    finally:
        assert again.stop() == 0


def test_a_data_dir_too_long_for_a_unix_socket_uses_loopback_tcp(workdir: Path) -> None:
    """A long ROOMSVC_DATA_DIR puts the store on a loopback port, recorded for adoption and
    guarded by a password only the data dir's owner can read."""
    data = workdir / ("deep-" + "d" * 100) / "store"
    env = {"ROOMSVC_DATA_DIR": str(data)}
    first = ServerProcess(None, cwd=workdir, env=env).start()
    port = int((data / "valkey.port").read_text())
    password = (data / "valkey.pass").read_text()
    assert (data / "valkey.pass").stat().st_mode & 0o077 == 0
    with redis.Redis(port=port) as stranger, pytest.raises(redis.AuthenticationError):
        stranger.set("roomsvc:test:tcp", b"0")
    with redis.Redis(port=port, password=password) as client:
        client.set("roomsvc:test:tcp", b"1")
    store_pid = valkey_pid(data)
    first.kill()
    second = ServerProcess(None, cwd=workdir, env=env).start()
    try:
        assert ready(second)
        assert valkey_pid(data) == store_pid
        with redis.Redis(port=port, password=password) as client:
            assert client.get("roomsvc:test:tcp") == b"1"
    finally:
        assert second.stop() == 0
    assert store_pid is not None
    wait_until(lambda: not alive(store_pid))


def test_with_redis_url_no_store_is_started(server: ServerProcess) -> None:
    """With REDIS_URL set, serve uses that server: no valkey-server child, no data dir."""
    assert server.process is not None
    assert not any("valkey-server" in cmdline(pid) for pid in children(server.process.pid))
    assert not (server.cwd / ".roomsvc").exists()
    assert ready(server)


async def test_the_quickstart_store_carries_realtime_pushes(workdir: Path) -> None:
    """On the embedded store (a unix socket) a room change reaches the invitee's WebSocket."""
    import json

    from websockets.asyncio.client import connect

    from tests.support import auth, token

    server = ServerProcess(None, cwd=workdir).start()
    try:
        url = server.base_url.replace("http://", "ws://") + "/games/v1/realtime"
        headers = {"Authorization": f"Bearer {token('bob', 'demo')}"}
        async with connect(url, additional_headers=headers, compression=None) as bob:
            welcome = json.loads(await bob.recv())
            assert welcome["method"] == "welcome"
            async with httpx.AsyncClient(base_url=server.base_url) as http:
                created = await http.post("/games/v1/rooms/create", headers=auth("alice", "demo"),
                                          json={"invitedPlayerIds": ["bob"]})  # fmt: skip
            room_id = created.json()["roomId"]
            while True:
                message = json.loads(await asyncio.wait_for(bob.recv(), 100 * UNIT))
                if message.get("method") == "roomStatus":
                    break
            assert message["params"]["roomId"] == room_id
            assert message["params"]["status"] == "ROOM_INVITING"
    finally:
        assert server.stop() == 0
