"""Every Redis key and channel roomsvc uses, in one place (SPEC §10, DESIGN "Rooms").

Hash tags decide Redis Cluster slots; an atomic operation (one Lua script) only ever touches
keys of one tag:

    {r:<app>:<roomId>}     a room: its document+version hash and its applied-request set
    {p:<app>:<playerId>}   a player: invitation inbox, rooms index, create requestIds
    {timers:<n>}           one of TIMER_SHARDS deadline sets (claim/lease, DESIGN)

Per-player indexes are hints kept correct without cross-slot atomicity: added before the room
write, removed after it, verified on read. Ids never contain `{`, `}` or `:` (auth.py checks
token ids; room ids are generated), so no id can escape its tag.
"""

from __future__ import annotations

import zlib

PREFIX = "rs"
TIMER_SHARDS = 16


def room(app: str, room_id: str) -> str:
    """Hash: `v` = roomStatusVersion, `d` = the msgpack RoomDoc."""
    return f"{PREFIX}:{{r:{app}:{room_id}}}"


def room_applied(app: str, room_id: str) -> str:
    """Sorted set: request ids applied to the room (score = version), capped."""
    return f"{PREFIX}:{{r:{app}:{room_id}}}:applied"


def player_invitations(app: str, player: str) -> str:
    """Sorted set: roomIds the player is invited to (score = invited at, ms)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:inv"


def player_rooms(app: str, player: str) -> str:
    """Sorted set: roomIds the player has joined (score = joined at, ms)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:rooms"


def create_request(app: str, player: str, request_id: str) -> str:
    """String: the roomId a create with this requestId made (24 h, SPEC §4)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:req:{request_id}"


def player_channel(app: str, player: str) -> str:
    """Pub/sub channel: `<roomId> <version>` whenever a room the player is in changes."""
    return f"{PREFIX}:ch:p:{app}:{player}"


def timer_shard_of(app: str, room_id: str) -> str:
    return timer_shard(zlib.crc32(f"{app}/{room_id}".encode()) % TIMER_SHARDS)


def timer_shard(n: int) -> str:
    """Sorted set: `<app>/<roomId>` members scored by their next deadline (ms)."""
    return f"{PREFIX}:{{timers:{n}}}"
