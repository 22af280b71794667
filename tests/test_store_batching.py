"""store/batching.py: commands issued together share one round trip, each caller still gets
exactly its own reply or its own error (`CommandBatcher`); a queued batch comes back in the order
queued, a script whose cache was flushed runs exactly once, an error reply is raised (`Batch`);
on a plain server and on a cluster (the one fallback)."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from roomsvc.store.batching import MAX_BATCH, Batch, CommandBatcher
from roomsvc.store.connection import connect
from roomsvc.store.link import close_link
from roomsvc.store.scripts import Script
from tests.cluster import ValkeyCluster
from tests.support import ValkeyProcess, free_port

# A script that counts its runs, so a call sent twice would show.
COUNT = Script.of("redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])")


def _key(name: str) -> str:
    return f"test:batch:{uuid.uuid4().hex}:{name}"


async def _connections_received(store: Any) -> int:
    return int((await store.info("stats"))["total_connections_received"])


@contextlib.asynccontextmanager
async def batcher_on(url: str) -> AsyncIterator[CommandBatcher]:
    """A command batcher on a client of its own, whose store link is closed after."""
    client = aioredis.Redis.from_url(url)
    try:
        yield CommandBatcher(client)
    finally:
        close_link(client)
        await client.aclose()


@pytest.fixture
def plain(valkey: ValkeyProcess, request: pytest.FixtureRequest) -> ValkeyProcess:
    if request.config.getoption("--cluster"):
        pytest.skip("one connection per batch is the plain server's path (store/batching.py)")
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
    script = Script.of("return redis.call('INCRBY', KEYS[1], ARGV[1])")
    counter = _key("counter")
    assert await batcher.call(script, keys=[counter], args=[2]) == 2
    await store.script_flush()
    # The store forgot the script: the calls answered NOSCRIPT did not run, so they are
    # loaded and sent again, each applied exactly once.
    replies = await asyncio.gather(
        *(batcher.call(script, keys=[counter], args=[1]) for _ in range(5))
    )
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
    """Every batch of the process goes on one connection (store/link.py); the store kills it,
    as a restart would, and the next batch goes out on a new one, once."""
    client = aioredis.Redis.from_url(plain.url)
    observer = aioredis.Redis.from_url(plain.url)
    try:
        batcher = CommandBatcher(client)
        key = _key("n")
        first = batcher.execute("CLIENT", "ID")
        batcher.flush()  # sent now: `second` goes in a batch of its own, on the same connection
        second = batcher.execute("CLIENT", "ID")
        killed = await first
        assert await second == killed
        await observer.execute_command("CLIENT", "KILL", "ID", killed)
        assert await batcher.execute("INCR", key) == 1
        assert await batcher.execute("CLIENT", "ID") != killed
        assert int(await observer.get(key)) == 1
    finally:
        close_link(client)
        await observer.aclose()
        await client.aclose()


@pytest.fixture(params=["plain", "cluster"])
def url(request: pytest.FixtureRequest, valkey: ValkeyProcess) -> str:
    if request.param == "cluster":
        nodes: ValkeyCluster = request.getfixturevalue("cluster")
        return nodes.url
    return valkey.url


async def test_a_batch_comes_back_in_the_order_queued(url: str) -> None:
    """Commands and script calls interleaved: each reply at its own index, in order."""
    store = await connect(url)
    try:
        tag = uuid.uuid4().hex
        batch = Batch(store)
        first = batch.command("INCR", f"{{a{tag}}}:x")
        counted = [batch.script(COUNT, [f"{{b{tag}:{n}}}:n"], []) for n in range(20)]
        read = batch.command("GET", f"{{a{tag}}}:x")
        replies = await batch.run()
        assert replies[first] == 1
        assert [replies[n] for n in counted] == [b"1"] * 20
        assert replies[read] == b"1"
    finally:
        await store.aclose()


async def test_a_flushed_script_is_loaded_and_runs_once(url: str) -> None:
    """After SCRIPT FLUSH every call answers NOSCRIPT (not run); each is sent again once."""
    store = await connect(url)
    try:
        tag = uuid.uuid4().hex
        warm = Batch(store)
        warm.script(COUNT, [f"{{{tag}}}:warm"], [])
        await warm.run()
        await store.script_flush()
        batch = Batch(store)
        calls = [batch.script(COUNT, [f"{{{tag}}}:n"], []) for _ in range(5)]
        replies = await batch.run()
        # (in order on a plain server; a cluster sends script calls concurrently)
        assert sorted(replies[n] for n in calls) == [b"1", b"2", b"3", b"4", b"5"]
        assert await store.get(f"{{{tag}}}:n") == b"5"
    finally:
        await store.aclose()


async def test_an_error_reply_is_raised(url: str) -> None:
    """A command the server refuses raises, as a plain call would."""
    store = await connect(url)
    try:
        key = f"{{{uuid.uuid4().hex}}}:s"
        await store.set(key, "text")
        batch = Batch(store)
        batch.command("ZADD", key, 1, "m")  # wrong type
        with pytest.raises(ResponseError):
            await batch.run()
    finally:
        await store.aclose()


async def test_a_batch_outlives_a_dropped_connection(plain: ValkeyProcess) -> None:
    """The server closes the batch's pooled connection: the batch is sent again on a new one."""
    store = await connect(plain.url)
    try:
        key = f"{{{uuid.uuid4().hex}}}:n"
        first = Batch(store)
        first.command("INCR", key)
        first.command("CLIENT", "ID")
        count, client_id = await first.run()
        assert count == 1
        # Only the batch's own connection: the session store serves other tests' servers too.
        async with aioredis.Redis.from_url(plain.url) as other:
            assert await other.execute_command("CLIENT", "KILL", "ID", client_id)
        second = Batch(store)
        second.command("INCR", key)
        assert await second.run() == [2]
    finally:
        await store.aclose()


