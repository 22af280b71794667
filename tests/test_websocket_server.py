"""roomsvc's WebSocket protocol (roomsvc/http/websocket.py; docs/realtime.md "The WebSocket
server") under a real uvicorn in this process, serving small ASGI apps that do what the realtime
endpoint could do wrong or slowly (fail, return, close with a bad code, stop receiving), driven
by raw sockets that misbehave as peers do (stop reading, flood pings)."""

from __future__ import annotations

import asyncio
import json
import os
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import uvicorn

from roomsvc.cli import WS_PROTOCOL
from roomsvc.http import websocket
from roomsvc.http.frames import CLOSE, CONT, PING, PONG, TEXT
from tests.support import free_port
from tests.test_websocket_wire import client_frame

seen: dict[str, Any] = {}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """One behaviour per path."""
    if scope["type"] != "websocket":
        return
    path = scope["path"]
    await receive()  # websocket.connect
    if path == "/refuse":
        await send({"type": "websocket.close"})
        return
    if path == "/deny":
        await send({"type": "websocket.http.response.start", "status": 418, "headers": []})
        await send({"type": "websocket.http.response.body", "body": b"no tea"})
        return
    if path == "/unaccepted":
        return
    await send({"type": "websocket.accept"})
    if path == "/crash":
        raise ValueError("a bug")
    if path == "/bad-code":
        try:
            await send({"type": "websocket.close", "code": 1005})
        except RuntimeError as exc:
            seen["bad-code"] = exc
        return
    if path == "/twice":
        first = asyncio.ensure_future(receive())
        await asyncio.sleep(0)
        try:
            await receive()
        except RuntimeError as exc:
            seen["twice"] = exc
        first.cancel()
        return
    if path == "/echo":
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": message["text"]})
        return
    if path == "/busy":  # takes nothing more: its messages pile up unread
        import socket

        protocol = next(c for c in seen["server"].server_state.connections)
        sock = protocol.transport.get_extra_info("socket")
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)  # the kernel takes little
        await asyncio.sleep(60)
        return
    if path == "/fill-then-close":  # the peer is not reading: fill, then close
        protocol = seen["protocol"] = next(c for c in seen["server"].server_state.connections)
        while protocol.transport.get_write_buffer_size() == 0:
            await send({"type": "websocket.send", "bytes": os.urandom(4096)})
            await asyncio.sleep(0)
        await send({"type": "websocket.close", "code": 1000})
        await asyncio.sleep(60)
        return
    await asyncio.sleep(60)


