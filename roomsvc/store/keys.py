"""Every Redis key and channel roomsvc uses, in one place (docs/spec.md §10, docs/design.md
"Rooms").

Hash tags decide Redis Cluster slots; an atomic operation (one Lua script) only ever touches
keys of one tag:

    {r:<app>:<roomId>}     a room: its document+version hash and its applied-request set
    {p:<app>:<playerId>}   a player: invitation inbox, rooms index, create requestIds
    {timers:<n>}           one of TIMER_SHARDS deadline sets (claim/lease, docs/design.md)
    {mp:<app>:<variant>}   an auto-match pool and its match records (section below)
    {presence:<n>}         one of PRESENCE_SHARDS presence deadline sets (section below)
    {ev:<app>:<playerId>}  a player's event counters, periods, requests, bucket (events)
    {analytics:<app>}      an application's analytics stream and batch markers

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


def room_messages(app: str, room_id: str) -> str:
    """Stream: the room's reliable messages, id `0-<seq>`, capped (docs/messages.md "Resume")."""
    return f"{PREFIX}:{{r:{app}:{room_id}}}:msgs"


def room_message_channel(app: str, room_id: str) -> str:
    """Sharded pub/sub channel in the room's slot: `<seq> <msgpack message>` per message."""
    return f"{PREFIX}:{{r:{app}:{room_id}}}:ch"


def player_invitations(app: str, player: str) -> str:
    """Sorted set: roomIds the player is invited to (score = invited at, ms)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:inv"


def player_rooms(app: str, player: str) -> str:
    """Sorted set: roomIds the player has joined (score = joined at, ms)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:rooms"


def create_request(app: str, player: str, request_id: str) -> str:
    """String: the roomId a create with this requestId made (24 h, docs/spec.md §4)."""
    return f"{PREFIX}:{{p:{app}:{player}}}:req:{request_id}"


def player_channel(app: str, player: str) -> str:
    """Pub/sub channel: `<roomId> <version>` whenever a room the player is in changes."""
    return f"{PREFIX}:ch:p:{app}:{player}"


def timer_shard_of(app: str, room_id: str) -> str:
    return timer_shard(zlib.crc32(f"{app}/{room_id}".encode()) % TIMER_SHARDS)


def timer_shard(n: int) -> str:
    """Sorted set: `<app>/<roomId>` members scored by their next deadline (ms)."""
    return f"{PREFIX}:{{timers:{n}}}"


# ---- auto-matching (docs/spec.md §5)
# --------------------------------------------------------------
#
#   {mp:<app>:<variant>}   one pool: its tickets, their data, its match records and their
#                          leases, its claim lock and its recent waits. Claiming tickets into a
#                          match record and retiring it are then each one script in one slot.
#   rs:pools               every pool that may hold work (a hint: dropped when found empty and
#                          re-added on enqueue; see matching/pools.py).

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


# ---- presence (docs/spec.md §6)
# --------------------------------------------------------------------
#
#   {presence:<n>}   one of PRESENCE_SHARDS sorted sets: member `<app>:<playerId>`, score = the
#                    deadline (ms) after which the player's seats are released unless a process
#                    holding one of its connections pushes it forward (realtime/presence.py)
#   {presence:<n>}:held:<process>
#                    set: the members of that shard one process holds connections of, whose
#                    deadlines its heartbeat moves (realtime/heartbeat.py); expires unless
#                    refreshed
#   {presence:<n>}:clock
#                    hash: `beat`, the last time (ms) any process's heartbeat reached the shard,
#                    and `resumed`, when a silence of every heartbeat was last noticed
#                    (claim.lua; docs/store.md "Presence through a stall")
#
# Ids never contain `:` (auth.py), so a member splits back into (app, player) unambiguously.

PRESENCE_SHARDS = 16


def presence_member(app: str, player: str) -> str:
    return f"{app}:{player}"


def presence_shard(n: int) -> str:
    return f"{PREFIX}:{{presence:{n}}}"


def presence_shard_of(member: str) -> str:
    return presence_shard(zlib.crc32(member.encode()) % PRESENCE_SHARDS)


def presence_clock(shard: str) -> str:
    """The shard's heartbeat clock (the shard's hash tag: the same slot)."""
    return f"{shard}:clock"


def presence_held(shard: str, process: str) -> str:
    """The set of `shard`'s members `process` holds (the shard's hash tag: the same slot)."""
    return f"{shard}:held:{process}"


# ---- events (docs/spec.md §7)
# ----------------------------------------------------------------------
#
# Everything `events.record` touches for one player shares the tag `{ev:<app>:<player>}`, so
# the one script per request runs in one slot:
#
#   {ev:<app>:<player>}:counts     HASH  definitionId -> int64 counter (never expires)
#   {ev:<app>:<player>}:periods    ZSET  "start:end" of every applied period, score = end ms
#   {ev:<app>:<player>}:requests   ZSET  applied requestIds, score = when applied (ms)
#   {ev:<app>:<player>}:bucket     HASH  tokens, ts: the record token bucket


def events_tag(app_id: str, player_id: str) -> str:
    return f"{{ev:{app_id}:{player_id}}}"


def event_counts(app_id: str, player_id: str) -> str:
    return f"{events_tag(app_id, player_id)}:counts"


def events_record_keys(app_id: str, player_id: str) -> list[str]:
    """KEYS of events_record.lua, in its order."""
    tag = events_tag(app_id, player_id)
    return [f"{tag}:counts", f"{tag}:periods", f"{tag}:requests", f"{tag}:bucket"]


# ---- analytics (docs/spec.md §8)
# -------------------------------------------------------------------
#
# `{analytics:<app>}` holds an application's stream and its batch markers, so the append
# script (lua/analytics_append.lua) touches one slot. ANALYTICS_APPS (the applications that
# have a stream, read by `roomsvc analytics export`) lives in a slot of its own: it is added to
# before the first append (an index is written before what it points to, docs/design.md "indexes as
# hints"), so an export never misses a stream. Caller keys are `p:<playerId>` or
# `a:<sessionId>`, and a BatchId is the marker key's last part.

ANALYTICS_APPS = "analytics:apps"


def analytics_stream(app_id: str) -> str:
    return f"{{analytics:{app_id}}}:stream"


def analytics_batch_marker(app_id: str, user_key: str, batch_id: str) -> str:
    return f"{{analytics:{app_id}}}:batch:{user_key}:{batch_id}"
