"""Liveness, readiness and metrics (SPEC §10)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from roomsvc.errors import StoreUnavailable
from roomsvc.metrics import metrics_endpoint
from roomsvc.store.connection import ping


async def healthz(request: Request) -> Response:
    """The process is up (no store call: a store outage must not get the process killed)."""
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    """Ready only while the store answers; a load balancer takes us out of rotation on 503."""
    try:
        await ping(request.app.state.store)
    except StoreUnavailable as exc:
        return JSONResponse({"status": "store unavailable"}, 503, headers=exc.headers())
    return JSONResponse({"status": "ok"})


routes = [
    Route("/healthz", healthz, methods=["GET"]),
    Route("/readyz", readyz, methods=["GET"]),
    Route("/metrics", metrics_endpoint, methods=["GET"]),
]
duties: list = []
