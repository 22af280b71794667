"""The Colyseus 0.18 peer (docs/spec.md §11), measured beside roomsvc on the same machine in
the same run (docs/performance.md): its own `server.mjs` and `load.mjs`, run where its lock
installs them; none of its code is in this repository."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from wsbench_support import start_valkey, stop

from roomsvc.store.embedded import free_port


def colyseus_dir(directory: Path) -> Path:
    """A directory where the peer's server and load generator run: DIR itself once `npm ci`
    was run there, else a cached copy of its package files, installed from its lock."""
    if (directory / "node_modules").is_dir():
        return directory
    lock = (directory / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    work = cache / "roomsvc-bench" / f"colyseus-{hashlib.sha256(lock).hexdigest()[:12]}"
    if not (work / "node_modules").is_dir():
        work.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json", "server.mjs", "load.mjs"):
            shutil.copyfile(directory / name, work / name)
        quiet = ["--no-audit", "--no-fund", "--loglevel=error"]
        if subprocess.run(["npm", "ci", *quiet], cwd=work, check=False).returncode != 0:
            subprocess.run(["npm", "install", *quiet], cwd=work, check=True)
    return work


def start_colyseus(
    directory: Path, redis_url: str = "", **extra: str
) -> tuple[subprocess.Popen[bytes] | None, dict[str, str]]:
    """The peer's own `server.mjs` on a free port, once it prints READY; with the environment
    its `load.mjs` needs (PORT, SERVER_PID). (None, env) when it did not start."""
    env = {**os.environ, "PORT": str(free_port()), "REDIS_URL": redis_url, "BACKLOG": "4096",
           **extra}  # fmt: skip
    server = subprocess.Popen(["node", "server.mjs"], cwd=directory, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)  # fmt: skip
    assert server.stdout is not None
    while b"READY" not in server.stdout.readline():
        if server.poll() is not None:
            return None, env
    env["SERVER_PID"] = str(server.pid)
    return server, env


def colyseus_join(directory: Path, players: int, in_flight: int, redis: bool) -> dict[str, Any]:
    """Its join phase (join-only.sh's `phase`, with our N and in-flight): a fresh server
    (and valkey), `node load.mjs join`, one JSON line back."""
    workdir = tempfile.mkdtemp(prefix="bench-join-colyseus-")
    valkey, url = start_valkey(workdir) if redis else (None, "")
    server, env = start_colyseus(directory, url.removesuffix("/0"), DEADLINE_S="300")
    try:
        if server is None:
            return {"error": "colyseus server did not start"}
        env.update(LABEL="redis-join" if redis else "join")
        if valkey is not None:
            env["VALKEY_PID"] = str(valkey.pid)
        run = subprocess.run(["node", "load.mjs", "join", "--n", str(players), "--conc",
                              str(in_flight)], cwd=directory, env=env, capture_output=True,
                             text=True, timeout=360, check=False)  # fmt: skip
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else {"error": run.stderr[-500:]}
    finally:
        stop([(server, 10)], "colyseus")
        if valkey is not None:
            stop([(valkey, 10)], "colyseus")
        shutil.rmtree(workdir, ignore_errors=True)


def colyseus_cpu_ms(peer: dict[str, Any]) -> float:
    return peer["server_cpu_pct"] / 100 * peer["wall_s"] / max(1, peer["ok"]) * 1000


def describe_peer(label: str, peer: dict[str, Any]) -> None:
    if "error" in peer:
        print(f"\nColyseus 0.18 {label}: failed: {peer['error']}")
        return
    valkey = f", valkey {peer['valkey_cpu_pct']:.0f} %" if "valkey_cpu_pct" in peer else ""
    print(f"\nColyseus 0.18 {label}: {peer['ok']:,} joined ({peer['errors']} errors) in "
          f"{peer['wall_s']:.2f} s = {peer['joins_per_s']:,.0f} joins/s; p50 "
          f"{peer['p50_ms']:.1f} ms, p99 {peer['p99_ms']:.1f} ms (joinOrCreate resolved); "
          f"server {peer['server_cpu_pct']:.0f} % of a core = {colyseus_cpu_ms(peer):.3f} ms "
          f"CPU per join{valkey}; load generator {peer['load_cpu_pct']:.0f} %; rooms "
          f"{peer['rooms']} ({peer['full_rooms']} full, largest {peer['max_size']})")  # fmt: skip
