"""Figures read from the store when /metrics is scraped (docs/spec.md §10): auto-match pool sizes
and recent waits. Scrapes are rare (every 15-60 s) and pools few, so a pipelined read per scrape
costs less than a background duty and is never stale. A store outage leaves the last sample and
never fails the scrape: /metrics must still answer to show the store errors.
"""

from __future__ import annotations

import asyncio
import statistics
from typing import Any

from roomsvc.common.metrics import MATCH_WAIT, POOL_SIZE, STORE_ERRORS
from roomsvc.store import keys
from roomsvc.store.connection import UNAVAILABLE_ERRORS

MAX_POOLS = 1000  # a bound on the work of one scrape
QUANTILES = (0.5, 0.9)


async def sample_pools(store: Any, deadline_s: float) -> None:
    try:
        async with asyncio.timeout(deadline_s):  # a stalled store must not hold the scrape
            await _sample(store)
    except UNAVAILABLE_ERRORS as exc:
        STORE_ERRORS.labels(type(exc).__name__).inc()


async def _sample(store: Any) -> None:
    pools = sorted(m.decode() for m in await store.smembers(keys.POOLS))[:MAX_POOLS]
    async with store.pipeline(transaction=False) as pipe:
        for pool in pools:
            pipe.zcard(keys.pool_tickets(pool))
            pipe.lrange(keys.pool_waits(pool), 0, 99)
        replies = await pipe.execute() if pools else []
    POOL_SIZE.set(sum(int(n) for n in replies[0::2]))
    waits = sorted(int(w) / 1000 for reply in replies[1::2] for w in reply)
    for q in QUANTILES:
        MATCH_WAIT.labels(str(q)).set(_quantile(waits, q))


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[round(q * 100) - 1]
