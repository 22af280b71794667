"""The players `bench_rooms.py` drives: one room after another over REST, JSON-RPC or the bare
HTTP floor, each call timed into a `Tally`."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
import uuid
from typing import Any
from urllib.parse import urlsplit

import msgspec
from rawhttp import Http

from roomsvc.auth.tokens import SCOPE_GAMES, mint_token

INVITEES = 7  # per room: 7 joins, 14 reportStatus, 8 leaves (bench_rooms.py docstring)


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


async def transport_phase(kind: type[RestPlayers] | type[RpcPlayers], url: str, secret: str,
                          duration: float, concurrency: int) -> tuple[Tally, int]:  # fmt: skip
    app = "bench-" + uuid.uuid4().hex[:8]
    warmup = min(2.0, duration / 5)
    now = time.perf_counter()
    tally = Tally(now + warmup, now + warmup + duration)
    transports = [kind(url, secret, app) for _ in range(concurrency)]
    await asyncio.gather(*(worker(t, w, tally.end, tally) for w, t in enumerate(transports)))
    return tally, sum(getattr(t, "pushes", 0) for t in transports)
