#!/usr/bin/env python
"""A stalled store, timed (docs/spec.md §12 item 16; docs/store.md): two `roomsvc serve` processes
on one valkey-server, two players with sockets (one on each process) in a room, then the store is
SIGSTOPped for `--stall` seconds and SIGCONTed. Reports, per process, how long after the stop
`/readyz` said 503 and how long after the wake it said 200 again; how long calls made during the
stall took to answer and with what; and how long after the wake both sockets showed the room's
latest version (a change made through the other process as soon as it answers), and whether both
players, whose sockets stayed open, are still JOINED after it. The tests assert the outcomes
(tests/test_store_stall.py); the times are measured here, never there.

    .venv/bin/python scripts/bench_stall.py --stall 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roomsvc.auth.tokens import SCOPE_GAMES, mint_token  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402

POLL_S = 0.02


def start_processes(work: str, secret: str, env_extra: dict[str, str]) -> tuple[Any, list[Any]]:
    port = free_port()
    store = subprocess.Popen(
        [str(server_binary()), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", work],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env.pop("PROMETHEUS_MULTIPROC_DIR", None)
    env.update(REDIS_URL=f"redis://127.0.0.1:{port}/0", ROOMSVC_JWT_SECRET=secret, **env_extra)
    servers = []
    for n in range(2):
        http_port = free_port()
        log = open(os.path.join(work, f"serve{n}.log"), "ab")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "roomsvc.cli", "serve", "--host", "127.0.0.1",
             "--port", str(http_port)],
            cwd=work, env={**env, "ROOMSVC_DATA_DIR": os.path.join(work, f"d{n}")},
            stdout=log, stderr=log, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        servers.append((proc, f"http://127.0.0.1:{http_port}"))
    for _, url in servers:
        for _ in range(600):
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        else:
            raise SystemExit(f"bench_stall: {url} did not start")
    return store, servers


async def until(predicate: Any, limit: float) -> float:
    """Seconds until `predicate()` (a coroutine function) is true, polling."""
    began = time.monotonic()
    while time.monotonic() - began < limit:
        if await predicate():
            return time.monotonic() - began
        await asyncio.sleep(POLL_S)
    return float("nan")


class Socket:
    """A player's socket and the newest version it has shown of each room."""

    def __init__(self, ws: Any) -> None:
        self.ws, self.versions = ws, {}
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            message = json.loads(raw)
            room = message.get("params") if message.get("method") == "roomStatus" else None
            room = room or message.get("result")
            if isinstance(room, dict) and room.get("roomId"):
                version = int(room.get("roomStatusVersion") or room.get("statusVersion") or 0)
                self.versions[room["roomId"]] = max(version, self.versions.get(room["roomId"], 0))


async def run(args: argparse.Namespace) -> dict[str, Any]:
    secret = secrets.token_urlsafe(24)
    work = tempfile.mkdtemp(prefix="roomsvc-stall-")
    store, servers = start_processes(work, secret, {
        "ROOMSVC_STORE_DEADLINE_MS": str(args.deadline_ms),
        "ROOMSVC_PRESENCE_GRACE_SECONDS": str(args.grace)})  # fmt: skip
    app = "stall-" + secrets.token_hex(4)
    tokens = {p: mint_token(secret, p, app, scopes=(SCOPE_GAMES,)) for p in ("ana", "ben")}
    head = {p: {"Authorization": f"Bearer {t}"} for p, t in tokens.items()}
    (_, first), (_, second) = servers
    report: dict[str, Any] = {"stall_s": args.stall, "deadline_ms": args.deadline_ms}
    try:
        async with httpx.AsyncClient(timeout=60) as rest:
            made = await rest.post(f"{first}/games/v1/rooms/create", headers=head["ana"],
                                   json={"invitedPlayerIds": ["ben"]})  # fmt: skip
            room = made.json()["roomId"]
            await rest.post(f"{second}/games/v1/rooms/{room}/join", headers=head["ben"], json={})
            sockets = []
            for player, url in (("ana", first), ("ben", second)):
                ws_url = url.replace("http://", "ws://") + "/games/v1/realtime"
                ws = await connect(ws_url, compression=None,
                                   additional_headers=head[player])  # fmt: skip
                sockets.append(Socket(ws))
            await asyncio.sleep(1.0)
            store.send_signal(signal.SIGSTOP)
            stopped = time.monotonic()

            async def ready_is(url: str, code: int) -> bool:
                return (await rest.get(f"{url}/readyz")).status_code == code

            gone = await asyncio.gather(*(until(lambda u=url: ready_is(u, 503), args.stall)
                                          for _, url in servers))  # fmt: skip
            report["readyz_503_after_stop_s"] = [round(t, 2) for t in gone]
            calls = []
            for path, method in ((f"/games/v1/rooms/{room}", "GET"),
                                 ("/games/v1/rooms/create", "POST")):  # fmt: skip
                began = time.monotonic()
                reply = await rest.request(method, f"{first}{path}", headers=head["ana"],
                                           json={"invitedPlayerIds": ["zed"]}
                                           if method == "POST" else None)  # fmt: skip
                reason = reply.json().get("error", {}).get("errors", [{}])[0].get("reason")
                calls.append({"call": f"{method} {path.split('/')[-1]}",
                              "status": reply.status_code, "reason": reason,
                              "retry_after": reply.headers.get("retry-after"),
                              "answered_in_s": round(time.monotonic() - began, 3)})  # fmt: skip
            report["calls_during_stall"] = calls
            await asyncio.sleep(max(0.0, args.stall - (time.monotonic() - stopped)))
            store.send_signal(signal.SIGCONT)
            woke = time.monotonic()
            back = await asyncio.gather(*(until(lambda u=url: ready_is(u, 200), 30)
                                          for _, url in servers))  # fmt: skip
            report["readyz_200_after_wake_s"] = [round(t, 2) for t in back]
            pid = next(p["id"] for p in made.json()["participants"]
                       if p.get("player", {}).get("playerId") == "ana")  # fmt: skip
            body = {"updates": [{"participantId": pid, "status": "CONNECTION_ESTABLISHED"}]}
            while True:  # the first change through the other process that answers
                reply = await rest.post(f"{second}/games/v1/rooms/{room}/reportstatus",
                                        headers=head["ben"], json=body)  # fmt: skip
                if reply.status_code == 200:
                    latest = int(reply.json()["statusVersion"])
                    break
                await asyncio.sleep(POLL_S)
            report["first_change_after_wake_s"] = round(time.monotonic() - woke, 2)

            async def converged() -> bool:
                return all(s.versions.get(room, 0) >= latest for s in sockets)

            await until(converged, 30)
            report["sockets_at_latest_after_wake_s"] = round(time.monotonic() - woke, 2)
            await asyncio.sleep(2.0)  # a few sweeps after the wake: was anybody evicted?
            after = (await rest.get(f"{first}/games/v1/rooms/{room}", headers=head["ana"])).json()
            report["statuses_after"] = sorted(p["status"] for p in after["participants"])
            for s in sockets:
                await s.ws.close()
    finally:
        store.send_signal(signal.SIGCONT)
        for proc, _ in servers:
            proc.terminate()
        for proc, _ in servers:
            proc.wait(timeout=30)
        store.terminate()
        store.wait(timeout=10)
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--stall", type=float, default=8.0, help="seconds the store is stopped")
    parser.add_argument("--deadline-ms", type=int, default=1000)
    parser.add_argument("--grace", type=int, default=20)
    args = parser.parse_args()
    report = asyncio.run(run(args))
    for key, value in report.items():
        print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
