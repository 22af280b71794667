"""Events storage (docs/spec.md §7): one atomic script per `events.record`, plain reads for the
lists.

`record` hands the pure core's surviving periods to `lua/events_record.lua`, which in one step
in the player's slot (keys: roomsvc/store/keys.py) refuses a replayed requestId, refuses
periods recorded before, takes one token from the player's bucket, and adds every update. So
concurrent retries of one request, or of one period under different requestIds, count once.

What one record costs: one token per call that would change something, whatever its size (up
to the per-request cap of updates), so clients are pushed to batch as GPGS clients do. A
replayed requestId, or a call whose every period was recorded before, costs nothing; a call
refused by the bucket records nothing (not even its requestId), so the client may retry it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import Any

from redis.commands.core import AsyncScript

from roomsvc.events.rules import DAY_MS, MAX_AGE_MS, PeriodUpdates
from roomsvc.store import keys, scripts
from roomsvc.store.connection import Store

# A requestId is remembered for a day: long enough for any client retry loop. A replay later
# than that is still caught by the period set, which outlives the TIME_PERIOD_EXPIRED window
# by a day of slack for clocks that differ between processes.
REQUEST_ID_TTL_MS = DAY_MS
PERIOD_KEEP_MS = MAX_AGE_MS + DAY_MS

_scripts: dict[int, AsyncScript] = {}


def _script(store: Store) -> AsyncScript:
    """The record script registered on `store`, once per client."""
    script = _scripts.get(id(store))
    if script is None or script.registered_client is not store:
        script = scripts.register(store, "events_record")
        _scripts[id(store)] = script
    return script


class RecordStatus(enum.IntEnum):
    APPLIED = 0
    REQUEST_REPLAYED = 1
    NOTHING_NEW = 2
    RATE_LIMITED = 3


@dataclasses.dataclass(frozen=True, slots=True)
class RecordOutcome:
    status: RecordStatus
    already: tuple[int, ...]  # indexes into the periods passed: recorded before
    counters: dict[str, int]  # every definition named, after the call
    retry_after_ms: int
    applied_updates: int


def record_args(
    periods: Sequence[PeriodUpdates], request_id: int | None, now_ms: int, rate_per_minute: int
) -> list[Any]:
    """ARGV of events_record.lua (exposed for the benchmark, which pipelines the script)."""
    args: list[Any] = [
        now_ms,
        "" if request_id is None else str(request_id),
        REQUEST_ID_TTL_MS,
        PERIOD_KEEP_MS,
        rate_per_minute,
        len(periods),
    ]
    for entry in periods:
        # Summed per definition here, where ints are exact: the script then does one HINCRBY
        # per (period, definition) instead of one per update.
        totals: dict[str, int] = {}
        for definition_id, count in entry.updates:
            totals[definition_id] = totals.get(definition_id, 0) + count
        args += [str(entry.period.start_ms), str(entry.period.end_ms), len(totals)]
        for definition_id, total in totals.items():
            args += [definition_id, str(total)]
    return args


def parse_reply(reply: Sequence[Any], periods: Sequence[PeriodUpdates]) -> RecordOutcome:
    status = RecordStatus(int(reply[0]))
    already = tuple(int(i) for i in reply[1])
    flat = reply[2]
    counters = {_text(flat[i]): int(flat[i + 1]) for i in range(0, len(flat), 2)}
    applied = 0
    if status is RecordStatus.APPLIED:
        skipped = set(already)
        applied = sum(len(p.updates) for i, p in enumerate(periods) if i not in skipped)
    return RecordOutcome(status, already, counters, int(reply[3]), applied)


async def record(
    store: Store,
    app_id: str,
    player_id: str,
    periods: Sequence[PeriodUpdates],
    request_id: int | None,
    now_ms: int,
    rate_per_minute: int,
) -> RecordOutcome:
    script_keys = keys.events_record_keys(app_id, player_id)
    args = record_args(periods, request_id, now_ms, rate_per_minute)
    reply = await _script(store)(keys=script_keys, args=args)
    return parse_reply(reply, periods)


async def counters(store: Store, app_id: str, player_id: str) -> dict[str, int]:
    """Every counter of the player (one per definition ever recorded: a small hash)."""
    raw = await store.hgetall(keys.event_counts(app_id, player_id))
    return {_text(k): int(v) for k, v in raw.items()}


async def counters_of(
    store: Store, app_id: str, player_id: str, definition_ids: Sequence[str]
) -> dict[str, int]:
    """The player's counters of `definition_ids` that exist."""
    if not definition_ids:
        return {}
    values = await store.hmget(keys.event_counts(app_id, player_id), list(definition_ids))
    return {d: int(v) for d, v in zip(definition_ids, values, strict=True) if v is not None}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value
