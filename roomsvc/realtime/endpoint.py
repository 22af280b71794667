"""`GET /games/v1/realtime` (docs/spec.md §6): the handshake, the welcome, and the receive loop.

The handshake refuses, before accepting, a foreign `Origin` (403; cross-site WebSocket hijacking,
docs/spec.md §12 item 9) and a missing, invalid or expired token (401), with Google's JSON error
body. Tokens may come in the query string (browsers cannot set headers), so they are stripped from
the ASGI scope before the server can log the path (docs/spec.md §2).

A socket lives no longer than the token that opened it: when its `exp` passes (with the
verifier's clock-skew leeway, as for REST) the socket closes with 1008 and a reason saying the
token expired. The protocol has no way to hand the server a new token, so a client reconnects
with a fresh one; the welcome snapshot is the whole recovery (docs/spec.md §6; README, decisions).

Each text frame is one JSON-RPC request served by the same service functions as REST
(methods.py), at most `MAX_INFLIGHT` at a time per connection; replies go out as each call
finishes. Limits: a frame over 64 KiB closes with 1009; requests beyond the rate get a
RateLimited error, and a client that keeps going is closed with 1008.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any
from urllib.parse import parse_qsl, urlencode

import msgspec
from starlette.responses import Response
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket

from roomsvc.auth.tokens import SCOPE_GAMES, SCOPE_GAMES_LITE, bearer_token
from roomsvc.common import i18n, logs
from roomsvc.common.errors import N_, PermissionDenied, RateLimited, RoomsvcError, StoreUnavailable
from roomsvc.http.plumbing import as_roomsvc_error, base_url_of, error_body
from roomsvc.realtime import protocol
from roomsvc.realtime.connection import (
    CLOSE_OVERLOADED,
    CLOSE_POLICY,
    CLOSE_RESTART,
    CLOSE_TOO_BIG,
    SEND_BUFFER_BYTES,
    Connection,
    ConnectionGone,
    PeerTransport,
)
from roomsvc.realtime.hub import Hub
from roomsvc.realtime.inbox import Inbox
from roomsvc.realtime.methods import ANY_ROOM, METHODS, READS, Caller
from roomsvc.rooms import wire
from roomsvc.rooms.rules import RoomState
from roomsvc.store.connection import UNAVAILABLE_ERRORS

log = logging.getLogger("roomsvc.realtime")
MAX_FRAME_BYTES = 64 * 1024
_TOKEN_PARAMS = ("access_token", "oauth_token")
TOKEN_EXPIRED = "access token expired; reconnect with a fresh token"


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """No Origin = a native client; a browser's Origin must be listed (docs/spec.md §6)."""
    if origin is None:
        return True
    if "*" in allowed:
        return True
    return origin.strip().rstrip("/").lower() in {a.lower() for a in allowed}


def take_query(scope: Scope) -> dict[str, str]:
    """The socket's query parameters (the last of a repeated name, as Starlette's), read once;
    access_token and oauth_token then leave the scope's query string, which is logged."""
    raw = scope.get("query_string", b"")
    if not raw:
        return {}
    pairs = parse_qsl(raw.decode("latin-1"), keep_blank_values=True)
    if b"token" in raw:
        kept = [(k, v) for k, v in pairs if k not in _TOKEN_PARAMS]
        scope["query_string"] = urlencode(kept).encode("latin-1")
    return dict(pairs)


def _http_base_url(websocket: WebSocket) -> str:
    """Our public HTTP base URL as this socket reached us (links such as anonymous avatars)."""
    base = base_url_of(websocket)
    if base.startswith("wss://"):
        return "https://" + base[6:]
    if base.startswith("ws://"):
        return "http://" + base[5:]
    return base


def _too_big(text: str) -> bool:
    return len(text) > MAX_FRAME_BYTES or (
        len(text) * 4 > MAX_FRAME_BYTES and len(text.encode()) > MAX_FRAME_BYTES
    )


