"""One player's socket (compression off, docs/spec.md §11): every call is a JSON-RPC request
matched to
its reply by id, every room change arrives as a `roomStatus` push (docs/spec.md §6), and every
in-room
message as a `message` notification (docs/messages.md), counted per room and sender."""

from __future__ import annotations

import asyncio
import base64
import collections
import itertools
import random
import struct
import time
from collections.abc import Callable
from typing import Any

import msgspec
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from loadgen.stats import Failure, Stats

LIVE = ("ROOM_CONNECTING", "ROOM_ACTIVE")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode
STAMP = struct.Struct(">d")  # a message's payload starts with its send time (perf_counter)


def version_of(room: dict[str, Any]) -> int:
    return int(room.get("roomStatusVersion", room.get("statusVersion", 0)) or 0)


class Client:
    """One player's socket: replies matched by id, the newest view of each room it saw."""

    def __init__(self, ws: ClientConnection, player: str, stats: Stats) -> None:
        self.ws, self.player, self.stats = ws, player, stats
        self.rooms: dict[str, dict[str, Any]] = {}
        # (roomId, sender participant id) -> reliable messages received, and the last seq
        self.heard: collections.Counter[tuple[str, str]] = collections.Counter()
        self.last_seq: dict[str, int] = {}
        self.finished: set[str] = set()  # rooms of this player's earlier games
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.changed = asyncio.Event()
        self.closed: str | None = None
        self.close_code: int | None = None
        self.dropping = False
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.perf_counter()
                message = _decode(raw)
                method = message.get("method")
                if method == "roomStatus":
                    room = message["params"]
                    self.stats.pushes += 1
                    self.stats.arrivals.append((room["roomId"], version_of(room), at))
                    self.observe(room)
                elif method == "message":
                    self.on_message(message["params"], at)
                elif method == "welcome":
                    if not self.welcome.done():
                        self.welcome.set_result(message["params"])
                elif (future := self.pending.pop(message.get("id"), None)) and not future.done():
                    future.set_result(message)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self.close_code = rcvd.code if rcvd else None
            self.closed = f"closed {rcvd.code if rcvd else 'without a close frame'}"
        else:
            self.closed = "closed"
        finally:
            self.closed = self.closed or "closed"
            if not self.welcome.done():
                self.welcome.set_exception(Failure("socket closed", self.closed))
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Failure("socket closed", self.closed))
            self.pending.clear()
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def on_message(self, params: dict[str, Any], at: float) -> None:
        room_id, seq = params["roomId"], params.get("seq") or 0
        if seq and seq <= self.last_seq.get(room_id, 0):
            self.stats.error(Failure("message out of order", f"{room_id} seq {seq}"))
        self.last_seq[room_id] = max(seq, self.last_seq.get(room_id, 0))
        self.heard[(room_id, params["senderParticipantId"])] += 1
        (sent,) = STAMP.unpack_from(base64.b64decode(params["messageData"]))
        self.stats.lat["message"].append(at - sent)
        self._wake()

    def observe(self, room: dict[str, Any]) -> None:
        """Keep the newest version of each room (pushes, replies and RoomStatus alike)."""
        room_id = room.get("roomId")
        if not room_id:
            return
        known = self.rooms.get(room_id)
        if known is None or version_of(room) > version_of(known):
            self.rooms[room_id] = {**known, **room} if known else room
            self._wake()

    async def call(self, op: str | None, method: str, within: float, **params: Any) -> Any:
        """One call; refused as overloaded (503, nothing done: call_guard.py), it is sent again
        after its Retry-After, as a well-behaved client does, and counted as shed. Latencies
        are those of accepted calls."""
        give_up = time.perf_counter() + within
        while True:
            reply, sent = await self._send(method, max(0.0, give_up - time.perf_counter()), params)
            data = reply.get("error", {}).get("data") or {}
            if data.get("code") != 503 or data.get("reason") != "overloaded":
                break
            self.stats.shed[op or method] += 1
            pause = min(float(data.get("retryAfter", 1)), 1.0) * random.uniform(0.5, 1.5)
            if time.perf_counter() + pause >= give_up:
                raise Failure("timeout", f"{method} for {self.player}: shed until the timeout")
            await asyncio.sleep(pause)
        if op is not None:
            self.stats.lat[op].append(time.perf_counter() - sent)
        self.stats.requests += 1
        if "error" in reply:
            error = reply["error"]
            raise Failure(f"{method} error {error.get('data', {}).get('code', error['code'])}",
                          error.get("message", ""))  # fmt: skip
        result = reply.get("result")
        if isinstance(result, dict) and result.get("roomId"):
            self.stats.sent_at.setdefault((result["roomId"], version_of(result)), sent)
            self.observe(result)
        return result

    async def _send(self, method: str, within: float,
                    params: dict[str, Any]) -> tuple[dict[str, Any], float]:  # fmt: skip
        if self.closed:
            raise Failure("socket closed", f"{self.player} before {method}: {self.closed}")
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        sent = time.perf_counter()
        try:
            await self.ws.send(_encode(frame).decode())
            async with asyncio.timeout(within):
                return await future, sent
        except TimeoutError:
            self.pending.pop(request_id, None)
            raise Failure("timeout", f"{method} for {self.player}") from None
        except ConnectionClosed:
            raise Failure("socket closed", f"{self.player} during {method}") from None

    async def wait(self, what: str, check: Callable[[], Any], within: float) -> Any:
        try:
            async with asyncio.timeout(within):
                while not (found := check()):
                    if self.closed:
                        raise Failure("socket closed", f"{self.player} waiting for {what}")
                    await self.changed.wait()
        except TimeoutError:
            raise Failure("timeout", f"{self.player} waiting for {what}") from None
        return found

    def me(self, room: dict[str, Any]) -> dict[str, Any] | None:
        for p in room.get("participants") or ():
            if (p.get("player") or {}).get("playerId") == self.player:
                return p
        return None

    def drop(self) -> None:
        """Cut the socket without a close frame, as a lost network would."""
        self.dropping = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()