@pytest.fixture
async def server(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[uvicorn.Server]:
    monkeypatch.setattr(websocket, "CLOSE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(websocket, "DRAIN_GRACE_S", 0.3)
    seen.clear()
    config = uvicorn.Config(app, host="127.0.0.1", port=free_port(), ws=WS_PROTOCOL,
                            ws_ping_interval=0.2, ws_ping_timeout=0.2, lifespan="off",
                            log_level="critical", timeout_graceful_shutdown=1)  # fmt: skip
    served = uvicorn.Server(config)
    seen["server"] = served
    task = asyncio.create_task(served.serve())
    while not served.started:  # noqa: ASYNC110 (uvicorn sets a flag, no event)
        await asyncio.sleep(0.01)
    yield served
    served.should_exit = True
    await asyncio.wait_for(task, 10)


async def upgrade(server: uvicorn.Server, path: str, *, receive_buffer: int | None = None
                  ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:  # fmt: skip
    """A hand-made upgrade: (reader, writer, the response head)."""
    port = server.config.port
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    if receive_buffer is not None:
        import socket

        writer.get_extra_info("socket").setsockopt(
            socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer
        )
    writer.write(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
        "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        "Sec-WebSocket-Version: 13\r\n\r\n".encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
    return reader, writer, head


async def next_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 5)
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", await reader.readexactly(8))
    return b0 & 0x0F, await reader.readexactly(n)


async def close_code(reader: asyncio.StreamReader) -> int:
    while True:
        opcode, payload = await next_frame(reader)
        if opcode == CLOSE:
            return struct.unpack("!H", payload[:2])[0]


@pytest.mark.parametrize(("path", "status"), [("/refuse", b"403"), ("/deny", b"418"),
                                              ("/unaccepted", b"500")])  # fmt: skip
async def test_a_socket_refused_before_accepting_gets_an_http_answer(
    server: uvicorn.Server, path: str, status: bytes
) -> None:
    reader, writer, head = await upgrade(server, path)
    assert head.startswith(b"HTTP/1.1 " + status), head
    if path == "/deny":
        assert await reader.read() == b"no tea"
    writer.close()


async def test_an_app_that_fails_after_accepting_closes_with_1011(server: uvicorn.Server) -> None:
    reader, writer, _ = await upgrade(server, "/crash")
    assert await close_code(reader) == 1011
    writer.close()


async def test_an_app_that_returns_closes_with_1000(server: uvicorn.Server) -> None:
    reader, writer, _ = await upgrade(server, "/bad-code")
    assert await close_code(reader) == 1000
    assert "1005" in str(seen["bad-code"])  # a code never sent on the wire is refused
    writer.close()


async def test_a_second_concurrent_receive_is_refused(server: uvicorn.Server) -> None:
    reader, writer, _ = await upgrade(server, "/twice")
    assert await close_code(reader) == 1000
    assert "already" in str(seen["twice"])
    writer.close()


async def test_a_text_split_inside_a_character_is_reassembled(server: uvicorn.Server) -> None:
    reader, writer, _ = await upgrade(server, "/echo")
    text = json.dumps({"name": "José"}, ensure_ascii=False).encode()
    cut = text.index("é".encode()) + 1  # between the two bytes of é
    writer.write(client_frame(TEXT, text[:cut], fin=False) + client_frame(CONT, text[cut:]))
    assert await next_frame(reader) == (TEXT, text)
    writer.close()


async def test_a_close_followed_by_more_bytes_is_still_answered(server: uvicorn.Server) -> None:
    reader, writer, _ = await upgrade(server, "/echo")
    writer.write(client_frame(CLOSE, struct.pack("!H", 1000)) + b"\x00\x00")
    assert await close_code(reader) == 1000
    writer.close()


async def test_a_peer_that_never_reads_the_close_is_cut(server: uvicorn.Server) -> None:
    """The app closes while frames it sent are unread: the peer does not answer within the
    close timeout, and the connection is aborted, not kept waiting on its buffer."""
    _, writer, _ = await upgrade(server, "/fill-then-close", receive_buffer=4096)
    for _ in range(100):
        if "protocol" in seen and not server.server_state.connections:
            break
        await asyncio.sleep(0.05)
    assert "protocol" in seen and not server.server_state.connections
    writer.close()


async def test_pings_from_a_peer_that_does_not_read_do_not_pile_up(
    server: uvicorn.Server,
) -> None:
    """Only the latest ping is answered while writing is paused (RFC 6455 §5.5.3)."""
    _, writer, _ = await upgrade(server, "/busy", receive_buffer=4096)
    protocol = next(iter(server.server_state.connections))
    for _ in range(400):
        writer.write(client_frame(PING, b"p" * 125) * 50)
        await writer.drain()
    await asyncio.sleep(0.2)
    # 20,000 pongs of 127 bytes would be 2.5 MB; paused, the buffer stays near the high mark
    assert protocol.transport.get_write_buffer_size() < 256 * 1024
    writer.close()


async def test_a_peer_answering_pings_lives_while_the_app_is_behind(
    server: uvicorn.Server,
) -> None:
    """The app takes no message, so reading pauses and the peer's pongs wait unread: the ping
    deadline waits for them instead of closing a live peer with 1011."""
    reader, writer, _ = await upgrade(server, "/busy")
    writer.write(b"".join(client_frame(TEXT, b"{}") for _ in range(20)))
    answered = 0
    try:
        async with asyncio.timeout(1.5):  # 0.2 s pings, 0.2 s timeout: seven pings' time
            while True:
                opcode, payload = await next_frame(reader)
                assert opcode != CLOSE, f"closed: {payload!r}"
                if opcode == PING:
                    writer.write(client_frame(PONG, payload))
                    answered += 1
    except TimeoutError:
        pass
    assert answered >= 1
    writer.close()
