"""The steps of one claimed match (docs/spec.md §5): what they decide, and each step on its own.

A claimed match is applied to its rooms, each step a compare-and-set keyed by the match id, so
a step replayed by a retry or by a process that took the record over is a no-op:

1. the target (the host, or the oldest seeker) gets the movers' participant records
   (`rooms.add_automatched`, which closes its ticket). The target room is then the truth of who
   was matched: its participants carrying this match id. Before this step nothing has changed,
   so if the target can no longer take the group (it left, its ticket closed or timed out) the
   movers go back to the pool with their original age, and if some movers are gone the rest
   form the group only if it is still valid, else they go back too (`plan`).
2. each matched mover's room becomes a tombstone with `mergedIntoRoomId` (`rooms.merge_into`).
   If that player withdrew their ticket (left, or it timed out) after the target step, the
   withdrawal wins: the player leaves the target room with leaveReason PLAYER_LEFT, as if they
   had left it a moment after the match, and the others keep their game (`move`).
3. the record is retired, with the waits of the matched tickets (waitEstimateSeconds;
   `finished`), or with its tickets put back (`released`).

A group with a room that is missing goes back whole (nothing was applied yet): the room may still be
being written (its ticket enters the pool first, docs/design.md "Rooms: one slot each, indexes as
hints"), and once every room is there the group forms again, the largest it can (docs/spec.md §5); a
ticket whose room is still missing after `CREATE_GRACE_MS` is dropped, and a ticket whose room is
closed is dropped.

The decisions are pure functions of the rooms as read, used both by a round's writes
(rounds.py, many matches in one round trip) and by `drive`, which applies one match from
wherever it stands through `RoomStore.mutate` (re-read and recompute on a conflict): a round
hands `drive` every match that meets anything but the plain case.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

import msgspec

from roomsvc.common.clock import now_ms
from roomsvc.common.errors import NotFound
from roomsvc.matching import policy
from roomsvc.matching.policy import Group, Ticket
from roomsvc.matching.pools import CREATE_GRACE_MS, Claimed, PoolStore, Retirement
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Limits, PStatus, RoomDoc, RoomState
from roomsvc.rooms.store import RoomStore

log = logging.getLogger("roomsvc.matcher")

Docs = Mapping[str, RoomDoc | None]  # room id -> its document as read (None: missing)


class Closed(Exception):
    """The room can no longer take part in this match (internal: never leaves the matcher)."""


def is_open(doc: RoomDoc | None, ticket: Ticket, now: int, limits: Limits) -> bool:
    """The room still waits for this match: live, ticket open, not merged, seeker still one."""
    if doc is None:
        return False
    current = rooms.expire(doc, now, limits) or doc
    return (
        current.ticket_open
        and current.merged_into is None
        and rooms.room_status(current) is not RoomState.DELETED
        and (ticket.host or rooms.is_seeker(current))
    )


def keep(doc: RoomDoc | None, ticket: Ticket, now: int, limits: Limits) -> bool:
    """Whether a ticket released from a match goes back to the pool."""
    if doc is None:  # its room may still be being written (enqueued before, docs/design.md)
        return now - (ticket.queued_ms or ticket.since_ms) < CREATE_GRACE_MS
    return is_open(doc, ticket, now, limits)


def matched(doc: RoomDoc | None, match_id: str) -> set[str] | None:
    """The players this match brought into `doc`, or None if it has not been applied there."""
    if doc is None:
        return None
    players = {p.player_id for p in doc.participants if p.match_id == match_id}
    return players or None


def plan(group: Group, docs: Docs, now: int, limits: Limits) -> Group | None:
    """The group a match not applied yet can still seat: the claimed one, or the claimed one
    without the movers that withdrew if that is still a valid group; None: it goes back."""
    if any(docs[t.room_id] is None for t in group.members):
        return None
    if not is_open(docs[group.target.room_id], group.target, now, limits):
        return None
    live = tuple(t for t in group.movers if is_open(docs[t.room_id], t, now, limits))
    if len(live) == len(group.movers):
        return group
    reduced = Group(target=group.target, movers=live)
    return reduced if live and policy.is_valid(reduced) else None


def seated(
    target: RoomDoc, group: Group, docs: Docs, match_id: str, now: int, limits: Limits
) -> RoomDoc:
    """The target room with the group's movers seated, each with its own participant record
    from its room (the target step); Closed if that cannot be."""
    newcomers = []
    for t in group.movers:
        doc = docs[t.room_id]
        seat = doc.participant(doc.creator) if doc is not None else None
        if seat is None or target.of_player(seat.player_id) is not None:
            raise Closed  # (a player never meets themselves)
        newcomers.append(msgspec.structs.replace(seat))  # the core mutates them
    return rooms.add_automatched(target, newcomers, match_id=match_id, now_ms=now, limits=limits)


def released(claimed: Claimed, docs: Docs, now: int, limits: Limits) -> Retirement:
    """The record ends with nothing applied: its tickets that can wait again go back."""
    back = [t for t in claimed.group.members if keep(docs[t.room_id], t, now, limits)]
    return Retirement(claimed, back, [])


def finished(
    claimed: Claimed, players: set[str], docs: Docs, now: int, limits: Limits
) -> Retirement:
    """The record ends with `players` matched into the target: their waits are reported, and
    the movers left out (withdrawn, or left out by a process that took the record over after
    its lease lapsed and applied a smaller group) go back if they can wait again."""
    group = claimed.group
    movers = [t for t in group.movers if t.players[0] in players]
    back = [
        t
        for t in group.movers
        if t.players[0] not in players and keep(docs[t.room_id], t, now, limits)
    ]
    return Retirement(claimed, back, [now - t.since_ms for t in (group.target, *movers)])


async def drive(room_store: RoomStore, pools: PoolStore, claimed: Claimed) -> Retirement:
    """Apply a claimed match from wherever it stands; what retiring it must do."""
    limits = room_store.limits
    group = claimed.group
    target = group.target
    # fresh reads that also warm the room cache the compare-and-set steps start from
    read = await asyncio.gather(
        *(room_store.load(t.app_id, t.room_id, fresh=True) for t in group.members)
    )
    docs = {t.room_id: d for t, d in zip(group.members, read, strict=True)}
    players = matched(docs[target.room_id], claimed.match_id)
    if players is None:
        seating = plan(group, docs, now_ms(), limits)
        if seating is None:
            return released(claimed, docs, now_ms(), limits)
        try:
            target_doc = await _seat(room_store, claimed.match_id, seating, docs)
        except Closed:
            return released(claimed, docs, now_ms(), limits)
        now = now_ms()
        if now - claimed.claimed_ms > pools.lease_ms // 2:
            await pools.progress(claimed, 1, now)  # slow: note it, renew the lease
        players = matched(target_doc, claimed.match_id) or set()
    movers = [t for t in group.movers if t.players[0] in players]
    await asyncio.gather(*(move(room_store, claimed.match_id, target, t) for t in movers))
    return finished(claimed, players, docs, now_ms(), limits)


async def _seat(room_store: RoomStore, match_id: str, group: Group, docs: Docs) -> RoomDoc:
    """The target step; the target room after it."""
    limits = room_store.limits
    target = group.target

    def change(doc: RoomDoc) -> RoomDoc | None:
        if matched(doc, match_id) is not None:
            return None  # applied already (a retry, or another process's takeover)
        now = now_ms()
        if not is_open(doc, target, now, limits):
            raise Closed
        return seated(doc, group, docs, match_id, now, limits)

    try:
        applied = await room_store.mutate(
            target.app_id, target.room_id, change, request_id=f"match:{match_id}"
        )
    except NotFound:
        raise Closed from None
    return applied.room


async def move(room_store: RoomStore, match_id: str, target: Ticket, mover: Ticket) -> None:
    """A matched mover's step: its room merged into the target, or, if it withdrew, the
    player out of the target room."""
    limits = room_store.limits

    def change(doc: RoomDoc) -> RoomDoc | None:
        if doc.merged_into == target.room_id:
            return None
        if not is_open(doc, mover, now_ms(), limits):
            raise Closed
        return rooms.merge_into(doc, target.room_id, now_ms=now_ms())

    try:
        await room_store.mutate(mover.app_id, mover.room_id, change, request_id=f"match:{match_id}")
    except (Closed, NotFound):
        await _withdraw(room_store, match_id, target, mover.players[0])


async def _withdraw(room_store: RoomStore, match_id: str, target: Ticket, player_id: str) -> None:
    """The mover withdrew its ticket after the target step: it leaves the target room."""
    limits = room_store.limits

    def change(doc: RoomDoc) -> RoomDoc | None:
        p = doc.of_player(player_id)
        if p is None or p.match_id != match_id or p.status is not PStatus.JOINED:
            return None
        if rooms.room_status(doc) is RoomState.DELETED:
            return None  # the game already ended for everyone
        return rooms.leave(doc, player_id, reason="PLAYER_LEFT", now_ms=now_ms(), limits=limits)

    log.info("matched player withdrew", extra={"match_id": match_id, "room_id": target.room_id})
    await room_store.mutate(
        target.app_id, target.room_id, change, request_id=f"match:{match_id}:{player_id}:left"
    )
