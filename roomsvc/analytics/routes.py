"""REST routes for analytics (docs/spec.md §8): AddEventBatch, AddEvent, AnonymousSession.

Every answer, errors included, is the seed's envelope `{StatusCode, Severity, StatusMessage,
Content}` (not Google's error shape): StatusCode 0 on success, the table of analytics.py on
failure, with the matching HTTP status and a message in the caller's language (docs/spec.md §9).
"""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roomsvc.analytics import rules as analytics
from roomsvc.analytics import service as analytics_service
from roomsvc.analytics.store import AnalyticsStore
from roomsvc.analytics.wire import AnonymousSessionRequest, Envelope
from roomsvc.common.clock import now_ms, now_s
from roomsvc.common.errors import N_, UnsupportedMediaType
from roomsvc.common.i18n import gettext
from roomsvc.http.plumbing import as_roomsvc_error, decode_json, locale_of, read_raw, respond

# navigator.sendBeacon posts text/plain: offline web clients flushing a pool use it.
_ACCEPTED_TYPES = ("application/json", "text/plain")


def _store(app: Starlette) -> AnalyticsStore:
    store: AnalyticsStore | None = getattr(app.state, "analytics_store", None)
    if store is None:
        store = app.state.analytics_store = AnalyticsStore(app.state.store)
    return store


def _check_content_type(request: Request, raw: bytes) -> None:
    main = request.headers.get("content-type", "application/json").split(";")[0].strip().lower()
    if raw.strip() and main not in _ACCEPTED_TYPES and not main.endswith("+json"):
        raise UnsupportedMediaType()


def _ok(request: Request, msgid: str, content: Any) -> Response:
    message = gettext(locale_of(request), msgid)
    return respond(
        request, Envelope(analytics.STATUS_OK, analytics.SEVERITY_INFO, message, content)
    )


def _failure(request: Request, exc: Exception) -> Response:
    error = as_roomsvc_error(exc)
    envelope = Envelope(
        analytics.status_code_of(error),
        analytics.SEVERITY_ERROR,
        error.message(locale_of(request)),
        False,
    )
    response = respond(request, envelope, error.http_status)
    response.headers.update(error.headers())
    return response


async def _ingest(request: Request, *, single: bool) -> Response:
    settings = request.app.state.settings
    try:
        raw = await read_raw(request, settings.analytics_max_body_bytes)
        _check_content_type(request, raw)
        async with request.app.state.guard.call("rest", mutation=True):  # call_guard.py
            result = await analytics_service.add_events(
                _store(request.app),
                settings,
                request.app.state.verifier,
                raw,
                authorization=request.headers.get("authorization"),
                single=single,
                now_ms=now_ms(),
            )
    except Exception as exc:
        return _failure(request, exc)
    if result.stored:
        return _ok(request, N_("OK"), True)
    return _ok(request, N_("OK: this batch was already stored."), True)


async def add_event_batch(request: Request) -> Response:
    return await _ingest(request, single=False)


async def add_event(request: Request) -> Response:
    return await _ingest(request, single=True)


async def anonymous_session(request: Request) -> Response:
    try:
        raw = await read_raw(request, request.app.state.settings.max_body_bytes)
        _check_content_type(request, raw)
        body = decode_json(raw if raw.strip() else b"{}", AnonymousSessionRequest)
        session = analytics_service.mint_anonymous_session(
            request.app.state.settings, body.any_application_id(), now_s()
        )
    except Exception as exc:
        return _failure(request, exc)
    return _ok(request, N_("OK"), session)


routes: list[BaseRoute] = [
    Route("/analytics/v1/AddEventBatch", add_event_batch, methods=["POST"]),
    Route("/analytics/v1/AddEvent", add_event, methods=["POST"]),
    Route("/analytics/v1/AnonymousSession", anonymous_session, methods=["POST"]),
]
duties: list[Any] = []
