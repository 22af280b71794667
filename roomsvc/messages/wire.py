"""The JSON shapes of in-room messages (docs/messages.md). Unknown fields are ignored."""

from __future__ import annotations

import msgspec


class SendMessageRequest(msgspec.Struct, rename="camel"):
    message_data: str  # base64 (standard or URL-safe alphabet, padding optional)
    reliable: bool = True
    recipient_participant_ids: list[str] | None = None


class MessageSent(msgspec.Struct, rename="camel"):
    token_id: int
    recipient_participant_ids: list[str]
    kind: str = "roomsvc#messageSent"


class Message(msgspec.Struct, rename="camel", omit_defaults=True):
    """The params of the `message` notification."""

    room_id: str
    sender_participant_id: str
    message_data: str
    is_reliable: bool
    seq: int | None = None


class SignalRequest(msgspec.Struct, rename="camel"):
    recipient_participant_id: str
    data: msgspec.Raw  # checked to be a JSON object, passed on as it came


class SignalSent(msgspec.Struct):
    kind: str = "roomsvc#signalSent"


class Signal(msgspec.Struct, rename="camel"):
    """The params of the `signal` notification."""

    room_id: str
    sender_participant_id: str
    data: msgspec.Raw


class ResumeRequest(msgspec.Struct, rename="camel"):
    after_seq: int = 0


class MessagesResumed(msgspec.Struct, rename="camel"):
    replayed: int
    last_seq: int
    complete: bool
    kind: str = "roomsvc#messagesResumed"


class IceServer(msgspec.Struct, omit_defaults=True):
    urls: list[str]
    username: str | None = None
    credential: str | None = None


class IceServers(msgspec.Struct, rename="camel"):
    ice_servers: list[IceServer]
    ttl_seconds: int
    kind: str = "roomsvc#iceServers"
