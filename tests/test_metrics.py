"""/metrics on `roomsvc serve --workers 2` (docs/spec.md §10): whichever worker answers a scrape,
the figures are those of the whole service (prometheus-client multiprocess mode, set up by `serve`).

Every request here opens a fresh connection, so the kernel spreads them over both workers; the
metrics directory proves that both served.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from websockets.asyncio.client import connect

from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, token

ROOMS = "/games/v1/rooms"
N = 40


@pytest.fixture(scope="module")
def duo(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    """One `serve` with two workers, metrics of its own (no other test talks to it). Its data
    dir holds the metrics left by a serve that was SIGKILLed (see the test below)."""
    cwd = Path(tempfile.mkdtemp(prefix="roomsvc-serve-"))
    gone = subprocess.Popen(["true"])
    gone.wait()
    orphan = cwd / ".roomsvc" / f"metrics-{gone.pid}"
    orphan.mkdir(parents=True)
    (orphan / f"counter_{gone.pid}.db").write_bytes(b"\0" * 64)
    process = ServerProcess(valkey.url, workers=2, cwd=cwd).start()
    yield process
    process.stop()


def test_metrics_of_a_killed_serve_are_removed_at_start(duo: ServerProcess) -> None:
    """A serve killed with SIGKILL leaves its metrics dir behind; the next one removes it
    (and only it: its own dir is the one left)."""
    dirs = [p.name for p in Path(duo.cwd).glob(".roomsvc/metrics-*")]
    assert duo.process is not None
    assert dirs == [f"metrics-{duo.process.pid}"]


@pytest.fixture
async def fresh(duo: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    """A client that never reuses a connection (so requests land on either worker)."""
    limits = httpx.Limits(max_keepalive_connections=0)
    async with httpx.AsyncClient(base_url=duo.base_url, timeout=30, limits=limits) as client:
        yield client


async def scrape(http: httpx.AsyncClient) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = await http.get("/metrics")
    assert reply.status_code == 200
    samples = {}
    for family in text_string_to_metric_families(reply.text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def total(samples: dict, name: str, **labels: str) -> float:  # type: ignore[type-arg]
    """The sum of `name` over every series whose labels include `labels`."""
    return sum(
        value
        for (sample, series), value in samples.items()
        if sample == name and set(labels.items()) <= set(series)
    )


async def every_scrape(http: httpx.AsyncClient, name: str, expected: float, **labels: str) -> None:
    """Six scrapes (both workers answer some) all show `expected`."""
    for _ in range(6):
        assert total(await scrape(http), name, **labels) == expected


def metric_pids(duo: ServerProcess) -> set[str]:
    files = list(Path(duo.cwd).glob(".roomsvc/metrics-*/counter_*.db"))
    return {f.stem.rsplit("_", 1)[-1] for f in files}


async def test_request_counts_sum_across_workers(
    fresh: httpx.AsyncClient, duo: ServerProcess, app_id: str
) -> None:
    """N requests on one route: every scrape shows N, and both workers served some."""
    for _ in range(N):
        assert (await fresh.get(ROOMS, headers=auth("p", app_id))).status_code == 200
    name = "roomsvc_request_seconds_count"
    await every_scrape(fresh, name, N, route=ROOMS, method="GET", code="200")
    assert len(metric_pids(duo)) >= 2


async def test_rooms_events_and_analytics_are_counted(fresh: httpx.AsyncClient) -> None:
    """Room transitions by status, events.record updates and analytics items add up."""
    before = await scrape(fresh)
    app = "demo"
    for n in range(4):
        room = (
            await fresh.post(
                f"{ROOMS}/create", json={"invitedPlayerIds": [f"b{n}"]}, headers=auth(f"a{n}", app)
            )
        ).json()
        await fresh.post(f"{ROOMS}/{room['roomId']}/join", json={}, headers=auth(f"b{n}", app))
    now = int(time.time() * 1000)
    for n in range(3):
        body = {
            "currentTimeMillis": str(now),
            "timePeriods": [
                {
                    "timePeriod": {
                        "periodStartMillis": str(now - 60_000),
                        "periodEndMillis": str(now - 1000),
                    },
                    "updates": [{"definitionId": "ev_kills", "updateCount": "2"}],
                }
            ],
        }
        reply = await fresh.post("/games/v1/events", json=body, headers=auth(f"e{n}", app))
        assert reply.status_code == 200, reply.text
    items = [{"Timestamp": "1700000000", "Event": "Nav", "Data": [{"a": "b"}]}] * 5
    for n in range(2):
        batch = {"Token": token(f"x{n}", app), "eventData": items}
        reply = await fresh.post("/analytics/v1/AddEventBatch", json=batch)
        assert reply.json()["StatusCode"] == 0, reply.text
    after = await scrape(fresh)

    def grew(name: str, **labels: str) -> float:
        return total(after, name, **labels) - total(before, name, **labels)

    assert grew("roomsvc_room_transitions_total", status="ROOM_INVITING") == 4
    assert grew("roomsvc_room_transitions_total", status="ROOM_CONNECTING") == 4
    assert grew("roomsvc_events_updates_total") == 3
    assert grew("roomsvc_analytics_items_total") == 10


async def test_websocket_connections_and_push_latency(
    fresh: httpx.AsyncClient, duo: ServerProcess, app_id: str
) -> None:
    """Open sockets are summed over the workers; a push is timed; closing brings the sum back."""
    url = duo.base_url.replace("http://", "ws://") + "/games/v1/realtime"
    before = total(await scrape(fresh), "roomsvc_push_seconds_count")
    sockets = []
    for who in ("w1", "w2", "w3"):
        ws = await connect(f"{url}?access_token={token(who, app_id)}", compression=None)
        assert json.loads(await ws.recv())["method"] == "welcome"
        sockets.append(ws)
    await every_scrape(fresh, "roomsvc_websocket_connections", 3)
    room = (
        await fresh.post(
            f"{ROOMS}/create", json={"invitedPlayerIds": ["w2"]}, headers=auth("w1", app_id)
        )
    ).json()
    await fresh.post(f"{ROOMS}/{room['roomId']}/join", json={}, headers=auth("w2", app_id))
    async with asyncio.timeout(100 * UNIT):
        while json.loads(await sockets[0].recv()).get("method") != "roomStatus":
            pass
    assert total(await scrape(fresh), "roomsvc_push_seconds_count") > before
    for ws in sockets:
        await ws.close()
    async with asyncio.timeout(100 * UNIT):  # each worker notices its close on its own
        for _ in iter(int, 1):
            if total(await scrape(fresh), "roomsvc_websocket_connections") == 0:
                break
            await asyncio.sleep(0.05)


async def test_pool_size_is_sampled(fresh: httpx.AsyncClient, app_id: str) -> None:
    """A seeker nobody can match yet shows in the pool size, on any worker."""
    criteria = {"minAutoMatchingPlayers": 3, "maxAutoMatchingPlayers": 3}
    reply = await fresh.post(
        f"{ROOMS}/create", json={"autoMatchingCriteria": criteria}, headers=auth("lone", app_id)
    )
    assert reply.status_code == 200, reply.text
    for _ in range(4):
        assert total(await scrape(fresh), "roomsvc_pool_tickets") >= 1
    await fresh.post(
        f"{ROOMS}/{reply.json()['roomId']}/leave", json={}, headers=auth("lone", app_id)
    )


async def test_store_errors_are_counted() -> None:
    """With the store gone, requests answer 503 and /metrics still answers, counting them."""
    own = ValkeyProcess().start()
    server = ServerProcess(own.url).start()
    try:
        own.stop()
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            reply = await http.get(ROOMS, headers=auth("p", "app-outage"))
            assert reply.status_code == 503
            assert total(await scrape(http), "roomsvc_store_errors_total") >= 1
    finally:
        server.stop()


def test_collector_pauses_are_timed_by_generation() -> None:
    """The collector's callback only notes a pause (a collection may start inside any metric
    call, holding prometheus-client's lock); the loop's tick observes it, once."""
    import gc

    from roomsvc.common.metrics import GC_PAUSE, record_gc_pauses, watch_gc

    def collected() -> float:
        return sum(
            s.value
            for metric in GC_PAUSE.collect()
            for s in metric.samples
            if s.name.endswith("_count") and s.labels["generation"] == "2"
        )

    watch_gc()
    watch_gc()  # idempotent: one observation per collection, not two
    record_gc_pauses()
    before = collected()
    gc.collect()
    assert collected() == before  # noted, not yet observed: no metric call inside the collector
    record_gc_pauses()
    assert collected() == before + 1
