"""The rooms methods (docs/spec.md §3, §4): one table (docs/api.md), each row one call of the
rooms service, from which the REST routes, the JSON-RPC dispatch and the API documents are built;
and the anonymous avatars' route."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roomsvc.auth.tokens import SCOPE_GAMES
from roomsvc.http.api_spec import LANGUAGE, Method, max_results, page_token
from roomsvc.http.routing import rest_routes
from roomsvc.rooms import wire
from roomsvc.rooms.service import LIST_MAX_RESULTS
from roomsvc.rooms.timers import timers_duty
from roomsvc.rooms.view import ANON_AVATARS

SCOPES = (SCOPE_GAMES,)
ROOM = "/games/v1/rooms/{roomId}"

methods = (
    Method("games.rooms.create", "POST", "/games/v1/rooms/create", "Create a room.", SCOPES,
           lambda s, a: s.rooms.create(a.principal, a.body, a.ctx),
           request=wire.RoomCreateRequest, response=wire.Room,
           rules=lambda settings: wire.create_rules(settings.max_players)),
    Method("games.rooms.list", "GET", "/games/v1/rooms", "Returns invitations to join rooms.",
           SCOPES,
           lambda s, a: s.rooms.list_invitations(a.principal, a.max_results, a.page_token, a.ctx),
           response=wire.RoomList,
           query=(LANGUAGE, max_results(1, LIST_MAX_RESULTS), page_token("rooms"))),
    Method("games.rooms.get", "GET", ROOM, "Get the data for a room.", SCOPES,
           lambda s, a: s.rooms.get(a.principal, a.room_id, a.ctx), response=wire.Room),
    Method("games.rooms.join", "POST", ROOM + "/join", "Join a room.", SCOPES,
           lambda s, a: s.rooms.join(a.principal, a.room_id, a.body, a.ctx),
           request=wire.RoomJoinRequest, response=wire.Room),
    Method("games.rooms.leave", "POST", ROOM + "/leave", "Leave a room.", SCOPES,
           lambda s, a: s.rooms.leave(a.principal, a.room_id, a.body, a.ctx),
           request=wire.RoomLeaveRequest, response=wire.Room),
    Method("games.rooms.decline", "POST", ROOM + "/decline",
           "Decline an invitation to join a room.", SCOPES,
           lambda s, a: s.rooms.decline(a.principal, a.room_id, a.ctx), response=wire.Room),
    # REST answers 204 with no body; JSON-RPC the call's result, null.
    Method("games.rooms.dismiss", "POST", ROOM + "/dismiss",
           "Dismiss an invitation to join a room.", SCOPES,
           lambda s, a: s.rooms.dismiss(a.principal, a.room_id), query=(), empty_status=204),
    Method("games.rooms.reportStatus", "POST", ROOM + "/reportstatus",
           "Report the status of peers in a room.", SCOPES,
           lambda s, a: s.rooms.report_status(a.principal, a.room_id, a.body, a.ctx),
           request=wire.RoomP2PStatuses, response=wire.RoomStatus),
)  # fmt: skip


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


routes: list[BaseRoute] = [
    *rest_routes(methods),
    Route("/games/v1/avatars/anonymous/{n:int}.svg", anonymous_avatar, methods=["GET"]),
]
duties: list[Any] = [timers_duty]
