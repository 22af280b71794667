"""The binary WebSocket frame format for game traffic (docs/messages.md "Binary frames").

The same messages as `rooms.sendMessage` and the `message` notification, without JSON or
base64: what a game sends twenty times a second should cost a few header bytes, not a third
more payload and a JSON parse. Integers are big-endian; ids are UTF-8 with a one-byte length.

    client -> server  SEND      0x01 | flags | u32 tag | u8 len, roomId | u8 n, n x (u8 len, id)
                                | payload (the rest)        n = 0: every other JOINED participant
    server -> client  SENT      0x02 | u32 tag | u32 tokenId        (only when tag != 0)
    server -> client  REJECTED  0x03 | u32 tag | the JSON-RPC error object, UTF-8 JSON
    server -> client  MESSAGE   0x04 | flags | u64 seq (0: unreliable) | u8 len, roomId
                                | u8 len, senderParticipantId | payload

flags: bit 0 = reliable. Pure: no I/O.
"""

from __future__ import annotations

import dataclasses
import struct

from roomsvc.common.errors import N_, InvalidArgument

SEND, SENT, REJECTED, MESSAGE = 0x01, 0x02, 0x03, 0x04
RELIABLE = 0x01
_HEAD = struct.Struct(">BBI")  # op, flags, tag
_SENT = struct.Struct(">BII")
_REJECTED = struct.Struct(">BI")
_MESSAGE = struct.Struct(">BBQ")


class BadFrame(InvalidArgument):
    reason = "badFrame"
    default_msgid = N_("Malformed binary frame: {problem}.")


@dataclasses.dataclass(frozen=True, slots=True)
class SendFrame:
    reliable: bool
    tag: int
    room_id: str
    recipients: list[str] | None  # None: every other JOINED participant
    payload: bytes


def _short(data: bytes | memoryview, at: int, what: str) -> tuple[str, int]:
    if at >= len(data):
        raise BadFrame(problem=f"{what} missing")
    end = at + 1 + data[at]
    if end > len(data):
        raise BadFrame(problem=f"{what} truncated")
    try:
        return bytes(data[at + 1 : end]).decode(), end
    except UnicodeDecodeError:
        raise BadFrame(problem=f"{what} is not UTF-8") from None


def decode_send(data: bytes) -> SendFrame:
    """A client frame -> `SendFrame`, or `BadFrame` naming what is wrong."""
    if len(data) < _HEAD.size:
        raise BadFrame(problem="shorter than its header")
    op, flags, tag = _HEAD.unpack_from(data)
    if op != SEND:
        raise BadFrame(problem=f"unknown type {op}")
    room_id, at = _short(data, _HEAD.size, "roomId")
    if not room_id:
        raise BadFrame(problem="empty roomId")
    if at >= len(data):
        raise BadFrame(problem="recipient count missing")
    count, at = data[at], at + 1
    recipients: list[str] = []
    for _ in range(count):
        pid, at = _short(data, at, "participantId")
        recipients.append(pid)
    return SendFrame(bool(flags & RELIABLE), tag, room_id, recipients if count else None,
                     data[at:])  # fmt: skip


def _id(value: str) -> bytes:
    raw = value.encode()
    if len(raw) > 255:
        raise ValueError("ids in binary frames are at most 255 bytes")
    return bytes((len(raw),)) + raw


def encode_send(frame: SendFrame) -> bytes:
    """The client's side (roomsvc.client and the tests)."""
    head = _HEAD.pack(SEND, RELIABLE if frame.reliable else 0, frame.tag) + _id(frame.room_id)
    ids = frame.recipients or []
    return head + bytes((len(ids),)) + b"".join(_id(p) for p in ids) + frame.payload


def encode_sent(tag: int, token_id: int) -> bytes:
    return _SENT.pack(SENT, tag, token_id & 0xFFFFFFFF)


def encode_rejected(tag: int, error_json: bytes) -> bytes:
    return _REJECTED.pack(REJECTED, tag) + error_json


def message_head(reliable: bool, seq: int, room_id: str, sender: str) -> bytes:
    """A MESSAGE frame without its payload: built once per message, shared by recipients."""
    return _MESSAGE.pack(MESSAGE, RELIABLE if reliable else 0, seq) + _id(room_id) + _id(sender)


@dataclasses.dataclass(frozen=True, slots=True)
class ServerFrame:
    op: int
    tag: int = 0
    token_id: int = 0
    error_json: bytes = b""
    reliable: bool = False
    seq: int = 0
    room_id: str = ""
    sender: str = ""
    payload: bytes = b""


def decode_server(data: bytes) -> ServerFrame:
    """A server frame (the client's side)."""
    op = data[0] if data else 0
    if op == SENT:
        _, tag, token = _SENT.unpack_from(data)
        return ServerFrame(op, tag=tag, token_id=token)
    if op == REJECTED:
        _, tag = _REJECTED.unpack_from(data)
        return ServerFrame(op, tag=tag, error_json=bytes(data[_REJECTED.size :]))
    if op == MESSAGE:
        _, flags, seq = _MESSAGE.unpack_from(data)
        room_id, at = _short(data, _MESSAGE.size, "roomId")
        sender, at = _short(data, at, "senderParticipantId")
        return ServerFrame(op, reliable=bool(flags & RELIABLE), seq=seq, room_id=room_id,
                           sender=sender, payload=bytes(data[at:]))  # fmt: skip
    raise BadFrame(problem=f"unknown type {op}")
