"""What one in-room message or signal carries between processes (docs/messages.md "Across
processes"). Pure: no I/O.

The sending process resolves the recipients against the room version the store then checks, so
a receiving process needs no room document: it hands the message to its local connections of
the players named. Recipients travel as player ids (a process finds its connections by player);
the sender as its participant id (what the recipients are shown). msgpack, positional: the
smallest encoding msgspec offers, decoded once per message per process.
"""

from __future__ import annotations

import msgspec

MESSAGE, SIGNAL = 0, 1


class Envelope(msgspec.Struct, array_like=True, frozen=True):
    kind: int  # MESSAGE or SIGNAL
    reliable: bool
    sender: str  # participant id
    recipients: list[str]  # player ids
    data: bytes  # the messageData bytes, or the signal's `data` object as JSON


_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(Envelope).decode


def encode(envelope: Envelope) -> bytes:
    return _encode(envelope)


def decode(raw: bytes) -> Envelope:
    return _decode(raw)


def split(published: bytes) -> tuple[int, Envelope]:
    """A published `<seq> <envelope>` -> (seq, envelope); seq 0: not numbered (not reliable)."""
    head, _, body = published.partition(b" ")
    return int(head), _decode(body)
