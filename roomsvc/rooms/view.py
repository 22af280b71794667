"""A room as one player sees it (docs/spec.md §4, §5), pure.

- `description` is worded for the receiver, in their language;
- `inviterId` is set for an invitee;
- `player` for the receiver itself and for people it invited or was invited by;
  `autoMatchedPlayer` (an anonymous name and avatar, stable within the room) and
  `autoMatched: true` for everyone it met through auto-matching: a participant who came in by
  auto-match is anonymous to all others, and to an auto-matched receiver everyone else is.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable

from roomsvc.common.errors import N_
from roomsvc.common.i18n import gettext
from roomsvc.rooms import wire
from roomsvc.rooms.rules import (
    Participant,
    PStatus,
    RoomDoc,
    RoomState,
    Via,
    connected_ids,
    is_connected,
    room_status,
)

ANON_AVATARS = 16


@dataclasses.dataclass(frozen=True, slots=True)
class ViewContext:
    """What rendering needs besides the room: language, our public URL, the wait estimate."""

    locale: str = "en"
    base_url: str = ""
    # (applicationId, variant) -> the pool's recent waits, in seconds (docs/spec.md §5)
    wait_estimate: Callable[[str, int | None], int | None] | None = None


def anonymous_number(room: RoomDoc, p: Participant) -> int:
    digest = hashlib.blake2s(f"{room.room_id}/{p.id}".encode(), digest_size=4).digest()
    return 1000 + int.from_bytes(digest, "big") % 9000


def anonymous_player(room: RoomDoc, p: Participant, ctx: ViewContext) -> wire.AnonymousPlayer:
    number = anonymous_number(room, p)
    return wire.AnonymousPlayer(
        display_name=gettext(ctx.locale, N_("Player {number}"), number=number),
        avatar_image_url=f"{ctx.base_url}/games/v1/avatars/anonymous/{number % ANON_AVATARS}.svg",
    )


def _anonymous_between(viewer: Participant | None, p: Participant) -> bool:
    if viewer is not None and viewer.id == p.id:
        return False
    return p.via is Via.AUTOMATCH or (viewer is not None and viewer.via is Via.AUTOMATCH)


def _name(room: RoomDoc, viewer: Participant | None, p: Participant, ctx: ViewContext) -> str:
    if _anonymous_between(viewer, p):
        return gettext(ctx.locale, N_("Player {number}"), number=anonymous_number(room, p))
    return p.name or p.player_id


def render_participant(
    room: RoomDoc,
    viewer: Participant | None,
    p: Participant,
    ctx: ViewContext,
    connected: set[str] | None = None,
) -> wire.RoomParticipant:
    """One participant as `viewer` sees it; `connected` is `connected_ids(room)` when the
    caller renders them all (computed once per room, not once per participant)."""
    anonymous = _anonymous_between(viewer, p)
    return wire.RoomParticipant(
        id=p.id,
        status=p.status,  # a StrEnum: encoded as its value, without the enum property's cost
        auto_matched=True if anonymous else None,
        auto_matched_player=anonymous_player(room, p, ctx) if anonymous else None,
        player=None
        if anonymous
        else wire.Player(player_id=p.player_id, display_name=p.name, avatar_image_url=p.avatar),
        capabilities=p.capabilities or None,
        client_address=wire.RoomClientAddress(xmpp_address=p.xmpp_address)
        if p.xmpp_address
        else None,
        connected=p.id in connected if connected is not None else is_connected(room, p),
        leave_reason=p.leave_reason if p.status is PStatus.LEFT else None,
    )


def _description(room: RoomDoc, viewer: Participant | None, ctx: ViewContext) -> str:
    if viewer is not None and viewer.status is PStatus.INVITED and viewer.invited_by:
        inviter = room.participant(viewer.invited_by)
        if inviter is not None:
            return gettext(
                ctx.locale, N_("{name} invited you to play"), name=_name(room, viewer, inviter, ctx)
            )
    creator = room.participant(room.creator)
    if viewer is not None and creator is not None and viewer.id == creator.id:
        return gettext(ctx.locale, N_("Your game room"))
    if creator is None:
        return gettext(ctx.locale, N_("Game room"))
    return gettext(ctx.locale, N_("{name}'s game room"), name=_name(room, viewer, creator, ctx))


def _modification(participant_id: str | None, ms: int) -> wire.RoomModification:
    return wire.RoomModification(participant_id=participant_id, modified_timestamp_millis=str(ms))


class Shared:
    """What every receiver's view of one room version has in common, worked out once for all
    of them (docs/realtime.md "The push path"): the derived status, the connected set, and each
    participant in the two forms a receiver can see it in (shown, or anonymous), per language
    and public URL. Hand one to `render_room` for each receiver of the same `room`; a room of
    four seen by its four players then renders eight participants, not sixteen."""

    __slots__ = ("_connected", "_forms", "room", "status")

    def __init__(self, room: RoomDoc, status: RoomState | None = None) -> None:
        self.room = room
        self.status = status if status is not None else room_status(room)
        self._connected: set[str] | None = None
        self._forms: dict[tuple[str, bool, str, str], wire.RoomParticipant] = {}

    def participants(
        self, viewer: Participant | None, ctx: ViewContext
    ) -> list[wire.RoomParticipant]:
        room = self.room
        if self._connected is None:
            self._connected = connected_ids(room)
        out = []
        for p in room.participants:
            key = (p.id, _anonymous_between(viewer, p), ctx.locale, ctx.base_url)
            form = self._forms.get(key)
            if form is None:
                form = render_participant(room, viewer, p, ctx, self._connected)
                self._forms[key] = form
            out.append(form)
        return out


def _auto_status(
    room: RoomDoc, status: RoomState, ctx: ViewContext
) -> wire.RoomAutoMatchStatus | None:
    if status is not RoomState.AUTO_MATCHING and not room.ticket_open:
        return None
    seconds = ctx.wait_estimate(room.app_id, room.variant) if ctx.wait_estimate else None
    return wire.RoomAutoMatchStatus(wait_estimate_seconds=seconds)


def render_room(
    room: RoomDoc, receiver_player_id: str, ctx: ViewContext, shared: Shared | None = None
) -> wire.Room:
    """`room` as `receiver_player_id` sees it; `shared` (of this same `room`) when it is rendered
    for several receivers."""
    if shared is None or shared.room is not room:
        shared = Shared(room)
    viewer = room.of_player(receiver_player_id)
    status = shared.status
    criteria = room.criteria
    inviter_id = viewer.invited_by if viewer is not None and viewer.via is Via.INVITED else None
    return wire.Room(
        application_id=room.app_id,
        room_id=room.room_id,
        status=status,
        room_status_version=room.version,
        variant=room.variant,
        description=_description(room, viewer, ctx),
        inviter_id=inviter_id,
        auto_matching_criteria=wire.RoomAutoMatchingCriteria(
            min_auto_matching_players=criteria.min_players,
            max_auto_matching_players=criteria.max_players,
            exclusive_bitmask=str(criteria.bitmask),
        )
        if criteria is not None
        else None,
        auto_matching_status=_auto_status(room, status, ctx),
        creation_details=_modification(room.creator, room.created_ms),
        last_update_details=_modification(room.updated_by, room.updated_ms),
        participants=shared.participants(viewer, ctx),
        merged_into_room_id=room.merged_into,
    )


def render_status(room: RoomDoc, receiver_player_id: str, ctx: ViewContext) -> wire.RoomStatus:
    viewer = room.of_player(receiver_player_id)
    shared = Shared(room)
    return wire.RoomStatus(
        room_id=room.room_id,
        status=shared.status,
        status_version=room.version,
        auto_matching_status=_auto_status(room, shared.status, ctx),
        participants=shared.participants(viewer, ctx),
    )
