"""More commands in flight than the store client's pool holds (roomsvc.store.connection: 256
connections): those past the pool must wait for a connection, not fail (a 503 on a healthy
store; found by the load test). Shared by the single-node and the Cluster tests."""

from __future__ import annotations

import asyncio

from roomsvc.store.connection import connect
from tests.support import UNIT

IN_FLIGHT = 300


async def failures_past_the_pool(url: str, key_prefix: str) -> list[str]:
    """The error type names among IN_FLIGHT BLPOPs that each hold a connection a while."""
    store = await connect(url)
    try:
        hold = max(1, round(10 * UNIT))  # each BLPOP holds its connection this many seconds
        replies = await asyncio.gather(
            *(store.blpop([f"{key_prefix}:{n}"], timeout=hold) for n in range(IN_FLIGHT)),
            return_exceptions=True,
        )
    finally:
        await store.aclose()
    return [type(r).__name__ for r in replies if isinstance(r, BaseException)]
