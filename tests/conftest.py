"""Session fixtures every test module reuses: one throwaway valkey-server from the wheel, one
real `roomsvc serve` process on a free port, HTTP clients and tokens."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx
import pytest
import redis.asyncio as aioredis

from tests.cluster import ValkeyCluster
from tests.support import ServerProcess, ValkeyProcess, google_client, new_app_id
from tests.valkey_proxy import LossyProxy


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--cluster",
        action="store_true",
        help="back the session `server` and `store` fixtures with a three-master Valkey cluster",
    )


@pytest.fixture(scope="session")
def cluster() -> Iterator[ValkeyCluster]:
    """A local three-master Valkey cluster from the wheel (tests/cluster.py)."""
    nodes = ValkeyCluster().start()
    yield nodes
    nodes.stop()


@pytest.fixture(scope="session")
def valkey(request: pytest.FixtureRequest) -> Iterator[ValkeyProcess]:
    """The session's store; with `pytest --cluster`, the cluster (every server the suite starts
    on `valkey.url` then runs against it)."""
    if request.config.getoption("--cluster"):
        yield request.getfixturevalue("cluster")
        return
    server = ValkeyProcess().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    """One real `roomsvc serve` process shared by the session (tenants keep tests apart)."""
    process = ServerProcess(valkey.url).start()
    yield process
    process.stop()


@pytest.fixture
def app_id() -> str:
    return new_app_id()


@pytest.fixture
async def http(server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
        yield client


@pytest.fixture
async def store(valkey: ValkeyProcess, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    if request.config.getoption("--cluster"):
        client: Any = aioredis.RedisCluster.from_url(valkey.url)
        await client.initialize()  # before any burst: lazy initialization races it
    else:
        client = aioredis.Redis.from_url(valkey.url)
    yield client
    await client.aclose()


@pytest.fixture
async def proxy(valkey: ValkeyProcess, request: pytest.FixtureRequest) -> AsyncIterator[LossyProxy]:
    """A proxy in front of the session's store (tests/valkey_proxy.py), passing everything until
    a test sets its loss or holds; one store process only."""
    if request.config.getoption("--cluster"):
        pytest.skip("one proxied store process")
    started = await LossyProxy(valkey.port, loss=0.0, seed=5).start()
    yield started
    await started.stop()


@pytest.fixture
def google(server: ServerProcess) -> Iterator[Callable[..., Any]]:
    """Google's API client for a player: `google("alice", app_id, name=..., base_url=...)`;
    each client's connections are closed at teardown (warnings are errors here)."""
    clients: list[Any] = []

    def make(player: str, app: str, *, base_url: str | None = None, **kwargs: Any) -> Any:
        client = google_client(base_url or server.base_url, player, app, **kwargs)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


@pytest.fixture
def own_valkey() -> Iterator[ValkeyProcess]:
    """A store of the test's own: sweeps run with a `now` far ahead claim every lapsed deadline
    in the store they see, which must not be other tests' players."""
    store = ValkeyProcess().start()
    yield store
    store.stop()


@pytest.fixture
async def redis_client(own_valkey: ValkeyProcess) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(own_valkey.url)
    yield client
    await client.aclose()
