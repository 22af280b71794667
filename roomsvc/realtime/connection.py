"""One realtime socket (docs/spec.md §6): its sends, its requests' rate, and what it has shown.

- What the socket has shown of each room and what it still has to show is its `Shown`
  (shown.py); the push path that fills and sends it is pushes.py.
- Rooms calls of one connection run one at a time, in arrival order (`room_calls`), so their
  replies show each room's versions in order (docs/spec.md §6 "On one connection the versions
  of a room only ever increase").
- A frame is written synchronously (`write_now`) when nothing is being sent: no task, no
  deadline, no coroutine layers (docs/spec.md §11: push latency). Otherwise it goes through
  the send lock with a deadline: a peer that stops reading blocks the ASGI send once the
  socket buffers fill, and is then cut (transport aborted), without slowing any other
  connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from typing import Any

from starlette.websockets import WebSocket, WebSocketDisconnect

from roomsvc.auth.tokens import Principal
from roomsvc.common.rate import TokenBucket
from roomsvc.http.websocket import WebSocketProtocol
from roomsvc.realtime.shown import Shown

log = logging.getLogger("roomsvc.realtime")
MAX_INFLIGHT = 8
SEND_BUFFER_BYTES = 128 * 1024  # the kernel doubles it for bookkeeping

CLOSE_POLICY = 1008
CLOSE_TOO_BIG = 1009
CLOSE_RESTART = 1012
CLOSE_OVERLOADED = 1013


class ConnectionGone(Exception):
    """The socket is closed or was cut; the caller stops using it."""


class PeerTransport:
    """The server's side of the socket under ASGI, for three things ASGI cannot express.

    roomsvc's WebSocket server protocol (http/websocket.py) hands the app its bound `receive`
    method; through its owner:
    - `write_frame()` writes a frame now when the socket can take it: no ASGI message, no
      coroutine (the fan-out's fast path, docs/realtime.md "The push path");
    - `abort()` cuts a peer that stopped reading: `websocket.close` itself waits for the
      socket to drain, which a stalled peer never lets happen;
    - `limit_send_buffer()` caps the kernel send buffer, which Linux otherwise grows to
      megabytes per socket: memory per connection stays bounded (docs/spec.md §6) and a stalled
      reader is detected after a few hundred kilobytes, not after several megabytes.
    Under another server these are no-ops (`write_frame` declines: the ASGI send is used) and a
    stalled connection is only detached.
    """

    __slots__ = ("_protocol",)

    def __init__(self, receive: Any) -> None:
        owner = getattr(receive, "__self__", None)
        self._protocol = owner if isinstance(owner, WebSocketProtocol) else None

    def write_frame(self, frame: str | bytes) -> bool:
        """Write one text (str) or binary (bytes) frame now; False (nothing written) when the
        ASGI send would wait (the peer is not reading) or cannot send."""
        return self._protocol is not None and self._protocol.write_frame(frame)

    def abort(self) -> bool:
        if self._protocol is None:
            return False
        self._protocol.abort()
        return True

    def limit_send_buffer(self, size: int) -> None:
        if self._protocol is None:
            return
        sock = self._protocol.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError, AttributeError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, size)


class Connection:
    # Slots: tens of thousands of these live in one process (docs/spec.md §11: RSS per socket).
    __slots__ = (
        "_bucket", "_closing", "_peer", "_room_calls", "_send_lock", "_send_timeout",
        "base_url", "closed", "id", "inbox", "inflight", "locale", "principal", "ready",
        "rooms_scope", "sender", "shown", "slots", "websocket",
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
        self.shown = Shown()
        self.sender: asyncio.Task[None] | None = None  # sends the push queue (pushes.py)
        self._room_calls: asyncio.Lock | None = None  # made on the first rooms call
        self.inflight: set[asyncio.Task[None]] = set()  # requests being served
        self._closing: set[asyncio.Task[None]] = set()
        self.slots = asyncio.Semaphore(MAX_INFLIGHT)
        self._peer = peer
        self._send_timeout = send_timeout
        self._send_lock = asyncio.Lock()
        self.inbox: Any = None  # its in-room messages (realtime/inbox.py), set by the endpoint
        self._bucket = TokenBucket(rate_per_second, time.monotonic())

    # ---- sending -------------------------------------------------------------------------------

    def room_calls(self) -> asyncio.Lock:
        """Held by each rooms call in turn (pushes.py `holding`)."""
        if self._room_calls is None:
            self._room_calls = asyncio.Lock()
        return self._room_calls

    def exclusive(self) -> asyncio.Lock:
        """The send lock: a frame, and the record of what it shows, under it (`write`)."""
        return self._send_lock

    def write_now(self, frame: str | bytes) -> bool:
        """Write a frame synchronously when nothing is being sent; False: send it later.
        Synchronous, so atomic with the caller's check and record, as under the send lock."""
        if not self.ready or self.closed or self._send_lock.locked():
            return False
        return self._peer.write_frame(frame)

    async def reply(self, text: str, shown: list[tuple[str, int, bool]]) -> None:
        """Send a reply showing rooms as (roomId, version, player out), recording them."""
        async with self._send_lock:
            for room_id, version, out in shown:
                self.shown.record(room_id, version, out=out)
            await self.write(text)

    async def send(self, frame: str | bytes) -> None:
        async with self._send_lock:
            await self.write(frame)

    async def write(self, frame: str | bytes) -> None:
        """Send one frame; the caller holds the send lock (`exclusive`)."""
        if self.closed:
            raise ConnectionGone()
        if self._peer.write_frame(frame):
            # The socket took it at once, as a push's frame is written (pushes.py): no timer
            # and no ASGI send for the welcome and the replies either.
            return
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
        if self.sender is not None:
            self.sender.cancel()

    # ---- requests ------------------------------------------------------------------------------

    def allow_request(self) -> bool:
        """`rate` requests per second, bursts of twice that (docs/spec.md §6 limits); a client that
        keeps sending while refused becomes `abusive` and gets closed with 1008."""
        return self._bucket.take(time.monotonic())

    @property
    def abusive(self) -> bool:
        return self._bucket.abusive
