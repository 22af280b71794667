"""JSON-RPC method name -> the service call REST makes, built once from the features' method
tables (docs/api.md; docs/spec.md §6: "results exactly as REST").

Each table row becomes an adapter that turns the one params shape ({roomId, body, language,
maxResults, pageToken}) into the row's `Args`, with REST's checks in REST's order: the scopes,
then the path's roomId, then the body, decoded like a REST body (unknown fields ignored, int64 as
strings, a wrong type is an InvalidArgument naming the field); `maxResults` has REST's range.
Transport stays thin (docs/style.md "Transport is thin").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from roomsvc.auth.tokens import Principal
from roomsvc.common.errors import N_, InvalidArgument
from roomsvc.events import routes as events
from roomsvc.http.api_spec import Args
from roomsvc.http.api_spec import Method as TableRow
from roomsvc.http.plumbing import decode_json
from roomsvc.realtime.protocol import Params
from roomsvc.rooms import routes as rooms
from roomsvc.rooms.view import ViewContext

T = TypeVar("T")


@dataclasses.dataclass(frozen=True, slots=True)
class Caller:
    """Who calls, in which language, and how rooms are rendered for them."""

    principal: Principal
    locale: str
    ctx: ViewContext


Method = Callable[[Any, Caller, Params], Awaitable[Any]]


def body_of(params: Params, typ: type[T]) -> T:
    raw = bytes(params.body)
    if not raw.strip() or raw.strip() == b"null":
        raw = b"{}"  # as REST: a missing body decodes as {}
    return decode_json(raw, typ)


def room_id_of(params: Params) -> str:
    if not params.room_id:
        raise InvalidArgument(N_("{field} is required."), field="roomId")
    return params.room_id


def _adapter(row: TableRow) -> Method:
    scopes, body_type, call = row.scopes, row.body_type, row.call
    has_room = "roomId" in row.path_params

    async def method(state: Any, c: Caller, params: Params) -> Any:
        c.principal.require_scope(*scopes)
        room_id = room_id_of(params) if has_room else ""
        body = body_of(params, body_type) if body_type is not None else None
        args = Args(c.principal, c.ctx, body, room_id, params.max_results, params.page_token)
        return await call(state, args)

    return method


_ROWS = (*rooms.methods, *events.methods)
METHODS: dict[str, Method] = {row.rpc_name: _adapter(row) for row in _ROWS}
# Calls that change nothing: a store failure in one is a plain 503, never "outcome unknown".
READS = frozenset(row.rpc_name for row in _ROWS if row.verb == "GET")
# Rooms calls that name no room: their rooms are known only from the result, so they hold back
# every room's pushes until the reply is out (docs/realtime.md "Order on one socket").
ANY_ROOM = frozenset(row.rpc_name for row in rooms.methods if "roomId" not in row.path_params)
