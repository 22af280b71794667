"""A room's status and what else is derived from its document (docs/spec.md §4), pure: no I/O,
no clock (`now_ms` is an argument where a deadline is compared).

The status is never stored: `room_status` derives it from the participants and the auto-match
ticket each time it is wanted. Deadlines are fixed in the document when an invitation or a
ticket starts, so every process that later sweeps the room agrees on them, whatever its own
settings (docs/spec.md §4 timeouts); the transitions that act on them are in rules.py.
"""

from __future__ import annotations

from roomsvc.rooms.doc import Limits, Participant, PStatus, RoomDoc, RoomState


def _established_both_ways(p: Participant, q: Participant) -> bool:
    return q.id in p.established and p.id in q.established


def is_connected(room: RoomDoc, p: Participant) -> bool:
    """Established both ways with every other JOINED participant (docs/spec.md §4)."""
    if p.status is not PStatus.JOINED:
        return False
    return all(
        _established_both_ways(p, q)
        for q in room.participants
        if q.status is PStatus.JOINED and q is not p
    )


def connected_ids(room: RoomDoc) -> set[str]:
    """The ids of every connected participant (`is_connected`), in one pass over the pairs."""
    joined = room.joined()
    return {p.id for p in joined if all(_established_both_ways(p, q) for q in joined if q is not p)}


def room_status(room: RoomDoc) -> RoomState:
    """INVITING > AUTO_MATCHING > CONNECTING > ACTIVE, or DELETED (docs/spec.md §4).

    One pass over the participants: this runs several times per request (rules, index
    hints, TTLs, rendering), so it is kept cheap rather than cached on a mutable document.
    """
    if room.merged_into:
        return RoomState.DELETED
    joined: list[Participant] = []
    invited = others = False  # anyone pending; anyone but the creator joined or left
    for p in room.participants:
        status = p.status
        if status is PStatus.JOINED:
            joined.append(p)
            others = others or p.id != room.creator
        elif status is PStatus.INVITED:
            invited = True
        elif status is PStatus.LEFT:
            others = others or p.id != room.creator
    # Nobody left to play with: no one else joined or left, no invitation, no ticket.
    if not joined or not (others or invited or room.ticket_open):
        return RoomState.DELETED
    if invited:
        return RoomState.INVITING
    if room.ticket_open:
        return RoomState.AUTO_MATCHING
    for p in joined:
        for q in joined:
            if q is not p and not _established_both_ways(p, q):
                return RoomState.CONNECTING
    return RoomState.ACTIVE


def is_live(doc: RoomDoc | None, player_id: str, *, deleted: bool | None = None) -> bool:
    """The one "live participant" rule: the player is JOINED in a room that is not DELETED. It
    decides who receives in-room messages, whose presence is watched and who holds a feed.
    `deleted`: whether the room's derived status is DELETED, when the caller has it already
    (a pass over every pair of participants saved)."""
    if doc is None:
        return False
    p = doc.of_player(player_id)
    if p is None or p.status is not PStatus.JOINED:
        return False
    return not (room_status(doc) is RoomState.DELETED if deleted is None else deleted)


def has_others(doc: RoomDoc, player_id: str) -> bool:
    """Someone besides the player is invited, joined or left (LEFT only follows JOINED): a
    message or a signal can reach the player in this room now, or the moment an invitee joins.
    Only a seeker's room of one (docs/spec.md §5) has nobody: it is not followed for messages
    (docs/messages.md "Across processes")."""
    return any(p.status is not PStatus.DECLINED and p.player_id != player_id
               for p in doc.participants)  # fmt: skip


def is_seeker(room: RoomDoc) -> bool:
    """Only its creator and nobody invited: moved into a host when matched (docs/spec.md §5)."""
    return room.criteria is not None and len(room.participants) == 1


def invite_deadline(p: Participant, limits: Limits) -> int:
    """When an INVITED participant's invitation times out."""
    return p.expires_ms or p.since_ms + limits.invite_timeout_ms


def ticket_deadline(room: RoomDoc, limits: Limits) -> int:
    """When the room's auto-match ticket times out."""
    return room.ticket_deadline_ms or room.ticket_since_ms + limits.automatch_timeout_ms


def next_deadline(room: RoomDoc, limits: Limits) -> int | None:
    """When `expire` will next change this room, or None."""
    if room_status(room) is RoomState.DELETED:
        return None
    deadlines = [
        invite_deadline(p, limits) for p in room.participants if p.status is PStatus.INVITED
    ]
    if room.ticket_open:
        deadlines.append(ticket_deadline(room, limits))
    return min(deadlines) if deadlines else None
