"""REST routes built from the method tables (docs/api.md; docs/style.md "Transport is thin").

Each `Method` becomes an endpoint that authenticates, decodes the body, makes the method's one
service call and encodes its result. Order of checks, as on every method: the token and its
scopes (401/403), then the body (413/415/400), then the service.

Methods that share a path (`GET` and `POST /games/v1/events`) share one `ApiRoute`, so a verb
the path does not serve is a 405 whose `Allow` lists every verb it does (RFC 9110 §15.5.6).
Everything here runs once, at start-up; a request costs the endpoint's own work only.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomsvc.common.errors import MethodNotAllowed
from roomsvc.http.api_spec import Args, Method
from roomsvc.http.plumbing import authenticate, base_url_of, locale_of, read_body, respond
from roomsvc.rooms.view import ViewContext

Endpoint = Callable[[Request], Awaitable[Response]]


class ApiRoute(Route):
    """A route of one path carrying the table rows it serves (read by discovery.py)."""

    def __init__(self, path: str, methods: tuple[Method, ...]) -> None:
        endpoints = {m.verb: rest_endpoint(m) for m in methods}
        if len(endpoints) == 1:
            (endpoint,) = endpoints.values()
        else:
            endpoint = _by_verb(endpoints)
        super().__init__(path, endpoint, methods=list(endpoints), name=methods[0].rpc_name)
        self.api_methods = methods


def _by_verb(endpoints: dict[str, Endpoint]) -> Endpoint:
    by_verb = {**endpoints, "HEAD": endpoints.get("GET")}

    async def endpoint(request: Request) -> Response:
        chosen = by_verb.get(request.method)  # the route admits only these verbs and HEAD
        if chosen is None:  # HEAD on a path without GET
            raise MethodNotAllowed()
        return await chosen(request)

    return endpoint


def view_context(request: Request) -> ViewContext:
    """How rooms are rendered for this caller: language, links, the pool's wait estimate."""
    return ViewContext(
        locale=locale_of(request),
        base_url=base_url_of(request),
        wait_estimate=getattr(request.app.state, "wait_estimate", None),
    )


def rest_endpoint(method: Method) -> Endpoint:
    scopes, body_type, call = method.scopes, method.body_type, method.call
    room_param = "roomId" if "roomId" in method.path_params else None
    paged, empty_status = method.paged, method.empty_status
    mutation = method.verb != "GET"

    async def endpoint(request: Request) -> Response:
        principal = authenticate(request, *scopes)
        body = await read_body(request, body_type) if body_type is not None else None
        room_id = request.path_params[room_param] if room_param is not None else ""
        size = token = None
        if paged:
            query = request.query_params
            size, token = query.get("maxResults"), query.get("pageToken")
        args = Args(principal, view_context(request), body, room_id, size, token)
        state = request.app.state
        # Admitted and held to the store deadline (call_guard.py; docs/spec.md §12 items 16-17).
        async with state.guard.call("rest", mutation=mutation):
            result = await call(state, args)
        if empty_status is not None:
            return Response(status_code=empty_status)
        return respond(request, result)

    endpoint.__name__ = endpoint.__qualname__ = method.rpc_name.replace(".", "_")
    return endpoint


def rest_routes(table: Iterable[Method]) -> list[Route]:
    """One `ApiRoute` per path of a feature's table, in the table's order."""
    by_path: dict[str, list[Method]] = {}
    for method in table:
        by_path.setdefault(method.path, []).append(method)
    return [ApiRoute(path, tuple(methods)) for path, methods in by_path.items()]