async def test_a_command_batched_on_a_cluster_keeps_its_order(cluster: ValkeyCluster) -> None:
    """On a cluster the batcher sends a turn's commands together too: two commands one caller
    issues back to back on one slot run in that order (messages/store.py `backlog` relies on
    it), and each caller gets its own reply."""
    store = await connect(cluster.url)
    try:
        batcher = CommandBatcher(store)
        tag = uuid.uuid4().hex
        replies = await asyncio.gather(
            *(
                call
                for n in range(50)
                for call in (
                    batcher.execute("INCR", f"{{{tag}:{n}}}:n"),
                    batcher.execute("GET", f"{{{tag}:{n}}}:n"),
                )
            )
        )
        assert replies == [1, b"1"] * 50
    finally:
        await store.aclose()


@pytest.mark.parametrize("together", [True, False])
async def test_commands_queued_together_share_one_batch(
    plain: ValkeyProcess, together: bool
) -> None:
    """A group that would not fit in the current batch is not split: that batch is sent first
    and the group goes whole in the next one (rooms/store.py relies on it: a batch is what is
    sent again whole after a lost connection). Queued one by one, the same two commands
    straddle the boundary: the control case that shows the test can tell."""
    client = await connect(plain.url)
    try:
        batcher = CommandBatcher(client)
        key = _key("filler")
        fillers = [batcher.execute("INCR", key) for _ in range(MAX_BATCH - 1)]
        both = [("CLIENT", "ID"), ("CLIENT", "ID")]
        ids = (batcher.execute_together(both) if together
               else [batcher.execute(*command) for command in both])  # fmt: skip
        left_for_the_next_batch = [command for command, _ in batcher._pending]
        assert left_for_the_next_batch == (both if together else both[1:])
        assert await asyncio.gather(*fillers) == list(range(1, MAX_BATCH))
        first, second = await asyncio.gather(*ids)
        assert first == second  # one connection carries every batch of the process
    finally:
        close_link(client)
        await client.aclose()


