"""Every Redis key and channel roomsvc uses, in one place (SPEC §10, DESIGN "Rooms").

Hash tags decide Redis Cluster slots; an atomic operation (one Lua script) only ever touches
keys of one tag:

    {r:<app>:<roomId>}     a room: its document+version hash and its applied-request set
    {p:<app>:<playerId>}   a player: invitation inbox, rooms index, create requestIds
    {timers:<n>}           one of TIMER_SHARDS deadline sets (claim/lease, DESIGN)
    {mp:<app>:<variant>}   an auto-match pool and its match records (section below)

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


# ---- auto-matching (SPEC §5) --------------------------------------------------------------
#
#   {mp:<app>:<variant>}   one pool: its tickets, their data, its match records and their
#                          leases, its claim lock and its recent waits. Claiming tickets into a
#                          match record and retiring it are then each one script in one slot.
#   rs:pools               every pool that may hold work (a hint: dropped when found empty and
#                          re-added on enqueue; see store/matcher_store.py).

POOLS = f"{PREFIX}:pools"


def pool_id(app: str, variant: int | None) -> str:
    """`<app>:<variant>` (`any` when the room named no variant); the member of `POOLS`."""
    return f"{app}:{'any' if variant is None else variant}"


def pool_tickets(pool: str) -> str:
    """Sorted set: roomIds waiting in the pool, scored by ticket age (ticket_since_ms)."""
    return f"{PREFIX}:{{mp:{pool}}}:tickets"


def pool_ticket_data(pool: str) -> str:
    """Hash: roomId -> the msgpack `matching.Ticket` the policy reads."""
    return f"{PREFIX}:{{mp:{pool}}}:data"


def pool_matches(pool: str) -> str:
    """Sorted set: match ids of the pool's match records, scored by lease deadline (ms)."""
    return f"{PREFIX}:{{mp:{pool}}}:matches"


def pool_match(pool: str, match_id: str) -> str:
    """Hash: one match record: `g` group, `owner`, `claimed` ms, `step` progress."""
    return f"{PREFIX}:{{mp:{pool}}}:m:{match_id}"


def pool_lock(pool: str) -> str:
    """String: the process currently reading and claiming from the pool (short lease)."""
    return f"{PREFIX}:{{mp:{pool}}}:lock"


def pool_waits(pool: str) -> str:
    """List: the last waits (ms) of matched tickets, newest first (waitEstimateSeconds)."""
    return f"{PREFIX}:{{mp:{pool}}}:waits"
