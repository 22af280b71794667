"""store/pipelined.py, the matcher's one-round-trip batches, on a plain server and a cluster:
replies in the order queued, a script whose cache was flushed run exactly once, an error
raised rather than returned."""

from __future__ import annotations

import uuid

import pytest
import redis

from roomsvc.store.connection import connect
from roomsvc.store.pipelined import Batch
from tests.cluster import ValkeyCluster
from tests.support import ValkeyProcess

# A script that counts its runs, so a call sent twice would show.
COUNT = "redis.call('INCR', KEYS[1]); return redis.call('GET', KEYS[1])"


@pytest.fixture(params=["plain", "cluster"])
def url(request: pytest.FixtureRequest, valkey: ValkeyProcess) -> str:
    if request.param == "cluster":
        nodes: ValkeyCluster = request.getfixturevalue("cluster")
        return nodes.url
    return valkey.url


async def test_replies_come_back_in_the_order_queued(url: str) -> None:
    """Commands and script calls interleaved: each reply at its own index, in order."""
    store = await connect(url)
    try:
        tag = uuid.uuid4().hex
        script = store.register_script(COUNT)
        batch = Batch(store)
        first = batch.command("INCR", f"{{a{tag}}}:x")
        counted = [batch.script(script, [f"{{b{tag}:{n}}}:n"], []) for n in range(20)]
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
        script = store.register_script(COUNT)
        await script(keys=[f"{{{tag}}}:warm"])
        await store.script_flush()
        batch = Batch(store)
        calls = [batch.script(script, [f"{{{tag}}}:n"], []) for _ in range(5)]
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
        with pytest.raises(redis.ResponseError):
            await batch.run()
    finally:
        await store.aclose()


async def test_a_batch_outlives_a_dropped_connection(
    valkey: ValkeyProcess, request: pytest.FixtureRequest
) -> None:
    """The server closes the batch's pooled connection: the batch is sent again on a new one."""
    if request.config.getoption("--cluster"):
        pytest.skip("the resend on a new connection is the plain server's path")
    store = await connect(valkey.url)
    try:
        key = f"{{{uuid.uuid4().hex}}}:n"
        first = Batch(store)
        first.command("INCR", key)
        first.command("CLIENT", "ID")
        count, client_id = await first.run()
        assert count == 1
        # Only the batch's own connection: the session store serves other tests' servers too.
        with redis.Redis.from_url(valkey.url) as other:
            assert other.execute_command("CLIENT", "KILL", "ID", client_id)
        second = Batch(store)
        second.command("INCR", key)
        assert await second.run() == [2]
    finally:
        await store.aclose()
