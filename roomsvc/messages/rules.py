"""Who may send a message to whom, and how much (docs/messages.md "Rules"). Pure: no I/O.

Only a JOINED participant of a room that is not DELETED sends or receives. A caller who is not a
participant at all gets 404, as for every other room call (the room does not exist for them);
a participant who is not JOINED, a recipient who is not JOINED, and a DELETED room are errors
that name the participant and carry the status code GPGS used for the same case.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

from roomsvc.common.errors import N_, Conflict, InvalidArgument, NotFound
from roomsvc.rooms.doc import PStatus, RoomDoc, RoomState
from roomsvc.rooms.rules import room_status

# GPGS RealTimeMultiplayerClient limits (bytes of messageData, after base64 decoding).
MAX_RELIABLE_BYTES = 1400
MAX_UNRELIABLE_BYTES = 1168
MAX_SIGNAL_BYTES = 16 * 1024  # the encoded `data` object of rooms.signal


class ParticipantNotConnected(Conflict):
    """A recipient that is not a JOINED participant (GPGS STATUS_PARTICIPANT_NOT_CONNECTED)."""

    gpgs_status: ClassVar[int | None] = 7003
    reason = "participantNotConnected"
    default_msgid = N_("Participant {participant} is not joined to the room.")


class RoomNotJoined(Conflict):
    """The sender is a participant but not JOINED (GPGS STATUS_REAL_TIME_ROOM_NOT_JOINED)."""

    gpgs_status: ClassVar[int | None] = 7004
    reason = "roomNotJoined"
    default_msgid = N_("You have not joined room {room}.")


class RoomInactive(Conflict):
    """The room is DELETED (GPGS STATUS_REAL_TIME_INACTIVE_ROOM)."""

    gpgs_status: ClassVar[int | None] = 7005
    reason = "inactiveRoom"
    default_msgid = N_("Room {room} is no longer active.")


class MessageTooLarge(InvalidArgument):
    reason = "messageTooLarge"
    default_msgid = N_("{field} is {size} bytes; the limit is {limit} bytes.")


def _deleted(doc: RoomDoc) -> bool:
    return room_status(doc) is RoomState.DELETED


@dataclasses.dataclass(frozen=True, slots=True)
class Route:
    """A message's sender and recipients, as participant ids, checked against one version."""

    version: int
    sender: str
    recipients: tuple[str, ...]


def route(doc: RoomDoc | None, room_id: str, player_id: str,
          recipients: list[str] | None) -> Route:  # fmt: skip
    """Check a send by `player_id` against `doc` and resolve its recipients (omitted: every
    other JOINED participant). The sender never receives its own message."""
    me = doc.of_player(player_id) if doc is not None else None
    if doc is None or me is None:
        raise NotFound(N_("Room {room_id} not found."), room_id=room_id)
    if _deleted(doc):
        raise RoomInactive(room=room_id)
    if me.status is not PStatus.JOINED:
        raise RoomNotJoined(room=room_id)
    if recipients is None:
        chosen = tuple(p.id for p in doc.participants
                       if p.status is PStatus.JOINED and p.id != me.id)  # fmt: skip
        return Route(doc.version, me.id, chosen)
    seen: dict[str, None] = {}
    for pid in recipients:
        if pid == me.id or pid in seen:
            continue
        p = doc.participant(pid)
        if p is None or p.status is not PStatus.JOINED:
            raise ParticipantNotConnected(participant=pid[:64])
        seen[pid] = None
    return Route(doc.version, me.id, tuple(seen))


def check_size(field: str, size: int, limit: int) -> None:
    if size > limit:
        raise MessageTooLarge(field=field, size=size, limit=limit)


def data_limit(reliable: bool) -> int:
    return MAX_RELIABLE_BYTES if reliable else MAX_UNRELIABLE_BYTES
