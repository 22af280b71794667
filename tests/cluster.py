"""A local three-master Valkey cluster from the wheel's `valkey-server` (docs/spec.md §10).

No external tool: each node starts with `--cluster-enabled yes` on its own free client and bus
ports, the nodes are joined with CLUSTER MEET, the 16384 slots are split in three ranges with
CLUSTER ADDSLOTSRANGE, and the fixture waits until every node reports `cluster_state:ok` and
knows every slot's owner. No replicas: the tests prove that the code runs on a cluster (one
slot per script, redirections, pub/sub across shards), not failover.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time

import redis

from roomsvc.store.embedded import free_port, server_binary
from tests.support import UNIT, wait_until

SLOTS = 16384


class ValkeyCluster:
    """Three masters on loopback; `url` names one node (roomsvc discovers the rest)."""

    def __init__(self, masters: int = 3) -> None:
        self.ports = [free_port() for _ in range(masters)]
        self.bus_ports = [free_port() for _ in range(masters)]
        self.dir = tempfile.mkdtemp(prefix="roomsvc-cluster-")
        self.processes: list[subprocess.Popen[bytes]] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.ports[0]}/0"

    def start(self) -> ValkeyCluster:
        for port, bus in zip(self.ports, self.bus_ports, strict=True):
            argv = [
                str(server_binary()),
                "--port", str(port), "--bind", "127.0.0.1",
                "--cluster-enabled", "yes", "--cluster-port", str(bus),
                "--cluster-config-file", f"nodes-{port}.conf",
                "--cluster-node-timeout", "5000",
                "--save", "", "--appendonly", "no", "--dir", self.dir,
            ]  # fmt: skip
            self.processes.append(
                subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            )
        clients = [redis.Redis(port=port, socket_timeout=5) for port in self.ports]
        try:
            for client in clients:
                wait_until(lambda c=client: _answers(c))
            for port, bus in zip(self.ports[1:], self.bus_ports[1:], strict=True):
                clients[0].execute_command("CLUSTER", "MEET", "127.0.0.1", port, bus)
            share = SLOTS // len(clients)
            for n, client in enumerate(clients):
                last = SLOTS - 1 if n == len(clients) - 1 else (n + 1) * share - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", n * share, last)
            wait_until(lambda: all(_ready(c, len(clients)) for c in clients), timeout=300 * UNIT)
        finally:
            for client in clients:
                client.close()
        return self

    def stop(self) -> None:
        for process in self.processes:
            process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.processes.clear()
        shutil.rmtree(self.dir, ignore_errors=True)


def _answers(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def _ready(client: redis.Redis, masters: int) -> bool:
    """This node sees the cluster healthy, every slot assigned, and every master known."""
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    fields = dict(line.split(":", 1) for line in text.split() if ":" in line)
    if fields.get("cluster_state") != "ok" or fields.get("cluster_slots_ok") != str(SLOTS):
        time.sleep(0.05)
        return False
    return fields.get("cluster_known_nodes") == str(masters)
