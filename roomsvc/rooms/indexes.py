"""The per-player indexes (docs/design.md "Rooms: one slot each, indexes as hints"): which rooms a
player is in and which invitations it has. Only the room store writes them, with each change of a
room; every reader here verifies what it finds against the room itself, so a stale entry costs a
read, never a wrong answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from roomsvc.store import keys
from roomsvc.store.batching import CommandBatcher

Player = tuple[str, str]  # (applicationId, playerId)


def _ids(reply: list[bytes]) -> list[str]:
    return [member.decode() for member in reply]


class PlayerIndexes:
    def __init__(self, store: Any, commands: CommandBatcher) -> None:
        self._store = store
        self._commands = commands

    async def at_connect(self, app: str, player: str) -> tuple[list[str], bool]:
        """The rooms the player is in, and whether it has any invitation: what a welcome needs
        first, as two commands that share a round trip with whatever else is being sent (a
        player with neither costs nothing more, docs/performance.md "Joins")."""
        rooms = self._commands.execute("ZRANGE", keys.player_rooms(app, player), 0, -1)
        invited = self._commands.execute("ZCARD", keys.player_invitations(app, player))
        return _ids(await rooms), bool(await invited)

    async def rooms_of(self, players: Sequence[Player]) -> list[list[str]]:
        """The rooms each player is in, in one round trip."""
        async with self._store.pipeline(transaction=False) as pipe:
            for app, player in players:
                pipe.zrange(keys.player_rooms(app, player), 0, -1)
            replies = await pipe.execute()
        return [_ids(reply) for reply in replies]

    async def rooms_and_invitations(self, players: Sequence[Player]) -> list[set[str]]:
        """Each player's rooms and invitations together (what a resync re-reads)."""
        async with self._store.pipeline(transaction=False) as pipe:
            for app, player in players:
                pipe.zrange(keys.player_rooms(app, player), 0, -1)
                pipe.zrange(keys.player_invitations(app, player), 0, -1)
            replies = await pipe.execute()
        return [set(_ids(replies[2 * n]) + _ids(replies[2 * n + 1])) for n in range(len(players))]

    async def invitations_from(
        self, app: str, player: str, low: int | str, count: int
    ) -> list[tuple[str, int]]:
        """Up to `count` invitations (roomId, invited at ms) from score `low` on, oldest first."""
        batch = await self._store.zrange(
            keys.player_invitations(app, player), low, "+inf",
            byscore=True, offset=0, num=count, withscores=True,
        )  # fmt: skip
        return [(member.decode(), int(score)) for member, score in batch]

    async def drop_invitations(self, app: str, player: str, room_ids: Sequence[str]) -> None:
        """Hide invitations from the player's list (dismissed, or found stale)."""
        if room_ids:
            await self._store.zrem(keys.player_invitations(app, player), *room_ids)
