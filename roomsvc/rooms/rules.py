"""The room state machine (docs/spec.md §4), pure: no I/O, no clock (`now_ms` is an argument).

A `RoomDoc` is the canonical, receiver-independent record of a room; the store keeps it
encoded under the room's hash tag and compares `version` (the wire `roomStatusVersion`).
Every command takes the current document and returns the next one with `version + 1`, or
raises a domain error that says what was expected. The room's *status* is never stored: it is
derived from the participants and the auto-match ticket by `room_status` (status.py, with the
rest of what is derived from a document).

Timeouts are transitions too (`expire`): an unanswered invitation older than the invite timeout
counts as declined; an auto-match ticket older than the auto-match timeout ends the room for its
owner with leaveReason TIMEOUT (or, when others have joined, just closes the open slots).
Every command applies due timeouts first, so no command acts on a stale invitation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import msgspec

from roomsvc.common.errors import N_, Conflict, InvalidArgument, NotFound
from roomsvc.rooms.doc import (  # the vocabulary, also read as `rooms.X` by the other modules
    P2P,
    Criteria,
    Limits,
    Participant,
    PStatus,
    RoomDoc,
    RoomState,
    Via,
)
from roomsvc.rooms.leave_reasons import PRESENCE_FAILURE, TIMEOUT, map_leave_reason
from roomsvc.rooms.status import (  # noqa: F401 (derived state, also read as `rooms.X`)
    connected_ids,
    has_others,
    invite_deadline,
    is_connected,
    is_live,
    is_seeker,
    next_deadline,
    room_status,
    ticket_deadline,
)

# ---- commands --------------------------------------------------------------------------------


def _bump(room: RoomDoc, by: str | None, now_ms: int) -> RoomDoc:
    room.version += 1
    room.updated_ms = now_ms
    room.updated_by = by
    return room


def _copy(room: RoomDoc) -> RoomDoc:
    # Structs are mutable: commands work on a deep copy so a rejected command changes nothing.
    # Every field but the participants and their two lists is immutable (str, int, frozen
    # Criteria), so copying those is a deep copy.
    return msgspec.structs.replace(
        room,
        participants=[
            msgspec.structs.replace(
                p, capabilities=list(p.capabilities), established=list(p.established)
            )
            for p in room.participants
        ],
    )


def _check_live(room: RoomDoc) -> None:
    if room_status(room) is RoomState.DELETED:
        raise Conflict(N_("The room {room_id} has been deleted."), room_id=room.room_id)


def _member(room: RoomDoc, player_id: str) -> Participant:
    p = room.of_player(player_id)
    if p is None:
        # docs/spec.md §2: to anyone who was never in the room, it does not exist.
        raise NotFound(N_("Room {room_id} not found."), room_id=room.room_id)
    return p


def validate_create(
    player_id: str,
    invited: Sequence[str],
    criteria: Criteria | None,
    limits: Limits,
) -> None:
    """The create rules of docs/spec.md §4; each violation names its field."""
    if not invited and criteria is None:
        raise InvalidArgument(
            N_("A room needs at least one of {field} or autoMatchingCriteria."),
            field="invitedPlayerIds",
        )
    if len(set(invited)) != len(invited):
        raise InvalidArgument(N_("{field} lists a player twice."), field="invitedPlayerIds")
    if player_id in invited:
        raise InvalidArgument(N_("You cannot invite yourself ({field})."), field="invitedPlayerIds")
    for invitee in invited:
        if not invitee or len(invitee) > 128 or any(c in invitee for c in "{}: "):
            raise InvalidArgument(N_("Invalid player id in {field}."), field="invitedPlayerIds")
    extra = 0
    if criteria is not None:
        if criteria.min_players < 1:
            raise InvalidArgument(
                N_("{field} must be at least 1."),
                field="autoMatchingCriteria.minAutoMatchingPlayers",
            )
        if criteria.max_players < criteria.min_players:
            raise InvalidArgument(
                N_("{field} must not be less than minAutoMatchingPlayers."),
                field="autoMatchingCriteria.maxAutoMatchingPlayers",
            )
        extra = criteria.max_players
    if 1 + len(invited) + extra > limits.max_players:
        raise InvalidArgument(
            N_("A room holds at most {max} players: you plus invitees plus auto-match slots."),
            max=limits.max_players,
        )


def create(
    *,
    room_id: str,
    app_id: str,
    player_id: str,
    name: str | None,
    avatar: str | None,
    invited: Sequence[str],
    criteria: Criteria | None,
    variant: int | None,
    capabilities: Sequence[str],
    xmpp_address: str | None,
    ids: Iterator[str],
    now_ms: int,
    limits: Limits,
) -> RoomDoc:
    """A new room: the caller JOINED, each invitee INVITED (docs/spec.md §4), version 1."""
    validate_create(player_id, invited, criteria, limits)
    creator = Participant(
        id=next(ids),
        player_id=player_id,
        status=PStatus.JOINED,
        via=Via.CREATOR,
        since_ms=now_ms,
        name=name,
        avatar=avatar,
        capabilities=list(capabilities),
        xmpp_address=xmpp_address,
    )
    invitees = [
        Participant(
            id=next(ids),
            player_id=invitee,
            status=PStatus.INVITED,
            via=Via.INVITED,
            since_ms=now_ms,
            invited_by=creator.id,
            expires_ms=now_ms + limits.invite_timeout_ms,
        )
        for invitee in invited
    ]
    return RoomDoc(
        room_id=room_id,
        app_id=app_id,
        version=1,
        created_ms=now_ms,
        creator=creator.id,
        participants=[creator, *invitees],
        variant=variant,
        criteria=criteria,
        ticket_open=criteria is not None,
        ticket_since_ms=now_ms if criteria is not None else 0,
        ticket_deadline_ms=now_ms + limits.automatch_timeout_ms if criteria is not None else 0,
        updated_ms=now_ms,
        updated_by=creator.id,
    )


def expire(room: RoomDoc, now_ms: int, limits: Limits) -> RoomDoc | None:
    """Apply due timeouts; the next document, or None when nothing is due."""
    deadline = next_deadline(room, limits)
    if deadline is None or deadline > now_ms:
        return None
    room = _copy(room)
    _apply_timeouts(room, now_ms, limits)
    return _bump(room, None, now_ms)


def _apply_timeouts(room: RoomDoc, now_ms: int, limits: Limits) -> None:
    for p in room.participants:
        if p.status is PStatus.INVITED and invite_deadline(p, limits) <= now_ms:
            p.status = PStatus.DECLINED  # unanswered counts as declined (docs/spec.md §4)
    if room.ticket_open and ticket_deadline(room, limits) <= now_ms:
        room.ticket_open = False
        others = [p for p in room.joined() if p.id != room.creator]
        owner = room.participant(room.creator)
        if not others and owner is not None and owner.status is PStatus.JOINED:
            # Nobody to play with: the ticket ends the room for its owner (docs/spec.md §4, §5).
            owner.status = PStatus.LEFT
            owner.leave_reason = TIMEOUT


def _prepare(room: RoomDoc, now_ms: int, limits: Limits) -> RoomDoc:
    room = _copy(room)
    _apply_timeouts(room, now_ms, limits)
    return room


def _actor(
    room: RoomDoc, player_id: str, required: PStatus, refusal: str, now_ms: int, limits: Limits
) -> tuple[RoomDoc, Participant]:
    """A working copy with due timeouts applied, and the caller, who must be `required`:
    404 to strangers (docs/spec.md §2), 409 on a deleted room or in any other status
    (docs/spec.md §3)."""
    room = _prepare(room, now_ms, limits)
    p = _member(room, player_id)
    _check_live(room)
    if p.status is not required:
        raise Conflict(refusal, status=p.status.value)
    return room, p


def join(
    room: RoomDoc,
    player_id: str,
    *,
    capabilities: Sequence[str],
    xmpp_address: str | None,
    now_ms: int,
    limits: Limits,
) -> RoomDoc:
    """An INVITED participant accepts (docs/spec.md §4)."""
    room, p = _actor(
        room,
        player_id,
        PStatus.INVITED,
        N_("Only an invited participant can join; you are {status}."),
        now_ms,
        limits,
    )
    p.status = PStatus.JOINED
    p.since_ms = now_ms
    p.capabilities = list(capabilities)
    p.xmpp_address = xmpp_address
    return _bump(room, p.id, now_ms)


def decline(room: RoomDoc, player_id: str, *, now_ms: int, limits: Limits) -> RoomDoc:
    """An INVITED participant refuses (docs/spec.md §4)."""
    room, p = _actor(
        room,
        player_id,
        PStatus.INVITED,
        N_("Only an invited participant can decline; you are {status}."),
        now_ms,
        limits,
    )
    p.status = PStatus.DECLINED
    return _bump(room, p.id, now_ms)


def leave(
    room: RoomDoc, player_id: str, *, reason: str | None, now_ms: int, limits: Limits
) -> RoomDoc:
    """A JOINED participant leaves; leaving while auto-matching withdraws the ticket."""
    room, p = _actor(
        room,
        player_id,
        PStatus.JOINED,
        N_("Only a joined participant can leave; you are {status}."),
        now_ms,
        limits,
    )
    return _bump(_depart(room, p, map_leave_reason(reason)), p.id, now_ms)


def _depart(room: RoomDoc, p: Participant, leave_reason: str) -> RoomDoc:
    p.status = PStatus.LEFT
    p.leave_reason = leave_reason
    p.established = []
    for q in room.participants:
        if p.id in q.established:
            q.established = [e for e in q.established if e != p.id]
    if room.ticket_open and (p.id == room.creator or not room.joined()):
        room.ticket_open = False  # the ticket is withdrawn (docs/spec.md §4)
    return room


def presence_failure(room: RoomDoc, player_id: str, *, now_ms: int, limits: Limits) -> RoomDoc:
    """The player's realtime connections stayed gone past the grace period (docs/spec.md §6)."""
    room, p = _actor(
        room,
        player_id,
        PStatus.JOINED,
        N_("Only a joined participant can leave; you are {status}."),
        now_ms,
        limits,
    )
    return _bump(_depart(room, p, PRESENCE_FAILURE), p.id, now_ms)


