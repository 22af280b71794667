"""`create_app(settings)`: the Starlette application, its resources and background duties.

Resources (store client, token verifier, config) belong to the lifespan (docs/style.md habit 4).
Background duties of every feature run as tasks for the app's lifetime; a duty that crashes is
logged and restarted, so one bug cannot silently stop matching or presence in a process.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import logging
import multiprocessing
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.routing import BaseRoute

from roomsvc.analytics import routes as analytics
from roomsvc.auth.tokens import TokenVerifier
from roomsvc.common import logs, metrics
from roomsvc.common.call_guard import CallGuard
from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.common.errors import RoomsvcError
from roomsvc.config import load_config
from roomsvc.events import routes as events
from roomsvc.http import clients, discovery, health
from roomsvc.http.middleware import RequestContextMiddleware
from roomsvc.http.plumbing import handle_error, handle_http_exception
from roomsvc.matching import duty as matching
from roomsvc.matching.pools import PoolStore
from roomsvc.realtime import routes as realtime
from roomsvc.realtime.hub import Hub
from roomsvc.rooms import routes as rooms
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.service import RoomsService
from roomsvc.rooms.store import RoomStore
from roomsvc.settings import Settings, SettingsError
from roomsvc.store.connection import UNAVAILABLE_ERRORS, connect
from roomsvc.store.link import close_link

log = logging.getLogger("roomsvc.app")
Duty = Callable[[Starlette], Awaitable[None]]
GC_YOUNG_THRESHOLD = 10_000
DUTIES_STOP_S = 5.0  # how long shutdown waits for the cancelled background duties
# In routing order: a request is checked against each route before its own, at ~1 us a route
# (docs/performance.md "Fewer round trips per join"): the realtime socket and the room calls first.
FEATURES: tuple[Any, ...] = (
    realtime,
    rooms,
    health,
    matching,
    events,
    analytics,
    discovery,
    clients,
)


def _name_of(duty: Duty) -> str:
    return getattr(duty, "__qualname__", repr(duty))


async def supervise(duty: Duty, app: Starlette) -> None:
    name = _name_of(duty)
    while True:
        try:
            await duty(app)
            return
        except Exception as exc:
            raise_if_cancelled()  # a cancel that came back as an error is shutdown, not a failure
            if isinstance(exc, UNAVAILABLE_ERRORS):
                # A store outage is expected operation, not a bug: no traceback, and while it
                # lasts one line per duty every 30 s (with how many were held back).
                logs.outage_warning(log, name, "background duty paused: store unavailable",
                                    duty=name, error=type(exc).__name__)  # fmt: skip
            else:
                log.exception("background duty crashed; restarting", extra={"duty": name})
            await asyncio.sleep(1.0)


def create_app(settings: Settings) -> Starlette:
    if settings.redis_url is None:
        raise SettingsError(["REDIS_URL: required by the app (roomsvc serve sets it)"])
    limits = Limits.of(settings)
    routes: list[BaseRoute] = []
    duties: list[Duty] = []
    for feature in FEATURES:
        routes += feature.routes
        duties += feature.duties

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        app.state.store = await connect(settings.redis_url or "")
        app.state.room_store = RoomStore(app.state.store, limits, settings.tombstone_seconds * 1000)
        app.state.rooms = RoomsService(app.state.room_store, limits, PoolStore(app.state.store))
        app.state.realtime = Hub(app.state, settings)
        tasks = [asyncio.create_task(supervise(duty, app), name=_name_of(duty)) for duty in duties]
        if settings.uses_dev_secret:
            log.warning(
                "ROOMSVC_JWT_SECRET is unset: using the public dev secret; anyone can mint "
                "tokens. Set ROOMSVC_JWT_SECRET or ROOMSVC_JWT_PUBLIC_KEYS in production."
            )
        # Everything built so far (modules, catalogs, the discovery document) lives as long as
        # the process: moved out of the collector's sight, full collections stay short.
        gc.freeze()
        # A handshake or a request allocates thousands of short-lived objects: at the default
        # 700 allocations a young collection runs several times per join (docs/performance.md
        # "Joins"). Cycles are rare here and wait a little longer.
        gc.set_threshold(GC_YOUNG_THRESHOLD, *gc.get_threshold()[1:])
        metrics.watch_gc()
        try:
            yield
        finally:
            app.state.stopping = True
            for task in tasks:
                task.cancel()
            # Bounded: a duty stuck in a store call must not keep the process from exiting
            # on SIGTERM (its hand-over is best effort; leases cover the rest, docs/spec.md §12 #3).
            _, stuck = await asyncio.wait(tasks, timeout=DUTIES_STOP_S) if tasks else ((), ())
            for task in stuck:
                log.warning("background duty did not stop in time",
                            extra={"duty": task.get_name()})  # fmt: skip
            close_link(app.state.store)
            await app.state.store.aclose()

    app = Starlette(
        routes=routes,
        middleware=[Middleware(RequestContextMiddleware)],
        # Store errors are listed by class so Starlette's ExceptionMiddleware answers them
        # (503 + Retry-After, no traceback). Anything else is a bug: RequestContextMiddleware
        # logs it once with the request's context and answers 500 (http/middleware.py).
        exception_handlers={
            RoomsvcError: handle_error,
            HTTPException: handle_http_exception,
            **{error: handle_error for error in UNAVAILABLE_ERRORS},
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.verifier = TokenVerifier(settings)
    app.state.guard = CallGuard(settings)
    app.state.config = load_config(settings.config_path)
    app.state.stopping = False
    app.state.wait_estimate = None  # the matcher's, once its duty runs (matching/duty.py)
    return app


def _exit_with_supervisor() -> None:
    """A uvicorn worker outlives a SIGKILLed `serve` and keeps holding the port; on Linux the
    parent-death signal turns the supervisor's death into this worker's graceful SIGTERM."""
    parent = multiprocessing.parent_process()
    if parent is None or not sys.platform.startswith("linux"):
        return  # a single-process serve is the supervisor itself
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    if os.getppid() != parent.pid:  # the supervisor died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


def create_app_from_env() -> Starlette:
    """uvicorn factory for `roomsvc serve` workers (settings come from the environment)."""
    _exit_with_supervisor()
    settings = Settings.from_env()
    logs.configure(settings.log_level)
    return create_app(settings)
