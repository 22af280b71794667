"""roomsvc's WebSocket server (roomsvc/http/websocket.py, frames.py; docs/realtime.md "The
WebSocket server"): the handshake, the frames and the closing rules of RFC 6455, checked on the
wire of a real `roomsvc serve` with hand-made frames, and the frame reader alone against every
way a peer may split its messages."""

from __future__ import annotations

import json
import os
import socket
import struct
from collections.abc import Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.http import frames
from roomsvc.http.frames import BINARY, CLOSE, CONT, PING, PONG, TEXT, Fail, FrameReader
from tests.support import UNIT, ServerProcess, ValkeyProcess, new_app_id, raw_websocket, token


def client_frame(opcode: int, payload: bytes, *, fin: bool = True, masked: bool = True,
                 rsv: int = 0, claimed: int | None = None) -> bytes:  # fmt: skip
    """A frame as a client sends it; `claimed` overrides the length the header states."""
    n = len(payload) if claimed is None else claimed
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    bit = 0x80 if masked else 0
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    if not masked:
        return head + payload
    mask = os.urandom(4)
    return head + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def read_frame(sock: socket.socket) -> tuple[int, bool, bytes]:
    """One server frame: (opcode, fin, payload); servers never mask."""

    def exactly(n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise EOFError(f"closed after {data!r}")
            data += chunk
        return data

    b0, b1 = exactly(2)
    assert not b1 & 0x80, "a server frame was masked"
    n = b1 & 0x7F
    if n == 126:
        (n,) = struct.unpack("!H", exactly(2))
    elif n == 127:
        (n,) = struct.unpack("!Q", exactly(8))
    return b0 & 0x0F, bool(b0 & 0x80), exactly(n)


def close_code(sock: socket.socket) -> int:
    """Read up to the server's close frame; its code, once the server has closed TCP too."""
    while True:
        opcode, _, payload = read_frame(sock)
        if opcode == CLOSE:
            break
    assert sock.recv(1) == b"", "the server kept the TCP connection open after its close"
    return struct.unpack("!H", payload[:2])[0]


def call(method: str, n: int = 1) -> bytes:
    return json.dumps({"jsonrpc": "2.0", "id": n, "method": method}).encode()


@pytest.fixture(scope="module")
def ws_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    process = ServerProcess(valkey.url).start()
    yield process
    process.stop()


@pytest.fixture
def sock(ws_server: ServerProcess) -> Iterator[socket.socket]:
    s = raw_websocket(ws_server, "wire", new_app_id())
    opcode, _, welcome = read_frame(s)
    assert opcode == TEXT and json.loads(welcome)["method"] == "welcome"
    yield s
    s.close()


def handshake(server: ServerProcess, lines: list[str], method: str = "GET") -> bytes:
    """The server's whole answer to a hand-written upgrade request."""
    s = socket.create_connection(("127.0.0.1", server.port), timeout=100 * UNIT)
    path = f"/games/v1/realtime?access_token={token('hand', new_app_id())}"
    head = [f"{method} {path} HTTP/1.1", f"Host: 127.0.0.1:{server.port}", *lines]
    s.sendall(("\r\n".join(head) + "\r\n\r\n").encode())
    answer = b""
    while chunk := s.recv(65536):
        answer += chunk
        if answer.startswith(b"HTTP/1.1 101") and b"\r\n\r\n" in answer:
            break
    s.close()
    return answer


UPGRADE = ["Upgrade: websocket", "Connection: keep-alive, Upgrade"]


def test_the_handshake_answers_the_rfc_example_key(ws_server: ServerProcess) -> None:
    """RFC 6455 §1.3's own example: key dGhlIHNhbXBsZSBub25jZQ== is accepted as
    s3pPLMBiTxaQ9kYGzzhZRbK+xOo=."""
    answer = handshake(ws_server, [*UPGRADE, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
                                   "Sec-WebSocket-Version: 13"])  # fmt: skip
    head = answer.split(b"\r\n\r\n")[0].lower()
    assert head.startswith(b"http/1.1 101")
    assert b"sec-websocket-accept: s3pplmbitxaq9kygzzhzrbk+xoo=" in head
    assert b"upgrade: websocket" in head and b"connection: upgrade" in head
    assert b"sec-websocket-extensions" not in head  # nothing negotiated: no deflate


@pytest.mark.parametrize(
    ("lines", "method", "status"),
    [
        ([*UPGRADE, "Sec-WebSocket-Version: 13"], "GET", b"400"),  # no key
        ([*UPGRADE, "Sec-WebSocket-Key: c2hvcnQ=", "Sec-WebSocket-Version: 13"], "GET", b"400"),
        (
            [*UPGRADE, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 8"],
            "GET",
            b"426",
        ),
        (
            [*UPGRADE, "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==", "Sec-WebSocket-Version: 13"],
            "POST",
            b"400",
        ),
    ],
    ids=["no-key", "short-key", "old-version", "post"],
)
def test_an_invalid_handshake_is_refused_with_http(
    ws_server: ServerProcess, lines: list[str], method: str, status: bytes
) -> None:
    answer = handshake(ws_server, lines, method)
    assert answer.startswith(b"HTTP/1.1 " + status), answer[:80]
    if status == b"426":
        assert b"sec-websocket-version: 13" in answer.lower()


def test_a_fragmented_call_with_a_ping_between_is_answered(sock: socket.socket) -> None:
    """Fragments are reassembled, and a ping between them is answered with its own payload."""
    body = call("rooms.list", 7)
    sock.sendall(client_frame(TEXT, body[:5], fin=False))
    sock.sendall(client_frame(PING, b"mid!"))
    sock.sendall(client_frame(CONT, body[5:12], fin=False) + client_frame(CONT, body[12:]))
    opcode, _, payload = read_frame(sock)
    assert (opcode, payload) == (PONG, b"mid!")
    opcode, fin, reply = read_frame(sock)
    assert opcode == TEXT and fin and json.loads(reply)["id"] == 7


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        (client_frame(TEXT, call("rooms.list"), masked=False), 1002),
        (client_frame(TEXT, call("rooms.list"), rsv=4), 1002),
        (client_frame(0x3, b"x"), 1002),  # a reserved opcode
        (client_frame(PING, b"p" * 126), 1002),  # a control frame over 125 bytes
        (client_frame(PING, b"p", fin=False), 1002),
        (client_frame(CONT, b"orphan"), 1002),
        (client_frame(TEXT, b"a", fin=False) + client_frame(TEXT, b"b"), 1002),
        (client_frame(TEXT, b'{"id": "\xff"}'), 1007),
        (client_frame(CLOSE, struct.pack("!H", 1005)), 1002),  # never sent on the wire
        (client_frame(CLOSE, b"\x03"), 1002),
        (client_frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007),
    ],
    ids=[
        "unmasked",
        "rsv",
        "opcode",
        "long-ping",
        "fragmented-ping",
        "orphan-cont",
        "interleaved",
        "utf8",
        "close-1005",
        "close-short",
        "close-utf8",
    ],
)
def test_a_broken_frame_closes_with_the_rule_s_code(
    sock: socket.socket, frame: bytes, code: int
) -> None:
    sock.sendall(frame)
    assert close_code(sock) == code


