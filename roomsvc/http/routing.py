"""One declaration per REST method (docs/spec.md §3; docs/style.md "Transport is thin").
`api_route` turns a
handler that calls one service function into a Starlette route whose endpoint authenticates,
decodes the body, calls the handler and encodes its result, and carries the `@api_method`
metadata the discovery document and the OpenAPI description are generated from.

Order of checks, as on every method: the token and its scopes (401/403), then the body
(413/415/400), then the service. A POST without a request type still reads its body as `NoBody`
(Google's client sends none or `{}`, docs/spec.md §3); a GET reads none.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomsvc.auth.tokens import Principal
from roomsvc.http.api_spec import ApiMethod, api_method
from roomsvc.http.plumbing import authenticate, locale_of, read_body, respond
from roomsvc.rooms.wire import NoBody

B = TypeVar("B")


@dataclasses.dataclass(frozen=True, slots=True)
class Call(Generic[B]):
    """One authenticated request with its decoded body (None on a GET)."""

    request: Request
    principal: Principal
    body: B

    @property
    def state(self) -> Any:
        return self.request.app.state

    @property
    def locale(self) -> str:
        return locale_of(self.request)

    def path(self, name: str) -> str:
        return str(self.request.path_params[name])

    def query(self, name: str) -> str | None:
        return self.request.query_params.get(name)


Handler = Callable[[Call[Any]], Awaitable[Any]]


def api_route(
    verb: str, path: str, method_id: str, description: str, **fields: Any
) -> Callable[[Handler], Route]:
    """Declare a REST method: `fields` are the other `ApiMethod` fields (scopes, request,
    response, query, empty_status). The route is named after the method id without "games."."""
    spec = ApiMethod(method_id, description, **fields)
    body_type: type[Any] | None = spec.request or (NoBody if verb == "POST" else None)
    mutation = verb != "GET"

    def build(handler: Handler) -> Route:
        @api_method(id=method_id, description=description, **fields)
        async def endpoint(request: Request) -> Response:
            principal = authenticate(request, *spec.scopes)
            body = await read_body(request, body_type) if body_type is not None else None
            # Admitted and held to the store deadline (call_guard.py; docs/spec.md §12 items 16-17).
            async with request.app.state.guard.call("rest", mutation=mutation):
                result = await handler(Call(request, principal, body))
            if spec.empty_status is not None:
                return Response(status_code=spec.empty_status)
            return respond(request, result)

        endpoint.__name__ = endpoint.__qualname__ = handler.__name__
        name = method_id.removeprefix("games.")
        return Route(path, endpoint, methods=[verb], name=name)

    return build
