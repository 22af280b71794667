"""The per-player indexes (docs/design.md "Rooms: one slot each, indexes as hints"): which rooms a
player is in and which invitations it has. Only the room store writes them, with each change of a
room; every reader here verifies what it finds against the room itself, so a stale entry costs a
read, never a wrong answer."""

from __future__ import annotations

from collections.abc import Sequence

from roomsvc.store import keys
from roomsvc.store.batching import CommandBatcher

Player = tuple[str, str]  # (applicationId, playerId)


def _ids(reply: list[bytes]) -> list[str]:
    return [member.decode() for member in reply]


class PlayerIndexes:
    """Every read goes through the command batcher (store/batching.py): it shares a round trip
    with whatever else the process sends in the same loop turn."""

    def __init__(self, commands: CommandBatcher) -> None:
        self._commands = commands

    async def at_connect(self, app: str, player: str) -> tuple[list[str], bool]:
        """The rooms the player is in, and whether it has any invitation: what a welcome needs
        first (a player with neither costs nothing more, docs/performance.md "Joins")."""
        rooms = self._commands.execute("ZRANGE", keys.player_rooms(app, player), 0, -1)
        invited = self._commands.execute("ZCARD", keys.player_invitations(app, player))
        return _ids(await rooms), bool(await invited)

    async def rooms_of(self, players: Sequence[Player]) -> list[list[str]]:
        """The rooms each player is in."""
        replies = [self._commands.execute("ZRANGE", keys.player_rooms(app, player), 0, -1)
                   for app, player in players]  # fmt: skip
        return [_ids(await reply) for reply in replies]

    async def rooms_and_invitations(self, players: Sequence[Player]) -> list[set[str]]:
        """Each player's rooms and invitations together (what a resync re-reads)."""
        replies = [
            (self._commands.execute("ZRANGE", keys.player_rooms(app, player), 0, -1),
             self._commands.execute("ZRANGE", keys.player_invitations(app, player), 0, -1))
            for app, player in players
        ]  # fmt: skip
        return [set(_ids(await rooms) + _ids(await invited)) for rooms, invited in replies]

    async def invitations_from(
        self, app: str, player: str, low: int | str, count: int
    ) -> list[tuple[str, int]]:
        """Up to `count` invitations (roomId, invited at ms) from score `low` on, oldest first."""
        flat = await self._commands.execute(
            "ZRANGE", keys.player_invitations(app, player), low, "+inf",
            "BYSCORE", "LIMIT", 0, count, "WITHSCORES",
        )  # fmt: skip
        # Raw on a plain server (member, score, ...); pairs through a cluster's callbacks.
        pairs = (
            flat
            if flat and isinstance(flat[0], list | tuple)
            else zip(flat[::2], flat[1::2], strict=True)
        )
        return [(member.decode(), int(float(score))) for member, score in pairs]

    async def drop_invitations(self, app: str, player: str, room_ids: Sequence[str]) -> None:
        """Hide invitations from the player's list (dismissed, or found stale)."""
        if room_ids:
            await self._commands.execute("ZREM", keys.player_invitations(app, player), *room_ids)