def test_a_message_over_the_limit_is_refused_before_its_body(sock: socket.socket) -> None:
    """The header of a 70,000-byte frame is enough: 1009, with none of the body sent."""
    sock.sendall(client_frame(TEXT, b"", claimed=70_000)[:14])
    assert close_code(sock) == 1009


def test_fragments_adding_up_over_the_limit_are_refused(sock: socket.socket) -> None:
    sock.sendall(client_frame(TEXT, b"x" * 40_000, fin=False))
    sock.sendall(client_frame(CONT, b"x" * 40_000))
    assert close_code(sock) == 1009


def test_the_peer_s_close_is_answered_with_its_code(sock: socket.socket) -> None:
    sock.sendall(client_frame(CLOSE, struct.pack("!H", 4000) + b"bye"))
    assert close_code(sock) == 4000


def test_a_close_without_a_code_is_answered_without_one(sock: socket.socket) -> None:
    sock.sendall(client_frame(CLOSE, b""))
    opcode, _, payload = read_frame(sock)
    assert (opcode, payload) == (CLOSE, b"")
    assert sock.recv(1) == b""


def test_a_binary_frame_reaches_the_app(sock: socket.socket) -> None:
    """A binary frame is a game message (docs/messages.md); from a player in no room, the
    answer is an error frame, not a closed socket."""
    sock.sendall(client_frame(BINARY, b"\x00junk"))
    sock.sendall(client_frame(TEXT, call("rooms.list", 9)))
    replies = []
    while not any(b'"id":9' in r for r in replies):
        opcode, _, payload = read_frame(sock)
        assert opcode != CLOSE, payload
        replies.append(payload)
    assert len(replies) >= 1


