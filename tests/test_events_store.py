"""The events store on a real Valkey (docs/spec.md §7, §10): the record script's bucket, replays,
saturation and slots, with `now` passed in so no test waits; and the transport-independent
service functions the JSON-RPC socket calls."""

from __future__ import annotations

import asyncio
import uuid

import msgspec
import redis.asyncio as aioredis
from redis.cluster import key_slot

from roomsvc.auth.tokens import SCOPE_GAMES, Principal
from roomsvc.common.clock import now_ms
from roomsvc.config import load_config
from roomsvc.events import store as events_store
from roomsvc.events.rules import DAY_MS, Period, PeriodUpdates, Update
from roomsvc.events.service import list_by_player, list_definitions, record
from roomsvc.events.store import PERIOD_KEEP_MS, REQUEST_ID_TTL_MS, RecordStatus
from roomsvc.settings import Settings
from roomsvc.store import keys

NOW = 1_800_000_000_000
MIN = 60_000


def ids() -> tuple[str, str]:
    return "app-" + uuid.uuid4().hex[:8], "pl-" + uuid.uuid4().hex[:8]


def one(start: int, count: int = 1, definition: str = "ev") -> list[PeriodUpdates]:
    return [PeriodUpdates(Period(start, start + MIN), (Update(definition, count),))]


async def test_bucket_refills_with_time(store: aioredis.Redis) -> None:
    """rate=2: two changing calls pass, the third waits 30 s of refill, then one more passes."""
    app, player = ids()

    async def call(i: int, now: int) -> events_store.RecordOutcome:
        return await events_store.record(store, app, player, one(NOW - i * MIN), None, now, 2)

    assert (await call(1, NOW)).status is RecordStatus.APPLIED
    assert (await call(2, NOW)).status is RecordStatus.APPLIED
    limited = await call(3, NOW)
    assert limited.status is RecordStatus.RATE_LIMITED and limited.retry_after_ms == 30_000
    assert limited.counters == {"ev": 2} and limited.applied_updates == 0
    assert (await call(3, NOW + 29_999)).status is RecordStatus.RATE_LIMITED
    assert (await call(3, NOW + 30_000)).status is RecordStatus.APPLIED
    assert (await call(4, NOW + 30_000)).status is RecordStatus.RATE_LIMITED
    # a clock running backwards in another process never refills the bucket
    assert (await call(4, NOW)).status is RecordStatus.RATE_LIMITED


async def test_replays_cost_nothing_and_are_forgotten_after_a_day(store: aioredis.Redis) -> None:
    """A replayed requestId is free; after its TTL the period set still refuses the replay."""
    app, player = ids()
    first = await events_store.record(store, app, player, one(NOW - MIN), 9, NOW, 1)
    assert first.status is RecordStatus.APPLIED and first.applied_updates == 1
    for _ in range(5):
        replay = await events_store.record(store, app, player, one(NOW - MIN), 9, NOW, 1)
        assert replay.status is RecordStatus.REQUEST_REPLAYED and replay.counters == {"ev": 1}
    later = NOW + REQUEST_ID_TTL_MS + 1
    again = await events_store.record(store, app, player, one(NOW - MIN), 9, later, 1)
    assert again.status is RecordStatus.NOTHING_NEW and again.already == (0,)
    assert await events_store.counters(store, app, player) == {"ev": 1}


async def test_partly_seen_request_applies_only_new_periods(store: aioredis.Redis) -> None:
    """Periods recorded before are reported by index; the others apply in the same call."""
    app, player = ids()
    await events_store.record(store, app, player, one(NOW - 2 * MIN, 5), None, NOW, 10)
    periods = one(NOW - 3 * MIN, 1) + one(NOW - 2 * MIN, 5) + one(NOW - MIN, 2, "other")
    outcome = await events_store.record(store, app, player, periods, None, NOW, 10)
    assert outcome.status is RecordStatus.APPLIED and outcome.already == (1,)
    assert outcome.applied_updates == 2
    assert outcome.counters == {"ev": 6, "other": 2}


async def test_counters_saturate_at_the_int64_ceiling(store: aioredis.Redis) -> None:
    """A counter that would pass 2^63-1 stops there instead of failing half-way."""
    app, player = ids()
    big = 2**62
    for i in range(3):
        await events_store.record(store, app, player, one(NOW - (i + 1) * MIN, big), None, NOW, 10)
    second = await events_store.record(
        store, app, player, one(NOW - 9 * MIN, 1, "x"), None, NOW, 10
    )
    assert second.status is RecordStatus.APPLIED
    assert await events_store.counters(store, app, player) == {"ev": 2**63 - 1, "x": 1}


async def test_old_periods_are_pruned_and_keys_expire(store: aioredis.Redis) -> None:
    """Periods older than the expiry window are dropped; helper keys carry TTLs, counters none."""
    app, player = ids()
    await events_store.record(store, app, player, one(NOW - 2 * DAY_MS), 1, NOW, 10)
    later = NOW + PERIOD_KEEP_MS
    await events_store.record(store, app, player, one(later - MIN), 2, later, 10)
    counts, periods, requests, bucket = keys.events_record_keys(app, player)
    assert await store.zcard(periods) == 1
    assert await store.ttl(counts) == -1
    for key in (periods, requests, bucket):
        assert await store.pttl(key) > 0


def test_every_key_of_a_player_shares_one_slot() -> None:
    """All keys the record script touches hash to one Redis Cluster slot (docs/spec.md §12.12)."""
    record_keys = keys.events_record_keys("some-app", "some.player")
    assert len({key_slot(k.encode()) for k in record_keys}) == 1
    assert keys.event_counts("some-app", "some.player") == record_keys[0]


async def test_concurrent_scripts_apply_one_request_once(store: aioredis.Redis) -> None:
    """50 concurrent calls with one requestId: exactly one applies."""
    app, player = ids()
    outcomes = await asyncio.gather(
        *[
            events_store.record(store, app, player, one(NOW - MIN, 3), 5, NOW, 100)
            for _ in range(50)
        ]
    )
    assert (
        sorted(o.status for o in outcomes)
        == [RecordStatus.APPLIED] + [RecordStatus.REQUEST_REPLAYED] * 49
    )
    assert await events_store.counters(store, app, player) == {"ev": 3}


async def test_service_functions_answer_in_the_callers_language(store: aioredis.Redis) -> None:
    """The functions REST and JSON-RPC share: a dict body, maxResults as int or string."""
    config = load_config()
    settings = Settings()
    principal = Principal("pl-" + uuid.uuid4().hex[:8], "demo", frozenset({SCOPE_GAMES}))
    now = now_ms()
    body = {
        "requestId": 1,
        "timePeriods": [
            {
                "timePeriod": {"periodStartMillis": now - MIN, "periodEndMillis": str(now)},
                "updates": [{"definitionId": "ev_kills", "updateCount": "1234567"}],
            }
        ],
    }
    args = (store, settings, config, principal, "es")
    recorded = msgspec.to_builtins(await record(*args, body))
    assert recorded["playerEvents"][0]["formattedNumEvents"] == "1.234.567"
    listed = msgspec.to_builtins(await list_by_player(*args, 1))
    assert [i["numEvents"] for i in listed["items"]] == ["1234567"]
    definitions = await list_definitions(*args, "1")
    page = msgspec.to_builtins(definitions)
    assert page["items"][0]["displayName"] == "Bajas" and "nextPageToken" in page