async def _deny(websocket: WebSocket, error: RoomsvcError, locale: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        body = msgspec.json.encode(error_body(error, locale))
        headers = {**error.headers(), "Content-Type": "application/json; charset=UTF-8"}
        await websocket.send_denial_response(Response(body, error.http_status, headers=headers))
    else:
        await websocket.close(CLOSE_POLICY)


class RealtimeEndpoint:
    """A plain ASGI app (not a Starlette function endpoint) so it keeps the server's own
    `receive`, through which a stalled peer's transport can be cut (connection.py)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        websocket = WebSocket(scope, receive, send)
        app = scope["app"]
        settings = app.state.settings
        query = take_query(scope)
        locale = i18n.negotiate(query.get("language"), websocket.headers.get("accept-language"))
        origin = websocket.headers.get("origin")
        base_url = _http_base_url(websocket)
        allowed = settings.allowed_origins
        if settings.uses_dev_secret:  # the demo at /demo/ runs on our own origin (README)
            allowed = (*allowed, base_url)
        if not origin_allowed(origin, allowed):
            denied = PermissionDenied(N_("The origin {origin} may not open this socket."),
                                      origin=origin)  # fmt: skip
            await _deny(websocket, denied, locale)
            return
        try:
            token = bearer_token(websocket.headers.get("authorization"), query)
            principal, expires = app.state.verifier.verify_until(token)
            principal.require_scope(SCOPE_GAMES, SCOPE_GAMES_LITE)
        except RoomsvcError as error:
            await _deny(websocket, error, locale)
            return
        hub: Hub = app.state.realtime
        transport = PeerTransport(receive)
        transport.limit_send_buffer(SEND_BUFFER_BYTES)
        await websocket.accept()
        if hub.draining:
            await websocket.close(CLOSE_RESTART, "server restarting; reconnect")
            return
        if hub.full:
            await websocket.close(CLOSE_OVERLOADED, "too many connections; retry later")
            return
        guard = app.state.guard  # admission and the store deadline (call_guard.py)
        if not guard.try_enter("socket"):
            await websocket.close(CLOSE_OVERLOADED, "server busy; retry later")
            return
        conn = Connection(
            websocket,
            principal,
            locale=locale,
            base_url=base_url,
            rooms_scope=SCOPE_GAMES in principal.scopes,
            peer=transport,
            send_timeout=float(settings.ws_send_timeout_seconds),
            rate_per_second=float(settings.ws_rate_per_second),
        )
        binary = query.get("messageFormat") == "binary"  # docs/messages.md "Binary frames"
        conn.inbox = Inbox(conn, float(settings.messages_per_second), binary=binary)
        token_ctx = logs.bind(conn_id=conn.id, player_id=principal.player_id)
        expiry = asyncio.get_running_loop().call_later(
            max(0.0, expires - time.time()), conn.close_soon, CLOSE_POLICY, TOKEN_EXPIRED
        )
        try:
            try:
                async with hub.admission, guard.deadline(mutation=False):
                    await hub.register(conn)
                    welcome = await hub.welcome(conn)
            finally:
                guard.leave()
            await conn.send(welcome)
            conn.ready = True
            hub.pushes.kick(conn)
            conn.inbox.kick()
            await _receive_loop(hub, conn)
        except ConnectionGone:
            pass
        except (StoreUnavailable, *UNAVAILABLE_ERRORS):  # the client retries later
            await conn.close(CLOSE_OVERLOADED, "store unavailable; retry shortly")
        except Exception:
            log.exception("realtime connection failed")
            await conn.close(1011, "internal error")
        finally:
            expiry.cancel()
            hub.unregister(conn)
            logs.unbind(token_ctx)


async def _receive_loop(hub: Hub, conn: Connection) -> None:
    messaging = hub.messaging
    while True:
        message = await conn.websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:  # a binary frame: a SEND of game traffic (docs/messages.md)
            raw = message.get("bytes") or b""
            if len(raw) > MAX_FRAME_BYTES:
                await conn.close(CLOSE_TOO_BIG, "frame larger than 65536 bytes")
                return
            if not hub.draining:
                await conn.slots.acquire()
                _start(conn, messaging.serve_frame(conn, raw, conn.locale))
            continue
        if _too_big(text):
            await conn.close(CLOSE_TOO_BIG, "frame larger than 65536 bytes")
            return
        try:
            call = protocol.parse(text)
        except protocol.RpcError as error:
            call = None
            failure = error
        if call is not None and call.method in messaging.methods and not hub.draining:
            # Messages have their own rate (inbox.py); the request rate is for everything else.
            await conn.slots.acquire()
            _start(conn, _serve_message(hub, conn, call))
            continue
        allowed = conn.allow_request()
        if not allowed and conn.abusive:
            await conn.close(CLOSE_POLICY, "request rate limit exceeded")
            return
        if call is None:
            await conn.send(protocol.rpc_error(failure, conn.locale))
            continue
        if hub.draining:  # the socket closes with 1012 once the calls in flight finish
            if not call.notification:
                await conn.send(protocol.rpc_error(protocol.Restarting(call.id), conn.locale))
            continue
        if not allowed:
            if not call.notification:
                limited = RateLimited(retry_after=1)
                await conn.send(protocol.app_error(call.id, limited, conn.locale))
            continue
        await conn.slots.acquire()
        _start(conn, _serve(hub, conn, call))


def _start(conn: Connection, work: Any) -> None:
    """Serve one request as its own task, in one of the connection's slots (acquired by the
    caller: a connection with every slot busy is not read, so a flood cannot pile up tasks)."""
    task = asyncio.create_task(work)
    conn.inflight.add(task)
    task.add_done_callback(lambda done: _finished(conn, done))


async def _serve_message(hub: Hub, conn: Connection, call: protocol.Call) -> None:
    language = call.params.language
    locale = i18n.negotiate(language) if language else conn.locale
    token = logs.bind(rpc_method=call.method)
    try:
        await hub.messaging.serve(conn, call, locale)
    finally:
        logs.unbind(token)


def _finished(conn: Connection, task: asyncio.Task[None]) -> None:
    conn.inflight.discard(task)
    conn.slots.release()


# A successful reply to these shows the player out of the room (docs/spec.md §6: pushes then stop).
_LEAVING = frozenset({"rooms.leave", "rooms.decline"})


def _rooms_shown(method: str, value: Any) -> list[tuple[str, int, bool]]:
    """(roomId, version, player out) of each room a result shows (Room, RoomStatus or
    RoomList)."""
    items = value.items if isinstance(value, wire.RoomList) else (value,)
    shown = []
    for room in items:
        if isinstance(room, wire.Room):
            version = room.room_status_version
        elif isinstance(room, wire.RoomStatus):
            version = room.status_version
        else:
            continue
        if room.room_id and version is not None:
            out = method in _LEAVING or room.status == RoomState.DELETED
            shown.append((room.room_id, version, out))
    return shown


async def _serve(hub: Hub, conn: Connection, call: protocol.Call) -> None:
    if not call.method.startswith("rooms.") or call.method not in METHODS:
        await _answer(hub, conn, call)
        return
    # docs/spec.md §6: replies and pushes show a room's versions in order (shown.py).
    hold = None if call.method in ANY_ROOM else call.params.room_id
    async with hub.pushes.holding(conn, hold):
        await _answer(hub, conn, call)


async def _answer(hub: Hub, conn: Connection, call: protocol.Call) -> None:
    token = logs.bind(rpc_method=call.method[:64])
    language = call.params.language
    locale = i18n.negotiate(language) if language else conn.locale
    shown: list[tuple[str, int, bool]] = []
    try:
        method = METHODS.get(call.method)
        if method is None:
            raise protocol.MethodNotFound(N_("Unknown method {method}."), call.id,
                                          method=call.method[:64])  # fmt: skip
        caller = Caller(conn.principal, locale, hub.view_context(conn, locale))
        async with hub.state.guard.call("socket", mutation=call.method not in READS):
            value = await method(hub.state, caller, call.params)
        reply = protocol.result(call.id, value)
        shown = _rooms_shown(call.method, value)
        if shown:
            hub.observe_reply(conn, value)
    except protocol.RpcError as error:
        error.request_id = call.id
        reply = protocol.rpc_error(error, locale)
    except Exception as exc:
        reply = protocol.app_error(call.id, as_roomsvc_error(exc), locale)
    finally:
        logs.unbind(token)
    if not call.notification:
        with contextlib.suppress(ConnectionGone):
            await conn.reply(reply, shown)
