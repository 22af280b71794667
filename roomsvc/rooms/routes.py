"""REST routes of the rooms resource (docs/spec.md §3): each method declared once with `api_route`,
its handler one call of the rooms service."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomsvc.auth.tokens import SCOPE_GAMES
from roomsvc.http.api_spec import LANGUAGE, PAGE_TOKEN, max_results
from roomsvc.http.plumbing import base_url_of
from roomsvc.http.routing import Call, api_route
from roomsvc.rooms import wire
from roomsvc.rooms.service import LIST_MAX_RESULTS, RoomsService
from roomsvc.rooms.timers import timers_duty
from roomsvc.rooms.view import ANON_AVATARS, ViewContext

SCOPES = (SCOPE_GAMES,)


def _rooms(call: Call[Any]) -> RoomsService:
    return call.state.rooms


def _ctx(call: Call[Any]) -> ViewContext:
    """How rooms are rendered for this caller: language, links, the pool's wait estimate."""
    return ViewContext(
        locale=call.locale,
        base_url=base_url_of(call.request),
        wait_estimate=getattr(call.state, "wait_estimate", None),
    )


@api_route("POST", "/games/v1/rooms/create", "games.rooms.create", "Create a room.",
           scopes=SCOPES, request=wire.RoomCreateRequest, response=wire.Room)  # fmt: skip
async def create(call: Call[wire.RoomCreateRequest]) -> wire.Room:
    return await _rooms(call).create(call.principal, call.body, _ctx(call))


@api_route("GET", "/games/v1/rooms", "games.rooms.list", "Returns invitations to join rooms.",
           scopes=SCOPES, response=wire.RoomList,
           query=(LANGUAGE, max_results(1, LIST_MAX_RESULTS), PAGE_TOKEN))  # fmt: skip
async def list_rooms(call: Call[None]) -> wire.RoomList:
    page = call.query("maxResults"), call.query("pageToken")
    return await _rooms(call).list_invitations(call.principal, *page, _ctx(call))


@api_route("GET", "/games/v1/rooms/{roomId}", "games.rooms.get", "Get the data for a room.",
           scopes=SCOPES, response=wire.Room)  # fmt: skip
async def get(call: Call[None]) -> wire.Room:
    return await _rooms(call).get(call.principal, call.path("roomId"), _ctx(call))


@api_route("POST", "/games/v1/rooms/{roomId}/join", "games.rooms.join", "Join a room.",
           scopes=SCOPES, request=wire.RoomJoinRequest, response=wire.Room)  # fmt: skip
async def join(call: Call[wire.RoomJoinRequest]) -> wire.Room:
    return await _rooms(call).join(call.principal, call.path("roomId"), call.body, _ctx(call))


@api_route("POST", "/games/v1/rooms/{roomId}/leave", "games.rooms.leave", "Leave a room.",
           scopes=SCOPES, request=wire.RoomLeaveRequest, response=wire.Room)  # fmt: skip
async def leave(call: Call[wire.RoomLeaveRequest]) -> wire.Room:
    return await _rooms(call).leave(call.principal, call.path("roomId"), call.body, _ctx(call))


@api_route("POST", "/games/v1/rooms/{roomId}/decline", "games.rooms.decline",
           "Decline an invitation to join a room.", scopes=SCOPES, response=wire.Room)  # fmt: skip
async def decline(call: Call[wire.NoBody]) -> wire.Room:
    return await _rooms(call).decline(call.principal, call.path("roomId"), _ctx(call))


@api_route("POST", "/games/v1/rooms/{roomId}/dismiss", "games.rooms.dismiss",
           "Dismiss an invitation to join a room.", scopes=SCOPES, query=(),
           empty_status=204)  # fmt: skip
async def dismiss(call: Call[wire.NoBody]) -> None:
    await _rooms(call).dismiss(call.principal, call.path("roomId"))


@api_route("POST", "/games/v1/rooms/{roomId}/reportstatus", "games.rooms.reportStatus",
           "Report the status of peers in a room.", scopes=SCOPES,
           request=wire.RoomP2PStatuses, response=wire.RoomStatus)  # fmt: skip
async def report_status(call: Call[wire.RoomP2PStatuses]) -> wire.RoomStatus:
    room_id = call.path("roomId")
    return await _rooms(call).report_status(call.principal, room_id, call.body, _ctx(call))


async def anonymous_avatar(request: Request) -> Response:
    """The avatar of an anonymous auto-matched player (docs/spec.md §4): a plain coloured disc."""
    number = request.path_params["n"] % ANON_AVATARS
    hue = number * 360 // ANON_AVATARS
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<circle cx="48" cy="48" r="46" fill="hsl({hue},60%,55%)"/>'
        '<circle cx="48" cy="38" r="16" fill="#fff"/>'
        '<path d="M18 84c6-18 20-26 30-26s24 8 30 26" fill="#fff"/></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


routes = [
    create,
    list_rooms,
    get,
    join,
    leave,
    decline,
    dismiss,
    report_status,
    Route("/games/v1/avatars/anonymous/{n:int}.svg", anonymous_avatar, methods=["GET"]),
]
duties = [timers_duty]
