"""The command batcher (store/batching.py): commands issued together share one round trip, and
each caller still gets exactly its own reply or its own error."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from roomsvc.store.batching import CommandBatcher
from roomsvc.store.connection import connect
from tests.support import ValkeyProcess, free_port


def _key(name: str) -> str:
    return f"test:batch:{uuid.uuid4().hex}:{name}"


async def _connections_received(store: Any) -> int:
    return int((await store.info("stats"))["total_connections_received"])


@pytest.fixture
def plain(valkey: ValkeyProcess, request: pytest.FixtureRequest) -> ValkeyProcess:
    if request.config.getoption("--cluster"):
        pytest.skip("a cluster client sends each command on its own (store/batching.py)")
    return valkey


async def test_concurrent_commands_share_one_connection(plain: ValkeyProcess) -> None:
    client = await connect(plain.url)
    observer = aioredis.Redis.from_url(plain.url)
    try:
        batcher = CommandBatcher(client)
        keys = [_key(str(i)) for i in range(200)]
        before = await _connections_received(observer)
        replies = await asyncio.gather(
            *(batcher.execute("SET", key, str(i)) for i, key in enumerate(keys))
        )
        values = await asyncio.gather(*(batcher.execute("GET", key) for key in keys))
        after = await _connections_received(observer)
        assert replies == [b"OK"] * 200
        assert values == [str(i).encode() for i in range(200)]
        # 200 commands in flight at once, sent one by one, would open ~200 connections.
        assert after - before <= 1
    finally:
        await observer.aclose()
        await client.aclose()


async def test_one_failing_command_fails_only_its_caller(store: Any) -> None:
    batcher = CommandBatcher(store)
    text, number = _key("text"), _key("number")
    await store.set(text, "not a number")
    results = await asyncio.gather(
        batcher.execute("INCR", number),
        batcher.execute("INCR", text),
        batcher.execute("INCR", number),
        return_exceptions=True,
    )
    assert results[0] == 1 and results[2] == 2
    assert isinstance(results[1], ResponseError)


async def test_scripts_survive_a_flushed_script_cache(store: Any) -> None:
    batcher = CommandBatcher(store)
    script = batcher.script("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    counter = _key("counter")
    assert await script(keys=[counter], args=[2]) == 2
    await store.script_flush()
    # The store forgot the script: the calls answered NOSCRIPT did not run, so they are
    # loaded and sent again, each applied exactly once.
    replies = await asyncio.gather(*(script(keys=[counter], args=[1]) for _ in range(5)))
    assert sorted(replies) == [3, 4, 5, 6, 7]
    assert int(await store.get(counter)) == 7


async def test_a_cancelled_caller_does_not_disturb_the_others(store: Any) -> None:
    batcher = CommandBatcher(store)
    key = _key("n")
    first = batcher.execute("INCR", key)
    second = batcher.execute("INCR", key)
    first.cancel()
    assert await second == 2  # the cancelled command was already queued and still ran
    assert int(await store.get(key)) == 2


async def test_an_unreachable_store_fails_every_caller() -> None:
    client = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    try:
        batcher = CommandBatcher(client)
        results = await asyncio.gather(
            *(batcher.execute("GET", _key(str(i))) for i in range(3)), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results), results
    finally:
        await client.aclose()


async def test_a_connection_the_store_dropped_is_replaced(plain: ValkeyProcess) -> None:
    client = aioredis.Redis.from_url(plain.url)
    observer = aioredis.Redis.from_url(plain.url)
    try:
        batcher = CommandBatcher(client)
        key = _key("n")
        # Two pooled connections (two batches in flight at once), both then killed by the
        # store, as a restart would: the resend must not draw the other dead one.
        first = batcher.execute("CLIENT", "ID")
        batcher._flush()  # sent now; `second` goes in a batch of its own, on a second connection
        second = batcher.execute("CLIENT", "ID")
        ids = {await first, await second}
        assert len(ids) == 2
        assert await batcher.execute("INCR", key) == 1
        for client_id in ids:
            await observer.execute_command("CLIENT", "KILL", "ID", client_id)
        assert await batcher.execute("INCR", key) == 2
        assert int(await observer.get(key)) == 2
    finally:
        await observer.aclose()
        await client.aclose()
