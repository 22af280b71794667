"""Redis keys of the realtime channel (SPEC §6), beside keys.py's room and player keys.

    {presence:<n>}   one of PRESENCE_SHARDS sorted sets: member `<app>:<playerId>`, score = the
                     deadline (ms) after which the player's seats are released unless a process
                     holding one of its connections pushes it forward (presence.py)
    {presence:<n>}:held:<process>
                     set: the members of that shard one process holds connections of, whose
                     deadlines its heartbeat moves (heartbeat.py); expires unless refreshed

Ids never contain `:` (auth.py), so a member splits back into (app, player) unambiguously.
Per-player pub/sub channels are keys.player_channel (room_cas.lua publishes on them).
"""

from __future__ import annotations

import zlib

from roomsvc.store.keys import PREFIX

PRESENCE_SHARDS = 16


def presence_member(app: str, player: str) -> str:
    return f"{app}:{player}"


def presence_shard(n: int) -> str:
    return f"{PREFIX}:{{presence:{n}}}"


def presence_shard_of(member: str) -> str:
    return presence_shard(zlib.crc32(member.encode()) % PRESENCE_SHARDS)


def presence_held(shard: str, process: str) -> str:
    """The set of `shard`'s members `process` holds (the shard's hash tag: the same slot)."""
    return f"{shard}:held:{process}"
