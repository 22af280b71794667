"""A bug in a handler (docs/spec.md §3: 500 in Google's error shape) is answered once and logged
once, with the request's id, and never leaks its detail to the caller."""

from __future__ import annotations

import logging

import httpx
import pytest
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomsvc.http.middleware import RequestContextMiddleware


async def broken(request: Request) -> Response:
    raise ZeroDivisionError("secret detail")


async def test_a_bug_is_answered_500_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    app = Starlette(
        routes=[Route("/games/v1/rooms/r1/join", broken, methods=["POST"])],
        middleware=[Middleware(RequestContextMiddleware)],
    )
    # ASGITransport raises whatever the app raises: a re-raised bug fails this test, as it
    # would make the server log the traceback a second time.
    transport = httpx.ASGITransport(app=app)
    with caplog.at_level(logging.INFO):
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            reply = await client.post(
                "/games/v1/rooms/r1/join",
                headers={"x-request-id": "trace-500", "accept-language": "es"},
            )
    assert reply.status_code == 500
    error = reply.json()["error"]
    assert error["status"] == "INTERNAL" and error["errors"][0]["reason"] == "backendError"
    assert "secret detail" not in reply.text
    assert reply.headers["x-request-id"] == "trace-500"
    bugs = [r for r in caplog.records if r.exc_info and r.levelno >= logging.ERROR]
    assert len(bugs) == 1
    assert isinstance(bugs[0].exc_info[1], ZeroDivisionError)  # type: ignore[index]
