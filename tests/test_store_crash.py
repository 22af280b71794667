"""The store killed under load and restarted from its append-only file (docs/spec.md §12 item 4).

valkey runs with `appendfsync always`, so a write is on disk before its reply leaves: every
mutation a client saw acknowledged must survive a SIGKILL. Calls cut off by the crash are
ambiguous (503): each must have been applied once or not at all, which tests/toggle_load.py
checks through the rooms' versions and applied-request sets (docs/design.md "Retries never
double-apply").
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from roomsvc.store.embedded import free_port
from tests.support import UNIT, ServerProcess, ValkeyProcess, new_app_id
from tests.toggle_load import Outcome, Room, check_history, make_room, work

ROOMS = 12
CALLS_PER_WORKER = 200  # two workers a room: under the applied set's cap of 512 ids
CRASHES = 2
AOF = ("--appendonly", "yes", "--appendfsync", "always", "--aof-use-rdb-preamble", "no")


@pytest.fixture
def durable(request: pytest.FixtureRequest) -> Iterator[ValkeyProcess]:
    """A valkey of its own on a fixed port and directory, so a restart reloads its AOF."""
    if request.config.getoption("--cluster"):
        pytest.skip("kills a single store process")
    valkey = ValkeyProcess(port=free_port(), extra=AOF).start()
    yield valkey
    valkey.stop()


@pytest.fixture
def served(durable: ValkeyProcess) -> Iterator[ServerProcess]:
    server = ServerProcess(durable.url).start()
    yield server
    server.stop()


@pytest.fixture
async def durable_store(durable: ValkeyProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(durable.url)
    yield client
    await client.aclose()


def crash(valkey: ValkeyProcess) -> None:
    assert valkey.process is not None
    valkey.process.kill()  # SIGKILL: no shutdown save, only what the AOF already holds
    valkey.process.wait()
    valkey.process = None


async def until(count: Callable[[], int], target: int, workers: list[asyncio.Task[None]]) -> None:
    """Wait for `count()` to reach `target`, or for a worker to fail (reported by the caller)."""
    for _ in range(600):
        if count() >= target or any(t.done() for t in workers):
            return
        await asyncio.sleep(UNIT / 2)
    raise AssertionError(f"{count.__name__} stayed below {target}")


@pytest.mark.slow
async def test_acknowledged_mutations_survive_a_store_crash(
    durable: ValkeyProcess, served: ServerProcess, durable_store: aioredis.Redis
) -> None:
    app = new_app_id()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=served.base_url, timeout=60, limits=limits) as client:
        rooms: list[Room] = list(
            await asyncio.gather(*(make_room(client, app) for _ in range(ROOMS)))
        )
        log: list[Outcome] = []
        stop = asyncio.Event()
        workers = [
            asyncio.create_task(work(client, app, rooms, i, w, stop, CALLS_PER_WORKER, log))
            for i in range(ROOMS)
            for w in ("creator", "ana")
        ]

        def acked() -> int:
            return sum(o.acked for o in log)

        def refused() -> int:
            return sum(o.ambiguous for o in log)

        try:
            for _ in range(CRASHES):
                await until(acked, acked() + 100, workers)
                cut = refused()
                crash(durable)
                # The clients keep calling while the store is down: each gets a clear 503.
                await until(refused, cut + 1, workers)
                durable.start()  # same port, same directory: the AOF is reloaded
            await until(acked, acked() + 100, workers)
        finally:
            stop.set()
            await asyncio.gather(*workers)

    totals = await check_history(durable_store, app, rooms, log)
    assert totals["ambiguous"] > 0, totals  # the crashes did cut calls off
    assert "internal error" not in served.output()
