"""JSON-RPC method name -> the service function REST calls (docs/spec.md §6: "results exactly as
REST").

Each adapter turns the one params shape ({roomId, body, language, maxResults, pageToken}) into
the arguments of the service function, with REST's validation: the body decodes like a REST
body (unknown fields ignored, int64 as strings, a wrong type is an InvalidArgument naming the
field), `maxResults` has REST's range. Transport stays thin (docs/style.md "Transport is thin").
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from roomsvc.auth.tokens import SCOPE_GAMES, Principal
from roomsvc.common.errors import N_, InvalidArgument
from roomsvc.events import service as events_service
from roomsvc.events.wire import EventRecordRequest
from roomsvc.http.plumbing import decode_json
from roomsvc.realtime.protocol import Params
from roomsvc.rooms import wire
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


def _rooms(state: Any, caller: Caller) -> Any:
    caller.principal.require_scope(SCOPE_GAMES)
    return state.rooms


async def _create(state: Any, c: Caller, params: Params) -> Any:
    body = body_of(params, wire.RoomCreateRequest)
    return await _rooms(state, c).create(c.principal, body, c.ctx)


async def _get(state: Any, c: Caller, params: Params) -> Any:
    return await _rooms(state, c).get(c.principal, room_id_of(params), c.ctx)


async def _join(state: Any, c: Caller, params: Params) -> Any:
    room_id, body = room_id_of(params), body_of(params, wire.RoomJoinRequest)
    return await _rooms(state, c).join(c.principal, room_id, body, c.ctx)


async def _leave(state: Any, c: Caller, params: Params) -> Any:
    room_id, body = room_id_of(params), body_of(params, wire.RoomLeaveRequest)
    return await _rooms(state, c).leave(c.principal, room_id, body, c.ctx)


async def _decline(state: Any, c: Caller, params: Params) -> Any:
    room_id = room_id_of(params)
    body_of(params, wire.NoBody)
    return await _rooms(state, c).decline(c.principal, room_id, c.ctx)


async def _dismiss(state: Any, c: Caller, params: Params) -> None:
    room_id = room_id_of(params)
    body_of(params, wire.NoBody)
    await _rooms(state, c).dismiss(c.principal, room_id)  # REST: 204 -> JSON-RPC result null


async def _report_status(state: Any, c: Caller, params: Params) -> Any:
    room_id, body = room_id_of(params), body_of(params, wire.RoomP2PStatuses)
    return await _rooms(state, c).report_status(c.principal, room_id, body, c.ctx)


async def _list(state: Any, c: Caller, params: Params) -> Any:
    return await _rooms(state, c).list_invitations(
        c.principal, params.max_results, params.page_token, c.ctx
    )


async def _events_record(state: Any, c: Caller, params: Params) -> Any:
    body = body_of(params, EventRecordRequest)
    return await events_service.record(
        state.store, state.settings, state.config, c.principal, c.locale, body
    )


async def _events_list_by_player(state: Any, c: Caller, params: Params) -> Any:
    return await events_service.list_by_player(
        state.store, state.settings, state.config, c.principal, c.locale,
        params.max_results, params.page_token,
    )  # fmt: skip


async def _events_list_definitions(state: Any, c: Caller, params: Params) -> Any:
    return await events_service.list_definitions(
        state.store, state.settings, state.config, c.principal, c.locale,
        params.max_results, params.page_token,
    )  # fmt: skip


METHODS: dict[str, Method] = {
    "rooms.create": _create,
    "rooms.join": _join,
    "rooms.leave": _leave,
    "rooms.decline": _decline,
    "rooms.dismiss": _dismiss,
    "rooms.get": _get,
    "rooms.list": _list,
    "rooms.reportStatus": _report_status,
    "events.record": _events_record,
    "events.listByPlayer": _events_list_by_player,
    "events.listDefinitions": _events_list_definitions,
}
