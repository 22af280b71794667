"""Liveness, readiness and metrics (docs/spec.md §10, §12 item 16).

Readiness is judged by a background probe, not by the request: every PROBE_EVERY_S the probe
pings the store under its own short deadline and records the answer, so `/readyz` answers at
once from that record, 503 within about a second of a stall or an outage and 200 within about a
second of recovery (a probe against a stalled store cannot hang: it has PROBE_DEADLINE_S).
"""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.common.errors import StoreUnavailable
from roomsvc.common.metrics import CONTENT_TYPE, STORE_READY, render
from roomsvc.http.scrape import sample_pools
from roomsvc.store.connection import UNAVAILABLE_ERRORS

PROBE_EVERY_S = 0.5
PROBE_DEADLINE_S = 0.5


class Readiness:
    """The store's reachability as the last probe found it (None: not probed yet)."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self.ready: bool | None = None

    async def probe(self) -> bool:
        try:
            async with asyncio.timeout(PROBE_DEADLINE_S):
                await self.store.ping()
            self.ready = True
        except UNAVAILABLE_ERRORS:
            self.ready = False
        STORE_READY.set(int(self.ready))
        return self.ready


def readiness_of(app: Any) -> Readiness:
    readiness = getattr(app.state, "readiness", None)
    if readiness is None:
        readiness = app.state.readiness = Readiness(app.state.store)
    return readiness


async def healthz(request: Request) -> Response:
    """The process is up (no store call: a store outage must not get the process killed)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready only while the store answers; a load balancer takes us out of rotation on 503."""
    readiness = readiness_of(request.app)
    ready = readiness.ready
    if ready is None:  # before the first probe: probe now (bounded by its deadline)
        ready = await readiness.probe()
    if not ready:
        headers = StoreUnavailable(retry_after=2).headers()
        return JSONResponse({"status": "store unavailable"}, 503, headers=headers)
    return JSONResponse({"status": "ok"})


async def readiness_duty(app: Any) -> None:
    readiness = readiness_of(app)
    while True:
        raise_if_cancelled()
        await readiness.probe()
        await asyncio.sleep(PROBE_EVERY_S)


async def loop_watch_duty(app: Any) -> None:
    """How late the event loop runs, for /metrics (call_guard.py)."""
    await app.state.guard.watch_loop()


async def metrics_endpoint(request: Request) -> Response:
    """The process's metrics, with the store-wide figures sampled at this scrape."""
    state = request.app.state
    await sample_pools(state.store, state.settings.store_deadline_ms / 1000)
    return Response(render(), media_type=CONTENT_TYPE)


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
duties = [readiness_duty, loop_watch_duty]
