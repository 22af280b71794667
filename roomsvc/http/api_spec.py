"""The table of methods (docs/api.md): each feature declares its methods once, as `Method` rows,
and everything else is built from those rows at start-up, never per request: the REST routes
(routing.py), the JSON-RPC dispatch (roomsvc/realtime/methods.py), the discovery document and
the OpenAPI description (discovery.py).

A row names the method, its HTTP verb and path, its scopes, its request and response wire types,
its query parameters, and `call`, the one service call both transports make. `call` receives the
app state and an `Args`: the same values whichever transport carried them (docs/spec.md §6:
"results exactly as REST").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

from roomsvc.auth.tokens import Principal
from roomsvc.rooms.view import ViewContext
from roomsvc.rooms.wire import NoBody

B = TypeVar("B")
_PATH_PARAM = re.compile(r"{([A-Za-z]+)(?::[a-z]+)?}")


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str = "string"  # discovery type: string | integer | boolean
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    format: str | None = None  # int32, or the kind of page token a list hands out (docs/api.md)


LANGUAGE = Param("language", description="The preferred language to use for strings returned.")


def page_token(list_name: str) -> Param:
    """A list's `pageToken`: opaque, only ever a `nextPageToken` the same list returned (any
    other value is a 400, docs/spec.md §3), so its format names the list (docs/api.md)."""
    return Param(
        "pageToken",
        description="The nextPageToken of the previous response of this list; opaque.",
        format=f"{list_name}-page-token",
    )


def max_results(low: int, high: int) -> Param:
    return Param(
        "maxResults",
        "integer",
        "The maximum number of items to return in the response.",
        minimum=low,
        maximum=high,
        format="int32",
    )


@dataclasses.dataclass(slots=True)  # not frozen: one is made per call, and frozen costs ~1 us
class Args(Generic[B]):
    """What one call of a method carries, whichever transport it came by."""

    principal: Principal
    ctx: ViewContext  # the caller's language and how rooms are rendered for them
    body: B  # the decoded request (NoBody on a POST without one), None on a GET
    room_id: str = ""  # the `{roomId}` of the path, "" when the path has none
    max_results: int | str | None = None
    page_token: str | None = None

    @property
    def locale(self) -> str:
        return self.ctx.locale


Call = Callable[[Any, Args[Any]], Awaitable[Any]]


@dataclasses.dataclass(frozen=True, slots=True)
class Method:
    id: str  # e.g. "games.rooms.create"; the JSON-RPC name drops "games."
    verb: str  # GET | POST
    path: str  # e.g. "/games/v1/rooms/{roomId}/join"
    description: str
    scopes: tuple[str, ...]  # any one of them admits the caller (docs/spec.md §2)
    call: Call  # (app state, Args) -> the wire response
    request: type[Any] | None = None
    response: type[Any] | None = None
    query: tuple[Param, ...] = (LANGUAGE,)
    empty_status: int | None = None  # e.g. 204 for rooms.dismiss
    # JSON Schema of the rules a body must meet beyond its fields' own (e.g. rooms.create's
    # "an invitee or auto-matching criteria"), from the settings the server runs with.
    rules: Callable[[Any], dict[str, Any]] | None = None

    @property
    def rpc_name(self) -> str:
        return self.id.removeprefix("games.")

    @property
    def resource(self) -> str:
        return self.id.split(".")[1]

    @property
    def name(self) -> str:
        return self.id.split(".")[2]

    @property
    def body_type(self) -> type[Any] | None:
        """What the body decodes as: a POST without a request type still reads `NoBody`
        (Google's client sends none or `{}`, docs/spec.md §3); a GET reads none."""
        return self.request or (NoBody if self.verb == "POST" else None)

    @property
    def path_params(self) -> list[str]:
        return _PATH_PARAM.findall(self.path)

    @property
    def paged(self) -> bool:
        return any(p.name == "pageToken" for p in self.query)


def rules_of(cls: type) -> dict[str, Any]:
    """A wire Struct's own JSON Schema rules (its `schema_rules`, e.g. required fields)."""
    return dict(getattr(cls, "schema_rules", {}))
