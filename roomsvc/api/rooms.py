"""REST routes of the rooms resource (SPEC §3): decode, call one service function, encode."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomsvc import wire
from roomsvc.api_spec import LANGUAGE, PAGE_TOKEN, api_method, max_results
from roomsvc.auth import SCOPE_GAMES
from roomsvc.room_view import ANON_AVATARS, ViewContext
from roomsvc.rooms_service import LIST_MAX_RESULTS, RoomsService
from roomsvc.store.room_timers import timers_duty
from roomsvc.web import authenticate, locale_of, read_body, respond

SCOPES = (SCOPE_GAMES,)


def _service(request: Request) -> RoomsService:
    return request.app.state.rooms


def view_context(request: Request) -> ViewContext:
    return ViewContext(
        locale=locale_of(request),
        base_url=str(request.base_url).rstrip("/"),
        wait_estimate=getattr(request.app.state, "wait_estimate", None),
    )


@api_method(
    id="games.rooms.create",
    description="Create a room.",
    scopes=SCOPES,
    request=wire.RoomCreateRequest,
    response=wire.Room,
)
async def create(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    body = await read_body(request, wire.RoomCreateRequest)
    return respond(request, await _service(request).create(principal, body, view_context(request)))


@api_method(
    id="games.rooms.get",
    description="Get the data for a room.",
    scopes=SCOPES,
    response=wire.Room,
)
async def get(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    room_id = request.path_params["roomId"]
    return respond(request, await _service(request).get(principal, room_id, view_context(request)))


@api_method(
    id="games.rooms.join",
    description="Join a room.",
    scopes=SCOPES,
    request=wire.RoomJoinRequest,
    response=wire.Room,
)
async def join(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    body = await read_body(request, wire.RoomJoinRequest)
    room = await _service(request).join(
        principal, request.path_params["roomId"], body, view_context(request)
    )
    return respond(request, room)


@api_method(
    id="games.rooms.leave",
    description="Leave a room.",
    scopes=SCOPES,
    request=wire.RoomLeaveRequest,
    response=wire.Room,
)
async def leave(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    body = await read_body(request, wire.RoomLeaveRequest)
    room = await _service(request).leave(
        principal, request.path_params["roomId"], body, view_context(request)
    )
    return respond(request, room)


@api_method(
    id="games.rooms.decline",
    description="Decline an invitation to join a room.",
    scopes=SCOPES,
    response=wire.Room,
)
async def decline(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    await read_body(request, wire.NoBody)
    room = await _service(request).decline(
        principal, request.path_params["roomId"], view_context(request)
    )
    return respond(request, room)


@api_method(
    id="games.rooms.dismiss",
    description="Dismiss an invitation to join a room.",
    scopes=SCOPES,
    query=(),
    empty_status=204,
)
async def dismiss(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    await read_body(request, wire.NoBody)
    await _service(request).dismiss(principal, request.path_params["roomId"])
    return Response(status_code=204)


@api_method(
    id="games.rooms.reportStatus",
    description="Report the status of peers in a room.",
    scopes=SCOPES,
    request=wire.RoomP2PStatuses,
    response=wire.RoomStatus,
)
async def report_status(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    body = await read_body(request, wire.RoomP2PStatuses)
    status = await _service(request).report_status(
        principal, request.path_params["roomId"], body, view_context(request)
    )
    return respond(request, status)


@api_method(
    id="games.rooms.list",
    description="Returns invitations to join rooms.",
    scopes=SCOPES,
    response=wire.RoomList,
    query=(LANGUAGE, max_results(1, LIST_MAX_RESULTS), PAGE_TOKEN),
)
async def list_rooms(request: Request) -> Response:
    principal = authenticate(request, SCOPE_GAMES)
    rooms = await _service(request).list_invitations(
        principal,
        request.query_params.get("maxResults"),
        request.query_params.get("pageToken"),
        view_context(request),
    )
    return respond(request, rooms)


routes = [
    Route("/games/v1/rooms/create", create, methods=["POST"], name="rooms.create"),
    Route("/games/v1/rooms", list_rooms, methods=["GET"], name="rooms.list"),
    Route("/games/v1/rooms/{roomId}", get, methods=["GET"], name="rooms.get"),
    Route("/games/v1/rooms/{roomId}/join", join, methods=["POST"], name="rooms.join"),
    Route("/games/v1/rooms/{roomId}/leave", leave, methods=["POST"], name="rooms.leave"),
    Route("/games/v1/rooms/{roomId}/decline", decline, methods=["POST"], name="rooms.decline"),
    Route("/games/v1/rooms/{roomId}/dismiss", dismiss, methods=["POST"], name="rooms.dismiss"),
    Route(
        "/games/v1/rooms/{roomId}/reportstatus",
        report_status,
        methods=["POST"],
        name="rooms.reportStatus",
    ),
]


async def anonymous_avatar(request: Request) -> Response:
    """The avatar of an anonymous auto-matched player (SPEC §4): a plain coloured disc."""
    number = request.path_params["n"] % ANON_AVATARS
    hue = number * 360 // ANON_AVATARS
    svg = (
        '<svg xmlns="http://www.w3.org/2000/svg" width="96" height="96" viewBox="0 0 96 96">'
        f'<circle cx="48" cy="48" r="46" fill="hsl({hue},60%,55%)"/>'
        '<circle cx="48" cy="38" r="16" fill="#fff"/>'
        '<path d="M18 84c6-18 20-26 30-26s24 8 30 26" fill="#fff"/></svg>'
    )
    return Response(svg, media_type="image/svg+xml", headers={"Cache-Control": "max-age=86400"})


routes.append(Route("/games/v1/avatars/anonymous/{n:int}.svg", anonymous_avatar, methods=["GET"]))
duties = [timers_duty]
