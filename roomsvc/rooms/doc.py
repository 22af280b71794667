"""The room document and its vocabulary (docs/spec.md §4): statuses, participants, criteria, limits.

`RoomDoc` is the canonical, receiver-independent record of a room; the store keeps it encoded
(msgpack) under the room's hash tag and compares `version` (the wire `roomStatusVersion`). The
rules that change it live in rooms.py; how one receiver sees it, in room_view.py.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:
    from roomsvc.settings import Settings


class RoomState(enum.StrEnum):
    INVITING = "ROOM_INVITING"
    AUTO_MATCHING = "ROOM_AUTO_MATCHING"
    CONNECTING = "ROOM_CONNECTING"
    ACTIVE = "ROOM_ACTIVE"
    DELETED = "ROOM_DELETED"


class PStatus(enum.StrEnum):
    INVITED = "PARTICIPANT_INVITED"
    JOINED = "PARTICIPANT_JOINED"
    DECLINED = "PARTICIPANT_DECLINED"
    LEFT = "PARTICIPANT_LEFT"


class Via(enum.StrEnum):
    """How a participant came into the room; decides who is anonymous to whom (docs/spec.md §4)."""

    CREATOR = "creator"
    INVITED = "invited"
    AUTOMATCH = "automatch"


class P2P(enum.StrEnum):
    ESTABLISHED = "CONNECTION_ESTABLISHED"
    FAILED = "CONNECTION_FAILED"


@dataclasses.dataclass(frozen=True, slots=True)
class Limits:
    """The settings the rules depend on (docs/spec.md §1), in milliseconds."""

    max_players: int = 8
    invite_timeout_ms: int = 300_000
    automatch_timeout_ms: int = 60_000

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            max_players=settings.max_players,
            invite_timeout_ms=settings.invite_timeout_seconds * 1000,
            automatch_timeout_ms=settings.automatch_timeout_seconds * 1000,
        )


class Participant(msgspec.Struct, omit_defaults=True, gc=False):
    id: str
    player_id: str
    status: PStatus
    via: Via
    since_ms: int  # invited at, or joined at for the creator and auto-matched players
    name: str | None = None
    avatar: str | None = None
    invited_by: str | None = None  # participant id of the inviter
    capabilities: list[str] = []
    xmpp_address: str | None = None
    leave_reason: str | None = None
    established: list[str] = []  # participant ids this one reported CONNECTION_ESTABLISHED to
    match_id: str | None = None  # the auto-match that brought this participant in
    expires_ms: int = 0  # an INVITED participant's invitation deadline, fixed when invited


class Criteria(msgspec.Struct, frozen=True, gc=False):
    min_players: int
    max_players: int
    bitmask: int = 0


# gc=False: documents are trees (no reference cycles), so the cyclic collector need not track
# them; a process holding thousands of rooms and sockets otherwise pays for walking them in
# every full collection, a pause every connection's pushes wait behind (docs/spec.md §11).
class RoomDoc(msgspec.Struct, omit_defaults=True, gc=False):
    room_id: str
    app_id: str
    version: int
    created_ms: int
    creator: str  # participant id
    participants: list[Participant]
    variant: int | None = None
    criteria: Criteria | None = None
    ticket_open: bool = False  # auto-match slots still to fill (docs/spec.md §5)
    ticket_since_ms: int = 0
    ticket_deadline_ms: int = 0  # fixed when the ticket opens (ROOMSVC_AUTOMATCH_TIMEOUT_SECONDS)
    auto_matched: int = 0  # players added by auto-matching
    merged_into: str | None = None  # a seeker room moved into another room (docs/spec.md §5)
    updated_ms: int = 0
    updated_by: str | None = None

    def participant(self, participant_id: str) -> Participant | None:
        for p in self.participants:
            if p.id == participant_id:
                return p
        return None

    def of_player(self, player_id: str) -> Participant | None:
        for p in self.participants:
            if p.player_id == player_id:
                return p
        return None

    def joined(self) -> list[Participant]:
        return [p for p in self.participants if p.status is PStatus.JOINED]