async def test_batches_on_a_lost_connection_are_sent_once_more_then_fail(proxy: Any) -> None:
    """The store runs a batch and its answer is lost with the connection: the batches on it are
    sent again on a new connection, once; lost again, each caller learns the error, and
    nothing was sent a third time (store/link.py)."""
    async with batcher_on(proxy.url) as batcher:
        key = _key("lost")
        proxy.loss = 1.0
        results = await asyncio.gather(
            batcher.execute("SET", key, "1"), batcher.execute("GET", key), return_exceptions=True
        )
        assert all(isinstance(r, RedisConnectionError) for r in results), results
        assert proxy.swallowed == 2
        proxy.loss = 0.0
        assert await batcher.execute("GET", key) == b"1"  # it ran; a new connection serves


async def test_a_batch_past_its_deadline_gives_its_connection_up(
    proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A store that does not answer: the batch's deadline gives the connection up, the batch is
    sent once more on a new one, and the caller learns TimeoutError after two deadlines."""
    from roomsvc.store import batching

    monkeypatch.setattr(batching, "BATCH_TIMEOUT_S", 0.3)
    async with batcher_on(proxy.url) as batcher:
        proxy.hold[b"GET"] = 3.0
        started = asyncio.get_running_loop().time()
        with pytest.raises(TimeoutError):
            await batcher.execute("GET", _key("stalled"))
        assert asyncio.get_running_loop().time() - started < 2.0
        assert len(proxy.held) == 2  # two connections, each held
        proxy.hold.clear()
        assert await batcher.execute("GET", _key("stalled")) is None


async def test_a_batch_nobody_waits_for_is_not_sent_again(
    proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """(store/link.py) A connection given up resends only the batches a caller still waits
    for: one whose caller was cancelled (its call's deadline) is not sent a second time, so a
    store too slow to answer is not given the work of callers already gone once more."""
    from roomsvc.store import batching

    monkeypatch.setattr(batching, "BATCH_TIMEOUT_S", 0.3)
    async with batcher_on(proxy.url) as batcher:
        proxy.hold[b"INCR"] = 3.0
        key = _key("abandoned")
        caller = batcher.execute("INCR", key)  # a future: cancelled as its caller would be
        started = asyncio.get_running_loop().time()
        while not proxy.held and asyncio.get_running_loop().time() - started < 5:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
        caller.cancel()
        await asyncio.gather(caller, return_exceptions=True)
        waiting = batcher.execute("GET", key)  # behind it, still awaited
        await asyncio.sleep(1.0)  # past the deadline: the connection is given up
        assert len(proxy.held) == 1  # the INCR was not sent again
        proxy.hold.clear()
        assert await waiting in (None, b"1")  # the waited-for GET was, and is answered


async def test_an_answered_batch_leaves_its_connection_alone_past_its_deadline(
    plain: ValkeyProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch's deadline ends with its replies: a connection is not given up for a batch
    already answered (the whole process's batches would be sent again)."""
    from roomsvc.store import batching

    monkeypatch.setattr(batching, "BATCH_TIMEOUT_S", 0.2)
    async with batcher_on(plain.url) as batcher:
        first = await batcher.execute("CLIENT", "ID")
        await asyncio.sleep(0.5)
        assert await batcher.execute("CLIENT", "ID") == first


async def test_out_of_band_pushes_are_no_batch_s_reply(plain: ValkeyProcess) -> None:
    """RESP3 pushes on the link's connection (here client-side tracking's invalidations; on a
    managed store, maintenance notices) are skipped, and a RESP3 false is a reply, not a
    reply still incomplete."""
    client = await connect(plain.url)
    try:
        batcher = CommandBatcher(client)
        key = _key("tracked")
        assert await batcher.execute("CLIENT", "TRACKING", "ON") == b"OK"
        await batcher.execute("SET", key, "1")
        assert await batcher.execute("GET", key) == b"1"  # now tracked
        set_again, echoed = await asyncio.gather(
            batcher.execute("SET", key, "2"), batcher.execute("ECHO", "after")
        )
        assert (set_again, echoed) == (b"OK", b"after")
        false, after = await asyncio.gather(
            batcher.execute("EVAL", "redis.setresp(3); return false", 0),
            batcher.execute("ECHO", "next"),
        )
        assert (false, after) == (False, b"next")
    finally:
        close_link(client)
        await client.aclose()
