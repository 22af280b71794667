"""A throwaway valkey-server and one `roomsvc serve` on free loopback ports, and the CPU time
they and this client spend (from /proc) with the store's command counts (INFO commandstats)."""

from __future__ import annotations

import contextlib
import os
import resource
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from roomsvc.store.embedded import free_port, server_binary


class OwnServer:
    """A throwaway valkey-server and one `roomsvc serve`, both on free loopback ports."""

    def __init__(self, grace: int, workers: int, max_in_flight: int | None = None) -> None:
        self.dir = tempfile.mkdtemp(prefix="roomsvc-loadtest-")
        self.secret = secrets.token_urlsafe(32)
        self.grace, self.workers, self.max_in_flight = grace, workers, max_in_flight
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def start(self) -> OwnServer:
        import httpx
        import redis

        store_port = self.store_port = free_port()
        port = free_port()
        argv = [str(server_binary()), "--port", str(store_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]  # fmt: skip
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))  # fmt: skip
        wait_for(lambda: redis.Redis(port=store_port).ping())
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(REDIS_URL=f"redis://127.0.0.1:{store_port}/0", ROOMSVC_JWT_SECRET=self.secret,
                   ROOMSVC_PRESENCE_GRACE_SECONDS=str(self.grace),
                   ROOMSVC_DATA_DIR=os.path.join(self.dir, "data"))  # fmt: skip
        if self.max_in_flight is not None:
            env["ROOMSVC_MAX_CALLS_IN_FLIGHT"] = str(self.max_in_flight)
        argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(self.workers)]  # fmt: skip
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen(argv, cwd=self.dir, env=env, stdout=self.log,
                                           stderr=self.log, stdin=subprocess.DEVNULL))  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200)
        return self

    @property
    def pid(self) -> int:
        return self.procs[-1].pid

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of the store, of the server's processes and of this
        client, and the store's command counts (`cmd:NAME`)."""
        import redis

        usage = resource.getrusage(resource.RUSAGE_SELF)
        counts = {}
        with contextlib.suppress(redis.RedisError):
            stats = redis.Redis(port=self.store_port).info("commandstats")
            counts = {f"cmd:{k.removeprefix('cmdstat_')}": float(v["calls"])
                      for k, v in stats.items()}  # fmt: skip
        return {"store": proc_cpu(self.procs[0].pid),
                "server": sum(proc_cpu(pid) for pid in family(self.pid)),
                "client": usage.ru_utime + usage.ru_stime, **counts}  # fmt: skip

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers), from /proc."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return pids


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise SystemExit("loadtest: a process did not start in time")
