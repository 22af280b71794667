"""One pure-ASGI middleware for every HTTP request: a request id, bound log context, the
access log line (path only: query strings may hold tokens, docs/spec.md §2), and request latency."""

from __future__ import annotations

import functools
import os
import time
from typing import Any

from starlette.requests import HTTPConnection
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from roomsvc.common import logs
from roomsvc.common.metrics import REQUEST_LATENCY
from roomsvc.http.plumbing import as_roomsvc_error, error_response, locale_of


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = _incoming_id(scope) or os.urandom(8).hex()
        room_id = _room_of(scope["path"])
        token = logs.bind(request_id=request_id, **({"room_id": room_id} if room_id else {}))
        started = time.perf_counter()
        status = 500

        started_response = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_response
            if message["type"] == "http.response.start":
                started_response = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            # A bug: logged here once, with the request's bound context (as_roomsvc_error),
            # and answered 500 in Google's shape. Not re-raised: the server would log the
            # same traceback a second time, without the request id.
            error = as_roomsvc_error(exc)
            if not started_response:
                locale = locale_of(HTTPConnection(scope))
                await error_response(error, locale)(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            template = getattr(route, "path", None) or "unmatched"
            _latency(scope["method"], template, status).observe(elapsed)
            if template not in ("/healthz", "/metrics", "/readyz"):
                logs.access(
                    method=scope["method"],
                    path=scope["path"],
                    status=status,
                    ms=round(elapsed * 1000, 2),
                )
            logs.unbind(token)


@functools.cache
def _latency(method: str, template: str, status: int) -> Any:
    """The histogram child of one (method, route, status): looked up once, not per request.
    Bounded: route templates and status codes are finite sets."""
    return REQUEST_LATENCY.labels(method, template, str(status))


_ROOMS = "/games/v1/rooms/"


def _room_of(path: str) -> str | None:
    """The roomId of a room route (`/games/v1/rooms/{roomId}[/...]`), bound before routing so
    every record of the request carries it (docs/style.md habit 11)."""
    if not path.startswith(_ROOMS):
        return None
    room_id = path[len(_ROOMS) :].split("/", 1)[0]
    return room_id[:64] if room_id and room_id != "create" and room_id.isprintable() else None


def _incoming_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")[:64]
            if text.isprintable():
                return text
    return None
