"""The WebSocket wire format, server side (RFC 6455 §4-§7), with no I/O (docs/realtime.md
"The WebSocket server").

- `accept_key` and `handshake_problem`: the opening handshake's checks and its answer;
- `encode`: one unmasked, unfragmented server frame;
- `FrameReader`: the client's frames out of the bytes read, unmasked, with every rule a
  server must enforce (masking, reserved bits, opcodes, control frames, fragmentation, the
  size limit), each broken rule a `Fail` carrying the close code to answer with;
- `close_payload` / `parse_close`: the close frame's code and reason.

No extension is negotiated (per-message deflate is off, docs/performance.md), so every
reserved bit set is a protocol error.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct

from websockets.frames import apply_mask  # websockets' C speedup where built

CONT, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
_DATA = frozenset({CONT, TEXT, BINARY})
_CONTROL = frozenset({CLOSE, PING, PONG})
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_LEN16 = struct.Struct("!BBH")
_LEN64 = struct.Struct("!BBQ")
_CODE = struct.Struct("!H")

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009


class Fail(Exception):
    """The peer broke the protocol: close with `code` (and `reason`), then drop the link."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


def accept_key(key: bytes) -> bytes:
    """Sec-WebSocket-Accept for a client's Sec-WebSocket-Key (RFC 6455 §4.2.2)."""
    return base64.b64encode(hashlib.sha1(key + _GUID).digest())


def handshake_problem(method: bytes, headers: dict[bytes, bytes]) -> tuple[int, str] | None:
    """(HTTP status, reason) when the opening handshake is not a valid WebSocket request
    (RFC 6455 §4.2.1); None when it is. `headers` have lowercase names."""
    if method != b"GET":
        return 400, "a WebSocket handshake is a GET request"
    if b"host" not in headers:
        return 400, "missing Host header"
    if b"websocket" not in _tokens(headers.get(b"upgrade", b"")):
        return 400, "missing Upgrade: websocket"
    if b"upgrade" not in _tokens(headers.get(b"connection", b"")):
        return 400, "missing Connection: Upgrade"
    if headers.get(b"sec-websocket-version", b"").strip() != b"13":
        return 426, "unsupported Sec-WebSocket-Version; 13 is"
    key = headers.get(b"sec-websocket-key", b"").strip()
    try:
        valid = len(base64.b64decode(key, validate=True)) == 16
    except (binascii.Error, ValueError):
        valid = False
    if not valid:
        return 400, "invalid Sec-WebSocket-Key"
    return None


def _tokens(value: bytes) -> list[bytes]:
    return [t.strip().lower() for t in value.split(b",")]


def encode(opcode: int, payload: bytes) -> bytes:
    """One final, unmasked frame (servers never mask, RFC 6455 §5.1)."""
    n = len(payload)
    if n < 126:
        return bytes((0x80 | opcode, n)) + payload
    if n < 65536:
        return _LEN16.pack(0x80 | opcode, 126, n) + payload
    return _LEN64.pack(0x80 | opcode, 127, n) + payload


def close_payload(code: int, reason: str = "") -> bytes:
    """A close frame's body; the reason is cut to fit a control frame's 125 bytes."""
    raw = reason.encode()[:123]
    while raw:  # do not cut a character in half
        try:
            raw.decode()
            break
        except UnicodeDecodeError:
            raw = raw[:-1]
    return _CODE.pack(code) + raw


def valid_close_code(code: int) -> bool:
    """A code a close frame may carry on the wire (RFC 6455 §7.4): 1005, 1006 and 1015 only
    ever describe a close, and 1004 and 1016-2999 are unassigned."""
    return code in _SENDABLE or 3000 <= code < 5000


_SENDABLE = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014})


