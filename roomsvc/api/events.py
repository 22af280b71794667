"""REST routes of the events methods (SPEC §3): decode, call roomsvc.events_service, encode."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roomsvc import events_service
from roomsvc import events_wire as wire
from roomsvc.api_spec import LANGUAGE, PAGE_TOKEN, api_method, max_results
from roomsvc.events import MAX_PAGE_SIZE
from roomsvc.web import authenticate, locale_of, read_body, respond

PAGED = (LANGUAGE, max_results(1, MAX_PAGE_SIZE), PAGE_TOKEN)


@api_method(
    id="games.events.record",
    description="Records a batch of changes to the number of times events have occurred for "
    "the currently authenticated user of this application.",
    scopes=events_service.SCOPES,
    request=wire.EventRecordRequest,
    response=wire.EventUpdateResponse,
)
async def record(request: Request) -> Response:
    principal = authenticate(request, *events_service.SCOPES)
    body = await read_body(request, wire.EventRecordRequest)
    state = request.app.state
    result = await events_service.record(
        state.store, state.settings, state.config, principal, locale_of(request), body
    )
    return respond(request, result)


@api_method(
    id="games.events.listByPlayer",
    description="Returns a list showing the current progress on events in this application "
    "for the currently authenticated user.",
    scopes=events_service.SCOPES,
    response=wire.PlayerEventListResponse,
    query=PAGED,
)
async def list_by_player(request: Request) -> Response:
    principal = authenticate(request, *events_service.SCOPES)
    state, query = request.app.state, request.query_params
    result = await events_service.list_by_player(
        state.store, state.settings, state.config, principal, locale_of(request),
        query.get("maxResults"), query.get("pageToken"),
    )  # fmt: skip
    return respond(request, result)


@api_method(
    id="games.events.listDefinitions",
    description="Returns a list of the event definitions in this application.",
    scopes=events_service.SCOPES,
    response=wire.EventDefinitionListResponse,
    query=PAGED,
)
async def list_definitions(request: Request) -> Response:
    principal = authenticate(request, *events_service.SCOPES)
    state, query = request.app.state, request.query_params
    result = await events_service.list_definitions(
        state.store, state.settings, state.config, principal, locale_of(request),
        query.get("maxResults"), query.get("pageToken"),
    )  # fmt: skip
    return respond(request, result)


routes: list[BaseRoute] = [
    Route("/games/v1/events", record, methods=["POST"], name="events.record"),
    Route("/games/v1/events", list_by_player, methods=["GET"], name="events.listByPlayer"),
    Route(
        "/games/v1/eventDefinitions",
        list_definitions,
        methods=["GET"],
        name="events.listDefinitions",
    ),
]
duties: list[Any] = []
