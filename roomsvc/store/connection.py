"""Connecting to the store (docs/spec.md §1, §10): a plain server or a Redis Cluster.

A cluster is detected at connect, from `INFO cluster` or a `redis+cluster://` URL; the rest of
the code sees one `Store` type and never cares which it got, because every atomic operation
touches keys of one hash tag (see keys.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeAlias

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import ExponentialBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisClusterException
from redis.exceptions import TimeoutError as RedisTimeoutError

Store: TypeAlias = "aioredis.Redis | RedisCluster"

# Errors that mean "the store is not reachable now": a 503 with Retry-After, never a 500.
# The socket-level ones are named (refused, reset, broken pipe, timed out), not every OSError:
# a file that cannot be read is a bug or a misconfiguration (500), not an outage.
UNAVAILABLE_ERRORS = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError)

POOL_WAIT_SECONDS = 10.0
_COMMON: dict[str, Any] = {
    "socket_connect_timeout": 2.0,
    "socket_timeout": 5.0,
    "health_check_interval": 15,
    "retry_on_timeout": False,
}


def _retry() -> AsyncRetry:
    # A few quick retries ride out a reconnect; mutations are idempotent by request id
    # (docs/store.md "Retries never double-apply"), so a replay after a lost reply is harmless.
    # The asyncio client wants the asyncio Retry (redis-py 8.2 warns on the synchronous one).
    return AsyncRetry(ExponentialBackoff(cap=0.2, base=0.01), retries=2)


async def connect(url: str, *, max_connections: int = 256) -> Store:
    """A client for `url`, a `RedisCluster` when the server is a cluster node."""
    if "+cluster://" in url:
        return await _cluster(url.replace("+cluster://", "://", 1), max_connections)
    # A blocking pool: a burst beyond `max_connections` commands in flight waits for a free
    # connection (up to POOL_WAIT_SECONDS) instead of failing a healthy store with a 503.
    pool = aioredis.BlockingConnectionPool.from_url(
        url, max_connections=max_connections, timeout=POOL_WAIT_SECONDS,
        retry=_retry(), **_COMMON,
    )  # fmt: skip
    client = aioredis.Redis.from_pool(pool)  # the client owns (and closes) its pool
    if url.startswith("unix://"):
        return client
    try:
        info = await client.info("cluster")
    except UNAVAILABLE_ERRORS:
        return client  # not reachable yet: readyz says so; the app recovers when it is
    if info.get("cluster_enabled") in (1, "1"):
        await client.aclose()
        return await _cluster(url, max_connections)
    return client


class _WaitingCluster(RedisCluster):
    """A cluster client whose commands past `max_connections` in flight wait for one to end
    (up to POOL_WAIT_SECONDS), as the plain client's blocking pool does: redis-py's cluster
    nodes have no blocking pool and fail the excess with MaxConnectionsError, a 503 on a
    healthy store. Bounding the whole client bounds every node's pool."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._in_flight = asyncio.Semaphore(int(kwargs.get("max_connections", 100)))

    async def execute_command(self, *args: Any, **kwargs: Any) -> Any:
        try:
            async with asyncio.timeout(POOL_WAIT_SECONDS):
                await self._in_flight.acquire()
        except TimeoutError:
            raise RedisConnectionError("no free store connection") from None
        try:
            return await super().execute_command(*args, **kwargs)
        finally:
            self._in_flight.release()


async def _cluster(url: str, max_connections: int) -> RedisCluster:
    # RedisCluster takes no `retry_on_timeout` (timeouts are retried by its own redirection loop).
    options = {k: v for k, v in _COMMON.items() if k != "retry_on_timeout"}
    cluster = _WaitingCluster.from_url(
        url, max_connections=max_connections, retry=_retry(), **options
    )
    # Learn the slot map now: left to the first commands, a burst of them races the lazy
    # initialization, which closes connections other tasks are still opening (seen as
    # ConnectionError / AttributeError on a fresh client under 50 concurrent calls).
    with contextlib.suppress(*UNAVAILABLE_ERRORS, RedisClusterException):
        await cluster.initialize()
    return cluster


def is_cluster(store: Store) -> bool:
    return isinstance(store, RedisCluster)