# ---- the frame reader alone ------------------------------------------------------------------

messages = st.lists(
    st.tuples(st.sampled_from([TEXT, BINARY]), st.binary(max_size=300), st.integers(1, 4)),
    min_size=1, max_size=8,
)  # fmt: skip


@settings(max_examples=200, deadline=None)
@given(messages, st.integers(1, 64), st.binary(min_size=0, max_size=8))
def test_the_reader_reassembles_however_the_bytes_arrive(
    sent: list[tuple[int, bytes, int]], chunk: int, ping: bytes
) -> None:
    """Each message cut in `parts` fragments, a ping after each first fragment, the whole
    stream fed `chunk` bytes at a time: the same messages come out, in order, pings between."""
    wire = b""
    expected: list[tuple[int, bytes]] = []
    for opcode, payload, parts in sent:
        cuts = [len(payload) * i // parts for i in range(parts + 1)]
        for i in range(parts):
            piece = payload[cuts[i] : cuts[i + 1]]
            wire += client_frame(opcode if i == 0 else CONT, piece, fin=i == parts - 1)
            if i == 0 and parts > 1:
                wire += client_frame(PING, ping)
                expected.append((PING, ping))
        expected.append((opcode, payload))
    reader = FrameReader(65_536)
    got: list[tuple[int, bytes]] = []
    for at in range(0, len(wire), chunk):
        got += reader.feed(wire[at : at + chunk])
    assert got == expected


def test_the_reader_refuses_an_oversized_header_at_once() -> None:
    with pytest.raises(Fail) as failed:
        FrameReader(1000).feed(client_frame(BINARY, b"", claimed=1001)[:4])
    assert failed.value.code == 1009


def test_a_close_reason_is_cut_to_a_control_frame_without_splitting_a_character() -> None:
    payload = frames.close_payload(1008, "é" * 100)
    assert len(payload) <= 125
    assert frames.parse_close(payload) == (1008, "é" * 61)


def test_the_reader_counts_a_message_s_fragments_against_the_limit() -> None:
    reader = FrameReader(1000)
    assert reader.feed(client_frame(TEXT, b"x" * 600, fin=False)) == []
    with pytest.raises(Fail) as failed:
        reader.feed(client_frame(CONT, b"x" * 600))
    assert failed.value.code == 1009


def test_the_reader_refuses_a_length_with_its_top_bit_set() -> None:
    head = bytes([0x80 | BINARY, 0x80 | 127]) + (1 << 63).to_bytes(8, "big")
    with pytest.raises(Fail) as failed:
        FrameReader(1000).feed(head)
    assert failed.value.code == 1002


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 1016, 2999, 5000])
def test_a_close_code_never_sent_on_the_wire_is_a_protocol_error(code: int) -> None:
    with pytest.raises(Fail) as failed:
        frames.parse_close(struct.pack("!H", code))
    assert failed.value.code == 1002
    assert not frames.valid_close_code(code)


@pytest.mark.parametrize("code", [1000, 1001, 1008, 1011, 1012, 1013, 1014, 3000, 4999])
def test_a_valid_close_code_is_read(code: int) -> None:
    assert frames.parse_close(struct.pack("!H", code) + b"why") == (code, "why")


def test_a_repeated_key_or_a_missing_host_is_refused(ws_server: ServerProcess) -> None:
    key = "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="
    twice = handshake(ws_server, [*UPGRADE, key, key, "Sec-WebSocket-Version: 13"])
    assert twice.startswith(b"HTTP/1.1 400"), twice[:80]
    assert frames.handshake_problem(b"GET", {b"upgrade": b"websocket", b"connection": b"Upgrade",
                                            b"sec-websocket-version": b"13",
                                            b"sec-websocket-key": b"dGhlIHNhbXBsZSBub25jZQ=="}
                                    ) == (400, "missing Host header")  # fmt: skip
