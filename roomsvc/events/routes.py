"""REST routes of the events methods (docs/spec.md §3): each declared once with `api_route`, its
handler one call of roomsvc.events.service."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import BaseRoute

from roomsvc.events import service as events_service
from roomsvc.events import wire
from roomsvc.events.rules import MAX_PAGE_SIZE
from roomsvc.http.api_spec import LANGUAGE, PAGE_TOKEN, max_results
from roomsvc.http.routing import Call, Handler, api_route

PAGED = (LANGUAGE, max_results(1, MAX_PAGE_SIZE), PAGE_TOKEN)


@api_route("POST", "/games/v1/events", "games.events.record",
           "Records a batch of changes to the number of times events have occurred for the "
           "currently authenticated user of this application.", scopes=events_service.SCOPES,
           request=wire.EventRecordRequest, response=wire.EventUpdateResponse)  # fmt: skip
async def record(call: Call[wire.EventRecordRequest]) -> wire.EventUpdateResponse:
    state = call.state
    return await events_service.record(
        state.store, state.settings, state.config, call.principal, call.locale, call.body
    )


def _paged(listing: Callable[..., Awaitable[Any]]) -> Handler:
    """A list method's handler: `maxResults` and `pageToken` from the query string."""

    async def handler(call: Call[None]) -> Any:
        state, page = call.state, (call.query("maxResults"), call.query("pageToken"))
        return await listing(
            state.store, state.settings, state.config, call.principal, call.locale, *page
        )

    return handler


list_by_player = api_route(
    "GET", "/games/v1/events", "games.events.listByPlayer",
    "Returns a list showing the current progress on events in this application for the "
    "currently authenticated user.", scopes=events_service.SCOPES,
    response=wire.PlayerEventListResponse, query=PAGED,
)(_paged(events_service.list_by_player))  # fmt: skip

list_definitions = api_route(
    "GET", "/games/v1/eventDefinitions", "games.events.listDefinitions",
    "Returns a list of the event definitions in this application.",
    scopes=events_service.SCOPES, response=wire.EventDefinitionListResponse, query=PAGED,
)(_paged(events_service.list_definitions))  # fmt: skip

routes: list[BaseRoute] = [record, list_by_player, list_definitions]
duties: list[Any] = []
