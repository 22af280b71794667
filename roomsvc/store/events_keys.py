"""Redis keys of the events feature (SPEC §7, §10).

Everything `events.record` touches for one player shares the hash tag `{ev:<app>:<player>}`,
so the one script per request runs in one Redis Cluster slot:

    {ev:<app>:<player>}:counts     HASH  definitionId -> int64 counter (never expires)
    {ev:<app>:<player>}:periods    ZSET  "start:end" of every applied period, score = end ms
    {ev:<app>:<player>}:requests   ZSET  applied requestIds, score = when applied (ms)
    {ev:<app>:<player>}:bucket     HASH  tokens, ts: the record token bucket

App and player ids cannot contain `{`, `}`, `:` or spaces (roomsvc/auth.py), so a tag never
spills into another tenant's keys.
"""

from __future__ import annotations


def player_tag(app_id: str, player_id: str) -> str:
    return f"{{ev:{app_id}:{player_id}}}"


def counts(app_id: str, player_id: str) -> str:
    return f"{player_tag(app_id, player_id)}:counts"


def record_keys(app_id: str, player_id: str) -> list[str]:
    """KEYS of events_record.lua, in its order."""
    tag = player_tag(app_id, player_id)
    return [f"{tag}:counts", f"{tag}:periods", f"{tag}:requests", f"{tag}:bucket"]
