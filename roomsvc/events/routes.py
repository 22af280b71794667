"""The events methods (docs/spec.md §3, §7): one table (docs/api.md), each row one call of
roomsvc.events.service, from which the REST routes, the JSON-RPC dispatch and the API documents
are built."""

from __future__ import annotations

from typing import Any

from starlette.routing import BaseRoute

from roomsvc.auth.tokens import SCOPE_GAMES, SCOPE_GAMES_LITE
from roomsvc.events import service, wire
from roomsvc.events.rules import MAX_PAGE_SIZE
from roomsvc.http.api_spec import LANGUAGE, Method, Param, max_results, page_token
from roomsvc.http.routing import rest_routes

SCOPES = (SCOPE_GAMES, SCOPE_GAMES_LITE)  # docs/spec.md §2: events accept games or games_lite


def _paged(list_name: str) -> tuple[Param, ...]:
    return (LANGUAGE, max_results(1, MAX_PAGE_SIZE), page_token(list_name))


methods = (
    Method("games.events.record", "POST", "/games/v1/events",
           "Records a batch of changes to the number of times events have occurred for the "
           "currently authenticated user of this application.", SCOPES,
           lambda s, a: service.record(s.store, s.settings, s.config, a.principal, a.locale,
                                       a.body),
           request=wire.EventRecordRequest, response=wire.EventUpdateResponse),
    Method("games.events.listByPlayer", "GET", "/games/v1/events",
           "Returns a list showing the current progress on events in this application for the "
           "currently authenticated user.", SCOPES,
           lambda s, a: service.list_by_player(s.store, s.settings, s.config, a.principal,
                                               a.locale, a.max_results, a.page_token),
           response=wire.PlayerEventListResponse, query=_paged("playerEvents")),
    Method("games.events.listDefinitions", "GET", "/games/v1/eventDefinitions",
           "Returns a list of the event definitions in this application.", SCOPES,
           lambda s, a: service.list_definitions(s.store, s.settings, s.config, a.principal,
                                                 a.locale, a.max_results, a.page_token),
           response=wire.EventDefinitionListResponse, query=_paged("eventDefinitions")),
)  # fmt: skip

routes: list[BaseRoute] = list(rest_routes(methods))
duties: list[Any] = []
