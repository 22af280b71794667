"""The in-room message calls of the realtime channel (docs/messages.md), and binary SEND frames.

    rooms.sendMessage     relay one message to chosen participants, or to every other one
    rooms.signal          relay one WebRTC signaling object to one participant
    rooms.resumeMessages  after a reconnect: the reliable messages missed since `afterSeq`
    rtc.iceServers        fresh STUN/TURN servers for RTCPeerConnection

They act on the connection itself (its token counter, rate, cursors and queue), so they are
served here rather than through the REST method table; their replies go through the
connection's message queue (inbox.py), which keeps them in order with the messages around them:
a resume's reply follows the replayed messages and precedes every newer live one.

A send is checked against the room document this process has (cached), and message_send.lua
proves that version current as it publishes; a room that changed in between is routed again
from the document the script returns. One connection's sends commit one at a time.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Awaitable, Callable
from typing import Any

from roomsvc.common.call_guard import CallGuard
from roomsvc.common.clock import now_s
from roomsvc.common.errors import N_, InvalidArgument, NotFound, RateLimited, RoomsvcError
from roomsvc.common.metrics import MESSAGES_DROPPED, MESSAGES_SENT
from roomsvc.http.plumbing import as_roomsvc_error
from roomsvc.messages import envelope, frames, ice, rules, wire
from roomsvc.messages.envelope import MESSAGE, SIGNAL, Envelope
from roomsvc.messages.store import ROOM_CHANGED, MessageStore
from roomsvc.realtime import protocol
from roomsvc.realtime.connection import CLOSE_POLICY, Connection
from roomsvc.realtime.feeds import Feeds, absorb
from roomsvc.realtime.methods import body_of, room_id_of
from roomsvc.rooms.rules import RoomDoc
from roomsvc.rooms.store import RoomStore
from roomsvc.settings import Settings

_ATTEMPTS = 16
_SENDS = frozenset({"rooms.sendMessage", "rooms.signal"})  # past the deadline: outcome unknown
# The children of the hot counters, resolved once: `labels()` takes a lock per call.
_MESSAGES_SENT = MESSAGES_SENT.labels("message")
_SIGNALS_SENT = MESSAGES_SENT.labels("signal")
_DROPPED_BY_RATE = MESSAGES_DROPPED.labels("rate")


class Messaging:
    def __init__(self, state: Any, settings: Settings) -> None:
        self.settings = settings
        # The store deadline (call_guard.py; docs/spec.md §12 item 16): the app's, or its own.
        self.guard = getattr(state, "guard", None) or CallGuard(settings)
        self.rooms: RoomStore = state.room_store
        self.store = MessageStore(state.room_store.commands, settings.message_backlog)
        self.feeds = Feeds(state.store, self.store, settings.redis_url or "")
        self.methods: dict[str, Callable[[Connection, protocol.Call], Awaitable[Any]]] = {
            "rooms.sendMessage": self.send_message,
            "rooms.signal": self.signal,
            "rooms.resumeMessages": self.resume,
            "rtc.iceServers": self.ice_servers,
        }

    # ---- the calls -----------------------------------------------------------------------------

    async def send_message(self, conn: Connection, call: protocol.Call) -> wire.MessageSent:
        room_id = room_id_of(call.params)
        body = body_of(call.params, wire.SendMessageRequest)
        data = _base64("messageData", body.message_data)
        rules.check_size("messageData", len(data), rules.data_limit(body.reliable))
        if body.recipient_participant_ids == []:
            raise InvalidArgument(N_("{field} must name at least one participant."),
                                  field="recipientParticipantIds")  # fmt: skip
        return await self._send(conn, room_id, MESSAGE, body.reliable, data,
                                body.recipient_participant_ids)  # fmt: skip

    async def send_frame(self, conn: Connection, frame: frames.SendFrame) -> wire.MessageSent:
        """A binary SEND frame: the same rules as rooms.sendMessage."""
        rules.check_size("payload", len(frame.payload), rules.data_limit(frame.reliable))
        return await self._send(conn, frame.room_id, MESSAGE, frame.reliable, frame.payload,
                                frame.recipients)  # fmt: skip

    async def signal(self, conn: Connection, call: protocol.Call) -> wire.SignalSent:
        room_id = room_id_of(call.params)
        body = body_of(call.params, wire.SignalRequest)
        data = bytes(body.data).strip()
        if not data.startswith(b"{"):
            raise InvalidArgument(N_("{field} must be a JSON object."), field="data")
        rules.check_size("data", len(data), rules.MAX_SIGNAL_BYTES)
        await self._send(conn, room_id, SIGNAL, False, data, [body.recipient_participant_id])
        return wire.SignalSent()

    async def resume(self, conn: Connection, call: protocol.Call) -> wire.MessagesResumed:
        """Replay the kept reliable messages for this player numbered above `afterSeq`, then
        let the live ones through (docs/messages.md "Resume")."""
        room_id = room_id_of(call.params)
        after = call.params.after_seq
        if after is None:
            after = body_of(call.params, wire.ResumeRequest).after_seq
        if after < 0:
            raise InvalidArgument(N_("{field} must be 0 or more."), field="afterSeq")
        await self._checked(conn, room_id, [])
        feeds = self.feeds
        cursor = feeds.follow(conn, room_id, seq=None, held=True)
        resumed_welcome = cursor.held or cursor.seq is None
        cursor.held = True  # live messages wait behind the replay
        try:
            start = after if resumed_welcome else max(after, cursor.seq or 0)
            backlog = await self.store.backlog(conn.principal.app_id, room_id, start)
            replayed = absorb(conn, cursor, room_id, backlog.entries, after=start)
            if cursor.seq is None or cursor.seq < start:
                cursor.seq = start
            self._reply(conn, call, wire.MessagesResumed(
                replayed=replayed, last_seq=cursor.seq, complete=backlog.complete))  # fmt: skip
        finally:
            cursor.held = False
            feeds.flush(conn.inbox, cursor)
        return _REPLIED

    async def ice_servers(self, conn: Connection, call: protocol.Call) -> wire.IceServers:
        return self.ice_for(conn.principal.player_id)

    def ice_for(self, player_id: str) -> wire.IceServers:
        s = self.settings
        return ice.ice_servers(s.stun_uris, s.turn_uris, s.turn_secret, s.turn_ttl_seconds,
                               player_id, now_s())  # fmt: skip

    # ---- serving -------------------------------------------------------------------------------

    async def serve(self, conn: Connection, call: protocol.Call, locale: str) -> None:
        """Run one message call and queue its reply (or error) behind the messages before it."""
        try:
            async with self.guard.deadline(mutation=call.method in _SENDS):
                value = await self.methods[call.method](conn, call)
            if value is _REPLIED:
                return
            reply = protocol.result(call.id, value)
        except RoomsvcError as error:
            reply = protocol.app_error(call.id, error, locale)
        except Exception as exc:
            reply = protocol.app_error(call.id, as_roomsvc_error(exc), locale)
        if not call.notification:
            conn.inbox.put(reply, reliable=True)

    async def serve_frame(self, conn: Connection, raw: bytes, locale: str) -> None:
        """A binary frame: SEND -> SENT (when it carries a tag) or REJECTED."""
        tag = 0
        try:
            frame = frames.decode_send(raw)
            tag = frame.tag
            async with self.guard.deadline(mutation=True):
                sent = await self.send_frame(conn, frame)
            if tag:
                conn.inbox.put(frames.encode_sent(tag, sent.token_id), reliable=True)
        except Exception as exc:
            error = exc if isinstance(exc, RoomsvcError) else as_roomsvc_error(exc)
            error_json = protocol.app_error_object(error, locale)
            conn.inbox.put(frames.encode_rejected(tag, error_json), reliable=True)

    def _reply(self, conn: Connection, call: protocol.Call, value: Any) -> None:
        if not call.notification:
            conn.inbox.put(protocol.result(call.id, value), reliable=True)

    # ---- sending -------------------------------------------------------------------------------

    async def _send(self, conn: Connection, room_id: str, kind: int, reliable: bool, data: bytes,
                    recipients: list[str] | None) -> wire.MessageSent:  # fmt: skip
        inbox = conn.inbox
        if not inbox.bucket.take(time.monotonic()):
            if inbox.bucket.abusive:
                conn.close_soon(CLOSE_POLICY, "message rate limit exceeded")
            if kind == MESSAGE and not reliable:
                _DROPPED_BY_RATE.inc()
                return wire.MessageSent(token_id=0, recipient_participant_ids=[])
            raise RateLimited(retry_after=1)
        principal = conn.principal
        async with inbox.send_lock:  # one connection's sends commit in arrival order
            doc, route = await self._checked(conn, room_id, recipients)
            token = inbox.next_token()  # after the checks: a refused send numbers nothing
            for _ in range(_ATTEMPTS):
                players = [doc.participant(pid).player_id for pid in route.recipients]  # type: ignore[union-attr]
                env = Envelope(kind, reliable, route.sender, players, data)
                published = await self.store.publish(
                    principal.app_id, room_id, version=doc.version, reliable=reliable,
                    envelope=envelope.encode(env), conn_id=conn.id, token=token,
                )  # fmt: skip
                if published.outcome != ROOM_CHANGED:
                    break
                changed = self.rooms.adopt(published.doc) if published.doc else None
                if changed is None:
                    raise NotFound(N_("Room {room_id} not found."), room_id=room_id)
                doc = changed
                route = rules.route(doc, room_id, principal.player_id, recipients)
            else:
                raise RateLimited(retry_after=1)  # the room changes faster than it can be sent to
        (_SIGNALS_SENT if kind == SIGNAL else _MESSAGES_SENT).inc()
        return wire.MessageSent(token_id=token, recipient_participant_ids=list(route.recipients))

    async def _checked(self, conn: Connection, room_id: str,
                       recipients: list[str] | None) -> tuple[RoomDoc, rules.Route]:  # fmt: skip
        """The room and the route of a send, from the cached document when it allows the send,
        else from a fresh read (the cache may predate a join made on another process)."""
        player = conn.principal.player_id
        doc = await self.rooms.load(conn.principal.app_id, room_id)
        try:
            return doc, rules.route(doc, room_id, player, recipients)  # type: ignore[return-value]
        except RoomsvcError:
            doc = await self.rooms.load(conn.principal.app_id, room_id, fresh=True)
            return doc, rules.route(doc, room_id, player, recipients)  # type: ignore[return-value]


_REPLIED: Any = object()  # a call that queued its reply itself


def _base64(field: str, text: str) -> bytes:
    """Standard or URL-safe alphabet, padding optional (what browsers and Android produce)."""
    cleaned = text.strip().replace("-", "+").replace("_", "/")
    try:
        return base64.b64decode(cleaned + "=" * (-len(cleaned) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise InvalidArgument(N_("{field} is not base64."), field=field) from None
