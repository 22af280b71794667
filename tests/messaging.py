"""What the in-room message and realtime tests share: players on `roomsvc.client`, and a room
of them."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from roomsvc.client import Message, RoomsvcClient
from tests.support import UNIT, ServerProcess, token


class Player:
    """A connected client that records what it receives."""

    def __init__(self, server: ServerProcess, name: str, app: str, **options: Any) -> None:
        self.name = name
        self.client = RoomsvcClient(server.base_url, token(name, app), **options)
        self.messages: list[Message] = []
        self.signals: list[dict[str, Any]] = []
        self.statuses: list[dict[str, Any]] = []
        self.changed = asyncio.Event()
        self.client.on("message", self._record(self.messages))
        self.client.on("signal", self._record(self.signals))
        self.client.on("roomStatus", self._record(self.statuses))
        # every roomStatus push in arrival order; an invitation is one too (roomsvc.client names
        # it by this player's status)
        self.pushes: list[dict[str, Any]] = []
        self.client.on("roomStatus", self._record(self.pushes))
        self.client.on("invitation", self._record(self.pushes))
        self.disconnects: list[int | None] = []  # close codes, in order
        self.client.on("disconnected", self._record(self.disconnects))
        self.participant: dict[str, str] = {}  # roomId -> this player's participant id

    def _record(self, into: list[Any]) -> Callable[[Any], None]:
        def record(value: Any) -> None:
            into.append(value)
            self.changed.set()

        return record

    async def until(self, predicate: Callable[[], bool], within: float = 100 * UNIT) -> None:
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()

    async def pushed(self, predicate: Callable[[dict[str, Any]], bool],
                     within: float = 100 * UNIT) -> dict[str, Any]:  # fmt: skip
        """The first push matching `predicate`; an AssertionError if the socket closed first."""
        found: list[dict[str, Any]] = []

        def seen() -> bool:
            for push in self.pushes:
                if predicate(push):
                    found.append(push)
                    return True
            return bool(self.disconnects)

        await self.until(seen, within)
        if not found:
            raise AssertionError(f"{self.name}'s socket closed first: {self.disconnects}")
        return found[0]

    def versions(self, room_id: str) -> list[int]:
        """The versions of `room_id` this player was pushed, in arrival order."""
        return [p["roomStatusVersion"] for p in self.pushes if p["roomId"] == room_id]

    def learn(self, room: dict[str, Any]) -> dict[str, Any]:
        for p in room.get("participants") or []:
            if (p.get("player") or {}).get("playerId") == self.name:
                self.participant[room["roomId"]] = p["id"]
        return room


async def room_of(*players: Player) -> str:
    """A room the first player creates inviting the others, who join: every one JOINED."""
    host, *guests = players
    room = host.learn(await host.client.create_room(invited_player_ids=[g.name for g in guests]))
    room_id = room["roomId"]
    for guest in guests:
        guest.learn(await guest.client.join_room(room_id))
    final = await host.client.get_room(room_id)
    for player in players:
        player.learn(final)
    return room_id


@contextlib.asynccontextmanager
async def players(server: ServerProcess | list[ServerProcess], app: str, *names: str,
                  **options: Any) -> AsyncIterator[list[Player]]:  # fmt: skip
    """Players connected round-robin to the servers given."""
    servers = server if isinstance(server, list) else [server]
    made = [Player(servers[i % len(servers)], name, app, **options)
            for i, name in enumerate(names)]  # fmt: skip
    try:
        for player in made:
            await player.client.connect()
        yield made
    finally:
        for player in made:
            await player.client.close()