def parse_close(payload: bytes) -> tuple[int, str]:
    """(code, reason) of a received close frame; 1005 when it carries no code (RFC 6455 §7.1.5)."""
    if not payload:
        return 1005, ""
    if len(payload) == 1:
        raise Fail(PROTOCOL_ERROR, "close frame too short")
    (code,) = _CODE.unpack_from(payload)
    if not valid_close_code(code):
        raise Fail(PROTOCOL_ERROR, f"invalid close code {code}")
    try:
        return code, payload[2:].decode()
    except UnicodeDecodeError:
        raise Fail(INVALID_DATA, "close reason is not UTF-8") from None


class FrameReader:
    """The client's messages out of the bytes read from its socket.

    `feed(data)` returns what completed: `(opcode, payload)` pairs, where a data message
    (TEXT or BINARY) comes reassembled from its fragments and control frames (which may arrive
    between fragments) come as they are. A CLOSE is the last: what follows it is not read (the
    peer may send nothing after it, RFC 6455 §5.5.1). A message larger than `max_size` is
    refused as soon as its header says so, before its body is buffered.
    """

    __slots__ = ("_buf", "_fragments", "_kind", "_size", "max_size")

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self._buf = bytearray()
        self._kind = 0  # the opcode of the message being reassembled; 0 = none
        self._fragments: list[bytes] = []
        self._size = 0

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self._buf
        buf += data
        out: list[tuple[int, bytes]] = []
        pos, end = 0, len(buf)
        while end - pos >= 2:
            b0, b1 = buf[pos], buf[pos + 1]
            n, head = b1 & 0x7F, 2
            if n == 126:
                if end - pos < 4:
                    break
                n, head = (buf[pos + 2] << 8) | buf[pos + 3], 4
            elif n == 127:
                if end - pos < 10:
                    break
                n, head = int.from_bytes(buf[pos + 2 : pos + 10], "big"), 10
                if n >> 63:
                    raise Fail(PROTOCOL_ERROR, "invalid frame length")
            self._check(b0, b1, n)
            if end - pos < head + 4 + n:
                break
            mask = bytes(buf[pos + head : pos + head + 4])
            start = pos + head + 4
            payload = apply_mask(bytes(buf[start : start + n]), mask) if n else b""
            pos = start + n
            message = self._take(b0 & 0x0F, bool(b0 & 0x80), payload)
            if message is not None:
                out.append(message)
                if message[0] == CLOSE:
                    buf.clear()
                    return out
        if pos:
            del buf[:pos]
        return out

    def _check(self, b0: int, b1: int, n: int) -> None:
        """A frame's header, before its body is read: refuse what can never be valid."""
        if b0 & 0x70:
            raise Fail(PROTOCOL_ERROR, "reserved bits set")
        if not b1 & 0x80:
            raise Fail(PROTOCOL_ERROR, "client frames must be masked")
        opcode = b0 & 0x0F
        if opcode in _CONTROL:
            if n > 125:
                raise Fail(PROTOCOL_ERROR, "control frame too long")
            if not b0 & 0x80:
                raise Fail(PROTOCOL_ERROR, "fragmented control frame")
        elif opcode not in _DATA:
            raise Fail(PROTOCOL_ERROR, f"reserved opcode {opcode}")
        elif self._size + n > self.max_size:
            raise Fail(TOO_BIG, f"message over {self.max_size} bytes")

    def _take(self, opcode: int, fin: bool, payload: bytes) -> tuple[int, bytes] | None:
        if opcode in _CONTROL:
            return opcode, payload
        if opcode == CONT:
            if not self._kind:
                raise Fail(PROTOCOL_ERROR, "continuation without a message")
        elif self._kind:
            raise Fail(PROTOCOL_ERROR, "new message inside a fragmented one")
        elif fin:
            return opcode, payload  # the common case: a whole message in one frame
        else:
            self._kind = opcode
        self._fragments.append(payload)
        self._size += len(payload)
        if not fin:
            return None
        kind, whole = self._kind, b"".join(self._fragments)
        self._kind, self._fragments, self._size = 0, [], 0
        return kind, whole
