"""Health, readiness, metrics and logs (docs/spec.md §10), and a store outage seen from outside
(§3)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest

from roomsvc.store.embedded import free_port
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, token, wait_until


def log_events(server: ServerProcess) -> list[dict[str, object]]:
    """The server's JSON log lines (anything else on its output is an error)."""
    events = []
    for line in server.output().splitlines():
        if line.strip():
            events.append(json.loads(line))
    return events


def access_events(server: ServerProcess, request_id: str) -> list[dict[str, object]]:
    """The access log lines of one request, once the server has written them."""
    wait_until(
        lambda: any(
            '"roomsvc.access"' in line and request_id in line
            for line in server.output().splitlines()
        ),
        timeout=50 * UNIT,
    )
    return [
        e
        for e in log_events(server)
        if e.get("logger") == "roomsvc.access" and e.get("request_id") == request_id
    ]


async def test_healthz(http: httpx.AsyncClient) -> None:
    """/healthz answers 200 while the process is up."""
    response = await http.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_the_store_up(http: httpx.AsyncClient) -> None:
    """/readyz answers 200 while the store answers."""
    response = await http.get("/readyz")
    assert response.status_code == 200


async def test_metrics_in_prometheus_text(http: httpx.AsyncClient) -> None:
    """/metrics is Prometheus text and records request latency by route template."""
    await http.get("/readyz")
    response = await http.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert "# TYPE roomsvc_request_seconds histogram" in text
    assert 'roomsvc_request_seconds_count{code="200",method="GET",route="/readyz"}' in text
    for name in ("roomsvc_websocket_connections", "roomsvc_events_updates_total"):
        assert name in text


async def test_every_response_has_a_request_id(http: httpx.AsyncClient) -> None:
    """Each response carries X-Request-Id; a caller's own id is kept."""
    first = await http.get("/healthz")
    second = await http.get("/healthz")
    assert first.headers["x-request-id"] != second.headers["x-request-id"]
    echoed = await http.get("/healthz", headers={"X-Request-Id": "trace-abc-123"})
    assert echoed.headers["x-request-id"] == "trace-abc-123"


async def test_logs_are_json_with_request_id_and_never_a_token(
    http: httpx.AsyncClient, server: ServerProcess
) -> None:
    """Access logs are JSON events with the request id; query-string tokens never appear."""
    secret_token = token("log-player", "log-app")
    response = await http.get(
        "/games/v1/rooms",
        params={"access_token": secret_token, "oauth_token": secret_token, "alt": "json"},
        headers={"Authorization": f"Bearer {secret_token}"},
    )
    (access,) = access_events(server, response.headers["x-request-id"])
    assert access["path"] == "/games/v1/rooms"
    assert access["status"] == response.status_code
    assert secret_token not in server.output()
    assert secret_token.split(".")[2] not in server.output()  # not even the signature


# Store outage and recovery: a server whose REDIS_URL points where nothing listens yet.


@pytest.fixture(scope="module")
def outage() -> Iterator[tuple[ServerProcess, int]]:
    port = free_port()
    server = ServerProcess(f"redis://127.0.0.1:{port}/0").start()
    yield server, port
    server.stop()


def test_store_down_healthz_200_readyz_503(outage: tuple[ServerProcess, int]) -> None:
    """With the store unreachable the process stays live (200) but not ready (503 + Retry-After)."""
    server, _ = outage
    assert httpx.get(f"{server.base_url}/healthz").status_code == 200
    ready = httpx.get(f"{server.base_url}/readyz")
    assert ready.status_code == 503
    assert int(ready.headers["retry-after"]) >= 1


def test_store_down_requests_get_503_in_google_shape(outage: tuple[ServerProcess, int]) -> None:
    """An authenticated call while the store is down is a 503 with Retry-After, Google's shape."""
    server, _ = outage
    response = httpx.get(
        f"{server.base_url}/games/v1/rooms", headers=auth("p1", "outage-app"), timeout=30
    )
    assert response.status_code == 503, response.text
    assert int(response.headers["retry-after"]) >= 1
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
    assert error["errors"][0]["reason"] == "backendError"
    (access,) = access_events(server, response.headers["x-request-id"])
    assert access["status"] == 503
    assert "Traceback" not in server.output()
    metrics = httpx.get(f"{server.base_url}/metrics").text
    assert "roomsvc_store_errors_total{" in metrics


def test_store_recovery_without_restart(outage: tuple[ServerProcess, int]) -> None:
    """Once the store comes up at that address, /readyz turns 200 without restarting serve."""
    server, port = outage
    assert httpx.get(f"{server.base_url}/readyz").status_code == 503
    pid = server.process.pid if server.process else None
    valkey = ValkeyProcess(port=port).start()
    try:
        wait_until(
            lambda: httpx.get(f"{server.base_url}/readyz").status_code == 200,
            timeout=100 * UNIT,
        )
        assert server.process is not None and server.process.pid == pid
        assert server.process.poll() is None
    finally:
        valkey.stop()
