"""Raw WebSocket helpers for the tests of the wire itself (frame shapes, bad frames, close
codes, stalled readers), where the client library would hide what is checked."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import socket
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomsvc.messages import frames
from tests.support import UNIT, ServerProcess, raw_websocket, token


def ws_url(server: ServerProcess, player: str, app: str, **query: str) -> str:
    params = "&".join(f"{k}={v}" for k, v in {"access_token": token(player, app), **query}.items())
    return f"{server.base_url.replace('http://', 'ws://')}/games/v1/realtime?{params}"


@dataclasses.dataclass(frozen=True)
class Closed:
    """How a socket ended: the close code the server sent (None: cut without one)."""

    code: int | None


class Feed:
    """Every message a socket receives, parsed, kept in order, awaitable by predicate."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.messages: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.closed: Closed | None = None
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                # a binary frame is in-room game traffic (docs/messages.md "Binary frames")
                binary = isinstance(raw, bytes)
                self.messages.append({"binary": frames.decode_server(raw)} if binary
                                     else json.loads(raw))  # fmt: skip
                self.changed.set()
        except ConnectionClosed:
            pass
        rcvd = self.ws.protocol.close_rcvd
        self.closed = Closed(rcvd.code if rcvd is not None else None)
        self.changed.set()

    async def until(
        self, predicate: Callable[[dict[str, Any]], bool], within: float = 100 * UNIT
    ) -> dict[str, Any]:
        async with asyncio.timeout(within):
            seen = 0
            while True:
                for message in self.messages[seen:]:
                    if predicate(message):
                        return message
                seen = len(self.messages)
                if self.closed is not None:
                    raise AssertionError(f"socket closed first: {self.closed}")
                self.changed.clear()
                await self.changed.wait()

    async def wait_closed(self, within: float = 100 * UNIT) -> Closed:
        async with asyncio.timeout(within):
            while self.closed is None:
                self.changed.clear()
                await self.changed.wait()
        return self.closed

    def statuses(self, room_id: str) -> list[dict[str, Any]]:
        return [
            m["params"]
            for m in self.messages
            if m.get("method") == "roomStatus" and m["params"]["roomId"] == room_id
        ]

    async def next_after(self, count: int) -> dict[str, Any]:
        """The first message received after the first `count`."""
        async with asyncio.timeout(100 * UNIT):
            while len(self.messages) <= count:
                if self.closed is not None:
                    raise AssertionError(f"socket closed first: {self.closed}")
                self.changed.clear()
                await self.changed.wait()
        return self.messages[count]

    async def call(self, method: str, request_id: Any, **params: Any) -> dict[str, Any]:
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        await self.ws.send(json.dumps(frame))
        return await self.until(lambda m: m.get("id") == request_id and "method" not in m)


async def open_feed(server: ServerProcess, player: str, app: str, **query: str) -> Feed:
    ws = await connect(ws_url(server, player, app, **query), compression=None)
    feed = Feed(ws)
    await feed.until(lambda m: m.get("method") == "welcome")
    return feed


def stalled_socket(server: ServerProcess, player: str, app: str) -> socket.socket:
    """A WebSocket that completes its handshake and then never reads again."""
    return raw_websocket(server, player, app, receive_buffer=4096)


def drained_until_cut(sock: socket.socket) -> bool:
    """Read everything left; True once the server has closed or reset the connection."""
    sock.settimeout(50 * UNIT)
    try:
        while sock.recv(65536):
            pass
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False
    return True
