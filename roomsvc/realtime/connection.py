"""One realtime socket (docs/spec.md §6): its push queue, the versions it has shown, its sends.

- The push queue holds at most one entry per room, the newest announced version (a slow
  reader's queue coalesces), so memory per connection is bounded by the rooms it follows; a
  queue that still outgrows `MAX_PENDING_ROOMS` closes the connection (1008).
- `sent` remembers the newest version of each room this connection has shown (welcome, push or
  reply), and nothing older or equal is pushed again: versions only ever increase. A version is
  recorded under the send lock, in the same critical section as the frame that shows it, so a
  push rendered before a reply cannot overtake that reply's record and go out after it.
- A rooms call holds back the pushes of the room it names (of every room, for rooms.create and
  rooms.list, whose rooms are known only from the result) until its reply is out: a push of a
  change committed after the call's own would otherwise precede a reply showing an older
  version. Rooms calls of one connection run one at a time, in arrival order, so their replies
  too show each room's versions in order (docs/spec.md §6 "On one connection the versions of a room
  only ever increase").
- A push is written at once, synchronously, by the hub's fan-out when nothing stands in its
  way (the socket writable, no send in progress, no call holding its room): no task, no deadline, no
  coroutine layers per push (docs/spec.md §11: push latency). Otherwise it is queued and sent by a
  sender task created only while there is something to send, so an idle connection costs one
  coroutine (docs/spec.md §11: idle sockets per process).
- Every send has a deadline: a peer that stops reading blocks the ASGI send once the socket
  buffers fill, and is then cut (transport aborted), without slowing any other connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect
from websockets.exceptions import InvalidState

from roomsvc.auth.tokens import Principal
from roomsvc.common import logs
from roomsvc.common.metrics import PUSH_LATENCY
from roomsvc.common.rate import TokenBucket
from roomsvc.store.connection import UNAVAILABLE_ERRORS

log = logging.getLogger("roomsvc.realtime")
MAX_PENDING_ROOMS = 1024
MAX_INFLIGHT = 8
SEND_BUFFER_BYTES = 128 * 1024  # the kernel doubles it for bookkeeping

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_OVERLOADED = 1013


class ConnectionGone(Exception):
    """The socket is closed or was cut; the caller stops using it."""


class PeerTransport:
    """The server's transport under an ASGI WebSocket, for three things ASGI cannot express.

    uvicorn's WebSocket protocols hand the app their bound `receive` method, whose owner holds
    the asyncio transport. Through it:
    - `abort()` cuts a peer that stopped reading: `websocket.close` itself waits for the
      socket to drain, which a stalled peer never lets happen;
    - `limit_send_buffer()` caps the kernel send buffer, which Linux otherwise grows to
      megabytes per socket: memory per connection stays bounded (docs/spec.md §6) and a stalled
      reader is detected after a few hundred kilobytes, not after several megabytes.
    - `write_text()` writes a frame synchronously when uvicorn's websockets-sansio protocol
      would have written it without waiting: what its `websocket.send` does, minus the ASGI
      and Starlette coroutine layers (the fan-out's fast path).
    Under another server these are no-ops (`write_text` declines: the ASGI send is used) and a
    stalled connection is only detached.
    """

    __slots__ = ("_protocol", "_transport")

    def __init__(self, receive: Any) -> None:
        owner = getattr(receive, "__self__", None)
        self._transport = getattr(owner, "transport", None)
        sansio = type(owner).__name__ == "WebSocketsSansIOProtocol"
        self._protocol = owner if sansio and hasattr(owner, "conn") else None

    def write_text(self, text: str) -> bool:
        """Write one text frame now; False (nothing written) when the ASGI send would wait
        (the peer is not reading: flow control paused the transport) or cannot send."""
        return self.write_frame(text)

    def write_frame(self, frame: str | bytes) -> bool:
        """`write_text`, for a text (str) or a binary (bytes) frame."""
        p = self._protocol
        if (
            p is None
            or not p.writable.is_set()
            or p.disconnected
            or p.close_sent
            or not p.handshake_complete
            or p.initial_response is not None
        ):
            return False
        try:
            if isinstance(frame, str):
                p.conn.send_text(frame.encode())
            else:
                p.conn.send_binary(frame)
        except InvalidState:
            return False
        p.transport.write(b"".join(p.conn.data_to_send()))
        return True

    def abort(self) -> bool:
        if self._transport is None or not hasattr(self._transport, "abort"):
            return False
        self._transport.abort()
        return True

    def limit_send_buffer(self, size: int) -> None:
        sock = self._transport.get_extra_info("socket") if self._transport is not None else None
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class Connection:
    # Slots: tens of thousands of these live in one process (docs/spec.md §11: RSS per socket).
    __slots__ = (
        "_bucket", "_closing", "_hold", "_peer", "_render", "_room_calls", "_send_lock",
        "_send_timeout", "_sender", "base_url", "closed", "id", "inbox",
        "inflight", "locale", "pending", "principal", "ready", "rooms_scope", "sent", "slots",
        "websocket",
    )  # fmt: skip

    def __init__(
        self,
        websocket: WebSocket,
        principal: Principal,
        *,
        locale: str,
        base_url: str,
        rooms_scope: bool,
        peer: PeerTransport,
        send_timeout: float,
        rate_per_second: float,
    ) -> None:
        self.id = uuid.uuid4().hex[:12]
        self.websocket = websocket
        self.principal = principal
        self.locale = locale
        self.base_url = base_url
        self.rooms_scope = rooms_scope
        self.ready = False  # set once the welcome is out: no push may precede it
        self.closed = False
        self.pending: dict[str, int] = {}
        # roomId -> newest version shown; negative when that view took the player out of the
        # room (a reply to leave or decline): nothing newer is pushed then.
        self.sent: dict[str, int] = {}
        self._hold: str | None = None  # the room whose pushes wait for a reply; "" = every room
        self._room_calls: asyncio.Lock | None = None  # made on the first rooms call
        self.inflight: set[asyncio.Task[None]] = set()  # requests being served
        self._closing: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(MAX_INFLIGHT)
        self._peer = peer
        self._send_timeout = send_timeout
        self._send_lock = asyncio.Lock()
        self._sender: asyncio.Task[None] | None = None
        self._render: Any = None  # hub.push_frame, set by the hub on register
        self.inbox: Any = None  # its in-room messages (realtime/inbox.py), set on register
        self._bucket = TokenBucket(rate_per_second, time.monotonic())

    # ---- pushes --------------------------------------------------------------------------------

    def shown_version(self, room_id: str) -> int:
        return abs(self.sent.get(room_id, 0))

    def offer(self, room_id: str, version: int) -> None:
        """Queue `version` of a room (sync, never blocks: the hub calls it for everyone)."""
        shown = self.sent.get(room_id, 0)
        if shown < 0 and version > -shown:
            # A reply showed the player out of this room, which has changed since: the player
            # is not told of it any more, and the entry is forgotten (bounded memory).
            del self.sent[room_id]
            return
        if self.closed or version <= abs(shown):
            return
        if version > self.pending.get(room_id, 0):
            self.pending[room_id] = version
        if len(self.pending) > MAX_PENDING_ROOMS:
            self.close_soon(CLOSE_POLICY, "push queue overflow: the client is not reading")
            return
        self.kick()

    def kick(self) -> None:
        if self.ready and self.pending and self._sender is None and not self.closed:
            self._sender = asyncio.create_task(self._drain())

    def shown(self, room_id: str, version: int, *, final: bool = False) -> None:
        """Record that `version` of a room was shown; call it under the send lock, with the
        send that shows it (or before any push can go out, as the welcome does)."""
        if version > self.shown_version(room_id):
            self.sent[room_id] = -version if final else version

    def holds(self, room_id: str) -> bool:
        """A rooms call on `room_id` (or on every room) is waiting to send its reply."""
        return self._held(room_id)

    def _held(self, room_id: str) -> bool:
        return self._hold is not None and (self._hold == "" or self._hold == room_id)

    def _next_pending(self) -> str | None:
        if self._hold == "":
            return None
        for room_id in self.pending:
            if room_id != self._hold:
                return room_id
        return None

    @contextlib.asynccontextmanager
    async def room_call(self, room_id: str) -> AsyncIterator[None]:
        """Serve a rooms call: after the calls before it, holding back pushes of `room_id`
        ("" = every room) until the caller has sent its reply (with `reply`)."""
        if self._room_calls is None:
            self._room_calls = asyncio.Lock()
        async with self._room_calls:
            self._hold = room_id
            try:
                yield
            finally:
                self._hold = None
                self.kick()

    def push_now(self, room_id: str, text: str, version: int, final: bool) -> bool:
        """Write a push synchronously if nothing stands in its way; False: queue it instead.

        Synchronous, so atomic with its check and record as `_push` is under the send lock:
        the lock is free (no frame half-sent), and no call holds the room."""
        if not self.ready or self.closed or self._send_lock.locked() or self._held(room_id):
            return False
        if version <= self.shown_version(room_id):
            return True  # shown already: nothing to send
        if not self._peer.write_text(text):
            return False
        if final:  # the player is out of the room for good: stop tracking it
            self.sent.pop(room_id, None)
        else:
            self.sent[room_id] = version
        return True

    async def _drain(self) -> None:
        token = logs.bind(conn_id=self.id)
        try:
            while not self.closed:
                room_id = self._next_pending()
                if room_id is None:
                    break
                version = self.pending.pop(room_id)
                if version <= self.shown_version(room_id):
                    continue
                try:
                    outcome = await self._render(self, room_id, version)
                except UNAVAILABLE_ERRORS:
                    self.pending.setdefault(room_id, version)  # retried; resync covers the rest
                    await asyncio.sleep(0.5)
                    continue
                if outcome is None:
                    continue
                text, shown, committed_ms, final = outcome
                if await self._push(room_id, text, shown, final):
                    PUSH_LATENCY.observe(max(0.0, time.time() - committed_ms / 1000))
        except ConnectionGone:
            pass
        except Exception:
            log.exception("push failed", extra={"conn_id": self.id})
        finally:
            self._sender = None
            logs.unbind(token)

    # ---- sending -------------------------------------------------------------------------------

    async def _push(self, room_id: str, text: str, version: int, final: bool) -> bool:
        """Send a rendered push unless a reply or push showed this version or a newer one, or
        a call on the room is in flight (then it waits in the queue for the reply)."""
        async with self._send_lock:
            if self._held(room_id):
                self.pending[room_id] = max(version, self.pending.get(room_id, 0))
                return False
            if version <= self.shown_version(room_id):
                return False
            if final:  # the player is out of the room for good: stop tracking it
                self.sent.pop(room_id, None)
            else:
                self.sent[room_id] = version
            await self._write(text)
            return True

    async def reply(self, text: str, shown: list[tuple[str, int, bool]]) -> None:
        """Send a reply showing rooms as (roomId, version, final), recording them as shown."""
        async with self._send_lock:
            for room_id, version, final in shown:
                self.shown(room_id, version, final=final)
            await self._write(text)

    async def send(self, frame: str | bytes) -> None:
        async with self._send_lock:
            await self._write(frame)

    def write_now(self, frame: str | bytes) -> bool:
        """Write a frame synchronously when nothing is being sent; False: send it later."""
        if not self.ready or self.closed or self._send_lock.locked():
            return False
        return self._peer.write_frame(frame)

    async def _write(self, frame: str | bytes) -> None:
        """Send one frame; the caller holds the send lock."""
        if self.closed:
            raise ConnectionGone()
        try:
            async with asyncio.timeout(self._send_timeout):
                if isinstance(frame, str):
                    await self.websocket.send_text(frame)
                else:
                    await self.websocket.send_bytes(frame)
        except TimeoutError:
            self.closed = True
            log.warning("realtime peer stopped reading; cut", extra={"conn_id": self.id})
            self._peer.abort()
            raise ConnectionGone() from None
        except (WebSocketDisconnect, OSError, RuntimeError):
            self.closed = True
            raise ConnectionGone() from None

    async def close(self, code: int, reason: str) -> None:
        if self.closed:
            return
        async with self._send_lock:
            if self.closed:
                return
            self.closed = True
            try:
                await asyncio.wait_for(self.websocket.close(code, reason), self._send_timeout)
            except TimeoutError:
                self._peer.abort()
            except (WebSocketDisconnect, OSError, RuntimeError):
                pass

    def close_soon(self, code: int, reason: str) -> None:
        if not self.closed:
            task = asyncio.create_task(self.close(code, reason))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    def stop(self) -> None:
        """The socket is gone: stop pushing (cleanup in the endpoint's `finally`)."""
        self.closed = True
        if self._sender is not None:
            self._sender.cancel()

    # ---- requests ------------------------------------------------------------------------------

    def allow_request(self) -> bool:
        """`rate` requests per second, bursts of twice that (docs/spec.md §6 limits); a client that
        keeps sending while refused becomes `abusive` and gets closed with 1008."""
        return self._bucket.take(time.monotonic())

    @property
    def abusive(self) -> bool:
        return self._bucket.abusive