def report_status(
    room: RoomDoc,
    player_id: str,
    updates: Sequence[tuple[str, str]],
    *,
    now_ms: int,
    limits: Limits,
) -> RoomDoc:
    """A JOINED participant reports (peer participant id, CONNECTION_*) pairs (docs/spec.md §4)."""
    room, p = _actor(
        room,
        player_id,
        PStatus.JOINED,
        N_("Only a joined participant can report peer status; you are {status}."),
        now_ms,
        limits,
    )
    established = set(p.established)
    for index, (peer_id, status) in enumerate(updates):
        field = f"updates[{index}]"
        if peer_id == p.id or room.participant(peer_id) is None:
            raise InvalidArgument(
                N_("{field} names no other participant of this room."),
                field=f"{field}.participantId",
            )
        if status == P2P.ESTABLISHED:
            established.add(peer_id)
        elif status == P2P.FAILED:
            established.discard(peer_id)
        else:
            raise InvalidArgument(
                N_("{field} must be CONNECTION_ESTABLISHED or CONNECTION_FAILED."),
                field=f"{field}.status",
            )
    p.established = sorted(established)
    return _bump(room, p.id, now_ms)


def add_automatched(
    room: RoomDoc,
    newcomers: Sequence[Participant],
    *,
    match_id: str,
    now_ms: int,
    limits: Limits,
) -> RoomDoc:
    """The matcher moves seekers into this host room and closes its ticket (docs/spec.md §5)."""
    room = _prepare(room, now_ms, limits)
    _check_live(room)
    if not room.ticket_open:
        raise Conflict(N_("The room {room_id} is not auto-matching."), room_id=room.room_id)
    for newcomer in newcomers:
        newcomer.via = Via.AUTOMATCH
        newcomer.status = PStatus.JOINED
        newcomer.since_ms = now_ms
        newcomer.match_id = match_id
        room.participants.append(newcomer)
    room.auto_matched += len(newcomers)
    room.ticket_open = False
    return _bump(room, None, now_ms)


def merge_into(room: RoomDoc, target_room_id: str, *, now_ms: int) -> RoomDoc:
    """A matched seeker's own room becomes a tombstone pointing at its new room (docs/spec.md
    §5)."""
    room = _copy(room)
    room.ticket_open = False
    room.merged_into = target_room_id
    return _bump(room, None, now_ms)
