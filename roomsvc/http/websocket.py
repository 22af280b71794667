"""roomsvc's WebSocket server protocol, plugged into uvicorn (`ws=` in cli.py; docs/realtime.md
"The WebSocket server").

uvicorn parses the HTTP request (httptools) and hands an upgrade to this protocol, which speaks
ASGI to the app as uvicorn's own WebSocket protocols do: `websocket.connect`, `receive` and
`disconnect` in, `accept`, `send`, `close` and the denial response
(`websocket.http.response`) out. The wire format is `frames.py`. What it saves against
uvicorn's websockets-sansio protocol, whose behaviour it keeps, is the per-connection and
per-frame machinery: the request is not parsed a second time, received messages go to the app
through a deque and one future instead of an asyncio.Queue, frames are written with one
`transport.write` and no intermediate objects, and reading pauses only when the app falls
behind, not after every message (docs/performance.md "A WebSocket server of our own").

Beyond ASGI, the realtime connection uses three methods (realtime/connection.py): `write_frame`
(a frame written now, when the socket can take it, with no coroutine), `abort` (cut a peer
that stopped reading) and the transport, for the kernel send buffer.

Keepalive: a ping every `ws_ping_interval` seconds; no pong within `ws_ping_timeout` closes
with 1011, except while this side has stopped reading (the pong may be waiting unread). A close
the app starts waits `CLOSE_TIMEOUT_S` for the peer's answer, then the connection is aborted; a
connection closed with frames still unsent gets `DRAIN_GRACE_S` to send them, then is aborted
too: a peer that stopped reading never holds a connection (or a graceful shutdown) open.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from http import HTTPStatus
from typing import Any
from urllib.parse import unquote

from uvicorn.protocols.utils import ClientDisconnected, get_local_addr, get_remote_addr, is_ssl

from roomsvc.http import frames
from roomsvc.http.frames import BINARY, CLOSE, PING, PONG, TEXT, Fail

log = logging.getLogger("roomsvc.http")
CLOSE_TIMEOUT_S = 10.0
DRAIN_GRACE_S = 2.0
# Messages the app has not taken yet before the socket stops being read: the app's own limit
# (realtime/endpoint.py, MAX_INFLIGHT requests) then holds back the peer through TCP.
READ_AHEAD = 8

_CONNECTING, _OPEN, _CLOSING, _CLOSED = range(4)


class WebSocketProtocol(asyncio.Protocol):
    """One upgraded connection (module doc); uvicorn makes it with its config and state."""

    def __init__(self, config: Any, server_state: Any, app_state: dict[str, Any],
                 _loop: asyncio.AbstractEventLoop | None = None) -> None:  # fmt: skip
        if not config.loaded:
            config.load()
        self.config = config
        self.app = config.loaded_app
        self.loop = _loop or asyncio.get_event_loop()
        self.app_state = app_state
        self.connections = server_state.connections
        self.tasks = server_state.tasks
        self.default_headers: list[tuple[bytes, bytes]] = server_state.default_headers
        self.transport: asyncio.Transport = None  # type: ignore[assignment]
        self.state = _CONNECTING
        self.denial: list[Any] | None = None  # [status, headers, body] of a refused handshake
        self.reader = frames.FrameReader(config.ws_max_size)
        self._inbox: deque[dict[str, Any]] = deque()
        self._waiter: asyncio.Future[None] | None = None
        self._read_paused = False
        self._writable: asyncio.Event | None = None  # made when writing first pauses
        self._key = b""
        self._timer: asyncio.TimerHandle | None = None  # close, ping or pong deadline
        self._ping: bytes | None = None  # the payload of the ping awaiting its pong
        self._pong_owed: bytes | None = None  # the latest ping's, while writing is paused
        self.scope: dict[str, Any] = {}

    # ---- asyncio ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.connections.add(self)
        self.transport = transport  # type: ignore[assignment]

    def connection_lost(self, exc: Exception | None) -> None:
        self.connections.discard(self)
        ended = self.state == _CLOSED  # a disconnect was delivered already
        self.state = _CLOSED
        self._cancel_timer()
        if not ended:  # no close frame: an abnormal closure (RFC 6455 §7.1.5)
            self._deliver({"type": "websocket.disconnect", "code": 1006})
        if self._writable is not None:
            self._writable.set()  # a send waiting on a lost transport would wait forever

    def pause_writing(self) -> None:
        if self._writable is None:
            self._writable = asyncio.Event()
        self._writable.clear()

    def resume_writing(self) -> None:
        if self._writable is not None:
            self._writable.set()
        if self._pong_owed is not None and self.state == _OPEN:
            self.transport.write(frames.encode(PONG, self._pong_owed))
        self._pong_owed = None

    def eof_received(self) -> bool | None:
        return None  # the transport closes itself

    def data_received(self, data: bytes) -> None:
        if self.state == _CONNECTING and not self.scope:
            self._handshake(data)
            return
        if self.state == _CLOSED or self.denial is not None:
            return
        try:
            messages = self.reader.feed(data)
        except Fail as fail:
            self._fail(fail.code, fail.reason)
            return
        for opcode, payload in messages:
            if opcode == TEXT:
                try:
                    text = payload.decode()
                except UnicodeDecodeError:
                    self._fail(frames.INVALID_DATA, "text message is not UTF-8")
                    return
                if self.state == _OPEN:
                    self._deliver({"type": "websocket.receive", "text": text})
            elif opcode == BINARY:
                if self.state == _OPEN:
                    self._deliver({"type": "websocket.receive", "bytes": payload})
            elif opcode == PING:
                if self.state != _OPEN:
                    pass
                elif self._writable is not None and not self._writable.is_set():
                    # a peer that pings and does not read: only the latest ping is answered,
                    # once it reads again (RFC 6455 §5.5.3), so the buffer cannot grow
                    self._pong_owed = payload
                else:
                    self.transport.write(frames.encode(PONG, payload))
            elif opcode == PONG:
                self._pong(payload)
            elif opcode == CLOSE:
                self._closed_by_peer(payload)
                return
        if len(self._inbox) >= READ_AHEAD and self.state == _OPEN and not self._read_paused:
            self._read_paused = True
            self.transport.pause_reading()

    # ---- the opening handshake -------------------------------------------------------------

    def _handshake(self, request: bytes) -> None:
        """uvicorn hands over the request it parsed, re-serialized: the request line and one
        `name: value` line per header, names lowercase."""
        head = request.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
        method, target, _ = head[0].split(b" ", 2)
        raw_headers = [tuple(line.split(b": ", 1)) for line in head[1:]]
        headers: dict[bytes, bytes] = {}
        for name, value in raw_headers:  # a repeated header is one list (RFC 9110 §5.3), so a
            # repeated Sec-WebSocket-Key is no valid key, and every subprotocol offered counts
            name = name.lower()
            headers[name] = headers[name] + b", " + value if name in headers else value
        problem = frames.handshake_problem(method, headers)
        if problem is not None:
            status, reason = problem
            extra = [(b"sec-websocket-version", b"13")] if status == 426 else []
            self.state = _CLOSED
            self._respond(status, extra, f"Failed to open a WebSocket connection: {reason}.\n")
            self._close_transport()
            return
        self._key = headers[b"sec-websocket-key"].strip()
        raw_path, _, query = target.partition(b"?")
        root = self.config.root_path
        subprotocols = [p.strip() for p in headers.get(b"sec-websocket-protocol", b"").decode(
            "latin-1").split(",") if p.strip()]  # fmt: skip
        self.scope = {
            "type": "websocket",
            "asgi": {"version": self.config.asgi_version, "spec_version": "2.4"},
            "http_version": "1.1",
            "scheme": "wss" if is_ssl(self.transport) else "ws",
            "server": get_local_addr(self.transport),
            "client": get_remote_addr(self.transport),
            "root_path": root,
            "path": root + unquote(raw_path.decode("ascii")),
            "raw_path": root.encode("ascii") + raw_path,
            "query_string": query,
            "headers": raw_headers,
            "subprotocols": subprotocols,
            "state": self.app_state.copy(),
            "extensions": {"websocket.http.response": {}},
        }
        self._inbox.append({"type": "websocket.connect"})
        task = self.loop.create_task(self._run_asgi())
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    def _respond(self, status: int, headers: list[tuple[bytes, bytes]], body: str | bytes) -> None:
        """A plain HTTP response in place of the upgrade (a refusal); the caller closes."""
        raw = body.encode() if isinstance(body, str) else body
        names = {name.lower() for name, _ in headers}
        lines = [f"HTTP/1.1 {status} {_phrase(status)}\r\n".encode()]
        lines += [n + b": " + v + b"\r\n" for n, v in self.default_headers if n not in names]
        lines += [n + b": " + v + b"\r\n" for n, v in headers]
        if b"content-type" not in names:
            lines.append(b"content-type: text/plain; charset=utf-8\r\n")
        if b"content-length" not in names:
            lines.append(b"content-length: %d\r\n" % len(raw))
        lines.append(b"connection: close\r\n\r\n")
        self.transport.write(b"".join(lines) + raw)

    # ---- ASGI ------------------------------------------------------------------------------

    async def _run_asgi(self) -> None:
        try:
            await self.app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            pass
        except BaseException:
            logging.getLogger("uvicorn.error").exception("Exception in ASGI application\n")
            self._refuse_500()
            if self.state == _OPEN:  # the app failed: not a normal closure
                self._end(1011, "internal error")
        else:
            if self.state == _CONNECTING and self.denial is None:
                logging.getLogger("uvicorn.error").error(
                    "ASGI callable returned without completing handshake.")  # fmt: skip
                self._refuse_500()
        if self.state == _OPEN:  # the app returned without closing: close normally for it
            self._end(1000, "")
        if self.state != _CLOSING:  # a close the app started waits for the peer's answer
            self._close_transport()

    def _refuse_500(self) -> None:
        if self.state == _CONNECTING and self.denial is None:
            self.state = _CLOSED
            self._respond(500, [], "Internal Server Error")

    async def receive(self) -> dict[str, Any]:
        if self._waiter is not None:
            raise RuntimeError("receive() is already being awaited on this WebSocket")
        while not self._inbox:
            self._waiter = self.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        message = self._inbox.popleft()
        if self._read_paused and len(self._inbox) < READ_AHEAD // 2 and self.state != _CLOSED:
            self._read_paused = False
            self.transport.resume_reading()
        return message

    def _deliver(self, message: dict[str, Any]) -> None:
        self._inbox.append(message)
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def send(self, message: dict[str, Any]) -> None:
        writable = self._writable
        if writable is not None and not writable.is_set():
            await writable.wait()
        kind = message["type"]
        if self.state == _CLOSED:
            raise ClientDisconnected()
        if self.denial is not None:
            self._send_denial(self.denial, message)
        elif self.state == _CONNECTING:
            self._send_handshake(message)
        elif self.state == _OPEN:
            if kind == "websocket.send":
                text = message.get("text")
                if message.get("bytes") is not None:
                    self.transport.write(frames.encode(BINARY, message["bytes"]))
                elif text is not None:
                    self.transport.write(frames.encode(TEXT, text.encode()))
            elif kind == "websocket.close":
                self.close(message.get("code") or 1000, message.get("reason") or "")
            else:
                raise RuntimeError(f"Expected 'websocket.send' or 'websocket.close', got {kind!r}.")
        else:
            raise RuntimeError(f"Unexpected ASGI message {kind!r} after 'websocket.close'.")

    def _send_handshake(self, message: dict[str, Any]) -> None:
        kind = message["type"]
        if kind == "websocket.accept":
            if self.transport.is_closing():
                return
            lines = [b"HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\n"
                     b"connection: Upgrade\r\nsec-websocket-accept: ", frames.accept_key(self._key),
                     b"\r\n"]  # fmt: skip
            lines += [n + b": " + v + b"\r\n" for n, v in self.default_headers]
            lines += [n + b": " + v + b"\r\n" for n, v in message.get("headers") or ()]
            if chosen := message.get("subprotocol"):
                lines.append(b"sec-websocket-protocol: " + chosen.encode() + b"\r\n")
            lines.append(b"\r\n")
            self.transport.write(b"".join(lines))
            self.state = _OPEN
            self._schedule_ping()
        elif kind == "websocket.close":  # refused before accepting: 403, as uvicorn does
            self.state = _CLOSED
            self._deliver({"type": "websocket.disconnect", "code": 1006})
            self._respond(403, [], "")
            self._close_transport()
        elif kind == "websocket.http.response.start":
            status = message["status"]
            if not 100 <= status < 600:
                raise RuntimeError(f"Invalid HTTP status code {status} in response.")
            self.denial = [status, list(message.get("headers") or ()), b""]
        else:
            raise RuntimeError(
                f"Expected 'websocket.accept', 'websocket.close' or "
                f"'websocket.http.response.start', got {kind!r}."
            )

    def _send_denial(self, denial: list[Any], message: dict[str, Any]) -> None:
        if message["type"] != "websocket.http.response.body":
            raise RuntimeError(f"Expected 'websocket.http.response.body', got {message['type']!r}.")
        denial[2] += message.get("body", b"")
        if not message.get("more_body", False):
            self.state = _CLOSED
            self._deliver({"type": "websocket.disconnect", "code": 1006})
            self._respond(denial[0], denial[1], denial[2])
            self._close_transport()

    # ---- beyond ASGI (realtime/connection.py) ----------------------------------------------

    def write_frame(self, frame: str | bytes) -> bool:
        """Write a text (str) or binary (bytes) frame now; False, with nothing written, when
        the socket is not open or its buffer is full (the ASGI send then waits for it)."""
        if self.state != _OPEN or (self._writable is not None and not self._writable.is_set()):
            return False
        if isinstance(frame, str):
            self.transport.write(frames.encode(TEXT, frame.encode()))
        else:
            self.transport.write(frames.encode(BINARY, frame))
        return True

    def abort(self) -> None:
        self.state = _CLOSED
        self.transport.abort()

    def close(self, code: int, reason: str = "") -> None:
        """Start the closing handshake: the peer has `CLOSE_TIMEOUT_S` to answer it."""
        if not frames.valid_close_code(code):
            raise RuntimeError(f"close code {code} may not be sent (RFC 6455 §7.4)")
        if self.state != _OPEN:
            return
        self.state = _CLOSING
        self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
        self.transport.write(frames.encode(CLOSE, frames.close_payload(code, reason)))
        self._cancel_timer()
        self._timer = self.loop.call_later(CLOSE_TIMEOUT_S, self.transport.abort)
        if self._read_paused:  # the peer's answer must be read
            self._read_paused = False
            self.transport.resume_reading()

    def shutdown(self) -> None:
        """uvicorn's graceful shutdown: 1012 for an open socket (realtime/drain.py drains first)."""
        self._refuse_500()  # still in the handshake: the app never answered it
        self._end(1012, "")
        self._close_transport()

    # ---- closing and keepalive -------------------------------------------------------------

    def _closed_by_peer(self, payload: bytes) -> None:
        try:
            code, reason = frames.parse_close(payload)
        except Fail as fail:
            self._fail(fail.code, fail.reason)
            return
        if self.state == _OPEN:  # answer with the same code (RFC 6455 §5.5.1)
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
            echo = b"" if code == 1005 else frames.close_payload(code)
            self.transport.write(frames.encode(CLOSE, echo))
        self.state = _CLOSED
        self._cancel_timer()
        self._close_transport()

    def _fail(self, code: int, reason: str) -> None:
        """The peer broke the protocol (or stopped answering pings): say why, and drop the
        link without waiting for an answer."""
        self._end(code, reason)
        self._close_transport()

    def _end(self, code: int, reason: str) -> None:
        """An open socket's last frame, a close with `code`; the app learns of it."""
        if self.state == _OPEN:
            self._deliver({"type": "websocket.disconnect", "code": code, "reason": reason})
            self.transport.write(frames.encode(CLOSE, frames.close_payload(code, reason)))
        self.state = _CLOSED
        self._cancel_timer()

    def _close_transport(self) -> None:
        """Close once what is buffered is sent; a peer that does not read it within
        `DRAIN_GRACE_S` is cut (asyncio would otherwise wait for it forever)."""
        transport = self.transport
        transport.close()
        if transport.get_write_buffer_size():
            self.loop.call_later(DRAIN_GRACE_S, transport.abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _schedule_ping(self) -> None:
        interval = self.config.ws_ping_interval
        if interval:
            self._timer = self.loop.call_later(interval, self._send_ping)

    def _send_ping(self) -> None:
        if self.state != _OPEN:
            return
        self._ping = os.urandom(4)
        self.transport.write(frames.encode(PING, self._ping))
        timeout = self.config.ws_ping_timeout
        if timeout:
            self._timer = self.loop.call_later(timeout, self._no_pong)
        else:
            self._schedule_ping()

    def _no_pong(self) -> None:
        self._timer = None
        if self._read_paused:  # the pong may be unread behind what the app has not taken
            self._timer = self.loop.call_later(self.config.ws_ping_timeout, self._no_pong)
            return
        self._fail(1011, "keepalive ping timeout")

    def _pong(self, payload: bytes) -> None:
        if self._ping is None or payload != self._ping:
            return  # unsolicited, or the answer to an older ping
        self._ping = None
        if self.state == _OPEN and self.config.ws_ping_timeout:
            self._cancel_timer()
            self._schedule_ping()


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
