"""The matcher: rounds of read, group, claim, apply, retire over every pool (docs/spec.md §5).

A claimed match is applied to its rooms, each step a compare-and-set keyed by the match id, so
a step replayed by a retry or by a process that took the record over is a no-op:

1. the target (the host, or the oldest seeker) gets the movers' participant records
   (`rooms.add_automatched`, which closes its ticket). The target room is then the truth of who
   was matched: its participants carrying this match id. Before this step nothing has changed,
   so if the target can no longer take the group (it left, its ticket closed or timed out) the
   movers go back to the pool with their original age, and if some movers are gone the rest
   form the group only if it is still valid, else they go back too.
2. each matched mover's room becomes a tombstone with `mergedIntoRoomId` (`rooms.merge_into`).
   If that player withdrew their ticket (left, or it timed out) after the target step, the
   withdrawal wins: the player leaves the target room with leaveReason PLAYER_LEFT, as if they
   had left it a moment after the match, and the others keep their game.
3. the record is retired, with the waits of the matched tickets (waitEstimateSeconds); a
   round's records are retired together, one script per pool.

A ticket whose room is missing is put back until it has been queued for `CREATE_GRACE_MS` (its room
may still be being written, docs/design.md "add before the write") and dropped after that; a ticket
whose room is closed is dropped.

What a round costs (docs/spec.md §11; store/pipelined.py sends each step as one round trip on a
plain server): the window; the claim with the reads of every claimed room; the index additions with
every target step; every mover step; the index removals with the retires. Five round trips for up to
ROUND_TICKETS tickets, about three commands per ticket (a read and a compare-and-set of its room,
half an index addition and half a removal). The background loop applies a round while it claims the
next (APPLYING at once), so one process keeps its CPU busy instead of waiting on the store, and
processes sharing a pool take turns only for the short read-group-claim step under the pool's lock,
then apply side by side.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Sequence

import msgspec

from roomsvc.common.clock import now_ms
from roomsvc.common.errors import NotFound, RoomsvcError
from roomsvc.matching import policy as matching
from roomsvc.matching.batch import CONFLICT, BatchWriter, Write, breathe
from roomsvc.matching.policy import Group, Ticket
from roomsvc.matching.pools import CREATE_GRACE_MS, Claimed, PoolStore, Retirement
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Participant, PStatus, RoomDoc, RoomState
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from roomsvc.store.pipelined import Batch

log = logging.getLogger("roomsvc.matcher")
CONCURRENCY = 64  # matches applied at once by one process
ESTIMATE_REFRESH_MS = 1_000
CONTENDED_S = 0.002
IDLE_FIRST_S = 0.002  # the first idle pause after work; it doubles up to `run_forever`'s idle_s
ROUND_TICKETS = 1_000  # tickets one round claims at most (applied well within one lease)
APPLYING = 2  # claimed rounds a process applies while it claims the next (docs/spec.md §11)
POOLS_AT_ONCE = 8  # pools one process claims from at once
POOLS_REFRESH_MS = 20
BUSY_ROUND = 64  # tickets a round must claim for the next one to start at once


_Docs = dict[str, RoomDoc | None]  # room id -> its document as read (None: missing)


class _Closed(Exception):
    """The room can no longer take part in this match (internal: never leaves this module)."""


def _open(doc: RoomDoc | None, ticket: Ticket, now: int, limits: rooms.Limits) -> bool:
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


def _keep(doc: RoomDoc | None, ticket: Ticket, now: int, limits: rooms.Limits) -> bool:
    """Whether a ticket released from a match goes back to the pool."""
    if doc is None:  # its room may still be being written (enqueued before, docs/design.md)
        return now - (ticket.queued_ms or ticket.since_ms) < CREATE_GRACE_MS
    return _open(doc, ticket, now, limits)


class Matcher:
    def __init__(
        self,
        room_store: RoomStore,
        *,
        fill_window_ms: int = 0,
        pools: PoolStore | None = None,
    ) -> None:
        self.rooms = room_store
        self.limits = room_store.limits
        self.pools = pools or PoolStore(room_store.store)
        self.fill_window_ms = fill_window_ms
        self._estimates: dict[str, int] = {}
        self._estimated_at: dict[str, int] = {}
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._driving: dict[str, Claimed] = {}  # match id -> record this process is applying
        self.batch = BatchWriter(room_store)
        self.contended = False  # a pool was busy with another process in the last round
        self._applying = asyncio.Semaphore(APPLYING)
        self._pool_gate = asyncio.Semaphore(POOLS_AT_ONCE)
        self._applies: set[asyncio.Task[None]] = set()
        self._pools: list[str] = []
        self._pools_read_at = 0

    # ---- rounds ---------------------------------------------------------------------------

    async def run_once(self, *, overlap: bool = False) -> int:
        """One round over every active pool (several at once); returns how many tickets were
        matched or freed. With `overlap`, a pool's claimed round is applied in the background
        (at most APPLYING at a time) so the next claim need not wait for it: the store's round
        trips of one round overlap the next round's reading and grouping."""
        self.contended = False
        pools = await self._active() if overlap else await self.pools.pools()
        return sum(await asyncio.gather(*(self._pool_round(p, overlap) for p in pools)))

    async def _active(self) -> list[str]:
        """The active pools, read again at most every POOLS_REFRESH_MS: rounds come every few
        milliseconds under load, and a new pool may wait that long for its first round."""
        now = now_ms()
        if now - self._pools_read_at >= POOLS_REFRESH_MS:
            self._pools = await self.pools.pools()
            self._pools_read_at = now
        return self._pools

    async def _pool_round(self, pool: str, overlap: bool) -> int:
        async with self._pool_gate:
            try:
                return await self.run_pool(pool, overlap=overlap)
            except Exception:
                log.exception("matching round failed; retried next round", extra={"pool": pool})
                return 0

    async def run_pool(self, pool: str, *, overlap: bool = False) -> int:
        # (with `overlap`, lapsed records are left to the recovery loop of `run_forever`)
        work = 0 if overlap else await self.recover(pool)
        # A slot is taken before claiming, so no claim waits for its apply beyond a round.
        await self._applying.acquire()
        try:
            claimed, by_room = await self._claim_round(pool)
        except BaseException:
            self._applying.release()
            raise
        for c in claimed:
            # listed at once: a shutdown before the apply starts still hands them over
            self._driving[c.match_id] = c
        if overlap and claimed:
            task = asyncio.create_task(self._apply_in_background(claimed, by_room))
            self._applies.add(task)
            task.add_done_callback(self._applies.discard)
        else:
            try:
                await self._drive_batch(claimed, by_room)
            finally:
                self._applying.release()
        return work + sum(len(c.group.members) for c in claimed)

    async def _apply_in_background(self, claimed: list[Claimed], by_room: _Docs) -> None:
        try:
            await self._drive_batch(claimed, by_room)
        finally:
            self._applying.release()

    async def _claim_round(self, pool: str) -> tuple[list[Claimed], _Docs]:
        """Read the pool's oldest tickets, group them, claim the groups (docs/spec.md §5), and read
        their rooms in the claim's round trip: a room read with its claim is as good as one
        read after it, since every step is a compare-and-set on the version read."""
        now = now_ms()
        tickets = await self.pools.window(pool)
        if tickets is None:
            self.contended = True  # another process is claiming from this pool right now
            return [], {}
        expired = [t for t in tickets if 0 < t.deadline_ms <= now]
        if expired:
            await self.pools.drop(pool, expired)
            tickets = [t for t in tickets if not 0 < t.deadline_ms <= now]
        # A round claims only what it can apply well within a lease; the rest of the pool is
        # left to the next round, or to another process meanwhile.
        groups = matching.run_once(tickets, now, self.fill_window_ms, max_tickets=ROUND_TICKETS)
        batch = Batch(self.rooms.store)
        claiming = self.pools.queue_claim(batch, pool, groups, now)
        members = [t for g in groups for t in g.members]
        loads = BatchWriter.queue_loads(batch, [(t.app_id, t.room_id) for t in members])
        replies = await batch.run()
        claimed = claiming.claimed(replies)
        docs = BatchWriter.decoded([replies[n] for n in loads])
        by_room = {t.room_id: doc for t, doc in zip(members, docs, strict=True)}
        if not tickets:
            await self.pools.deactivate_if_empty(pool)
        if now - self._estimated_at.get(pool, 0) >= ESTIMATE_REFRESH_MS:
            await self._refresh_estimate(pool, now)
        return claimed, by_room

    async def settle(self) -> None:
        """Wait for the rounds being applied in the background."""
        while self._applies:
            await asyncio.gather(*list(self._applies), return_exceptions=True)

    async def recover(self, pool: str) -> int:
        """Finish the records of this pool whose lease lapsed (docs/spec.md §12 item 3)."""
        now = now_ms()
        taken = []
        for match_id in await self.pools.lapsed(pool, now):
            claimed = await self.pools.takeover(pool, match_id, now)
            if claimed is not None:
                log.info(
                    "match taken over",
                    extra={"match_id": match_id, "claimed_ms_ago": now - claimed.claimed_ms},
                )
                taken.append(claimed)
        await self._drive_all(taken)
        return len(taken)

    async def recover_all(self) -> int:
        work = 0
        for pool in await self.pools.pools():
            try:
                work += await self.recover(pool)
            except Exception:
                log.exception("match recovery failed; retried", extra={"pool": pool})
        return work

    async def release_claims(self) -> None:
        """On shutdown: let another process take over what this one was applying at once."""
        for claimed in list(self._driving.values()):
            await self.pools.lapse(claimed)

    async def _drive_batch(self, claimed: Sequence[Claimed], by_room: _Docs | None = None) -> None:
        """A round's fresh claims, applied together: one read of all their rooms (unless
        `by_room` holds them already), one round trip of target steps, one of mover steps,
        one of retires (roomsvc/matching/batch.py). A match that meets anything but the plain case
        (a conflict, a replay, a withdrawn mover) is finished by the per-match path below,
        which handles every case."""
        if not claimed:
            return
        for c in claimed:
            self._driving[c.match_id] = c
        after = Batch(self.rooms.store)  # index removals, sent with the retires
        try:
            retirements, slow = await self._apply_batch(claimed, by_room, after)
        except Exception:
            log.exception("batch apply failed; the records are finished after their lease")
            retirements, slow = [], []
        # (on cancellation the claims stay listed, for release_claims to hand them over)
        for c in claimed:
            self._driving.pop(c.match_id, None)
        outcomes = await asyncio.gather(*(self._drive_guarded(c) for c in slow))
        await self.pools.retire_many(
            [*retirements, *(o for o in outcomes if o is not None)], batch=after
        )

    async def _apply_batch(
        self, claimed: Sequence[Claimed], loaded: _Docs | None, after: Batch
    ) -> tuple[list[Retirement], list[Claimed]]:
        limits = self.limits
        members = [(t.app_id, t.room_id) for c in claimed for t in c.group.members]
        if loaded is None or any(room_id not in loaded for _, room_id in members):
            docs = await self.batch.load_many(members)
            loaded = {room_id: doc for (_, room_id), doc in zip(members, docs, strict=True)}
        by_room = loaded
        now = now_ms()
        done: list[Retirement] = []
        slow: list[Claimed] = []
        plans: list[tuple[Claimed, Write]] = []
        for n, c in enumerate(claimed):
            await breathe(n)
            if any(by_room[t.room_id] is None for t in c.group.members):
                # A room still being written (its ticket enters the pool first, docs/design.md) or
                # never written. Nothing was applied yet, so the group goes back whole and forms
                # again once every room is there; a room missing past CREATE_GRACE_MS is dropped.
                done.append(self._release(c, c.group.members, by_room))
                continue
            target = c.group.target
            target_doc = by_room[target.room_id]
            if target_doc is None or _matched(target_doc, c.match_id) is not None:
                slow.append(c)
                continue
            if not _open(target_doc, target, now, limits):
                done.append(self._release(c, c.group.members, by_room))
                continue
            if not all(_open(by_room[t.room_id], t, now, limits) for t in c.group.movers):
                slow.append(c)  # the per-match path shrinks or releases the group
                continue
            try:
                newcomers = [msgspec.structs.replace(_seat_of(by_room[t.room_id]))
                             for t in c.group.movers]  # fmt: skip
                if any(target_doc.of_player(n.player_id) for n in newcomers):
                    raise _Closed
                new = rooms.add_automatched(
                    target_doc, newcomers, match_id=c.match_id, now_ms=now, limits=limits
                )
            except (_Closed, RoomsvcError):
                slow.append(c)
                continue
            plans.append((c, Write(target_doc, new, f"match:{c.match_id}")))
        outcomes = await self.batch.write_many([w for _, w in plans], after)
        merges: list[tuple[Claimed, Ticket, Write]] = []
        finished: list[tuple[Claimed, set[str]]] = []
        for n, ((c, _), (outcome, current)) in enumerate(zip(plans, outcomes, strict=True)):
            await breathe(n)
            if outcome == CONFLICT or current is None:
                slow.append(c)
                continue
            matched = _matched(current, c.match_id) or set()
            target_id = c.group.target.room_id
            for t in c.group.movers:
                mover_doc = by_room[t.room_id]
                if t.players[0] in matched and mover_doc is not None:
                    merge = rooms.merge_into(mover_doc, target_id, now_ms=now)
                    merges.append((c, t, Write(mover_doc, merge, f"match:{c.match_id}")))
            finished.append((c, matched))
        merged = await self.batch.write_many([w for *_, w in merges], after)
        again = [(c, t) for (c, t, _), (o, _) in zip(merges, merged, strict=True) if o == CONFLICT]
        await asyncio.gather(*(self._apply_mover(c.match_id, c.group.target, t) for c, t in again))
        now = now_ms()
        for c, matched in finished:
            movers = [t for t in c.group.movers if t.players[0] in matched]
            waits = [now - t.since_ms for t in (c.group.target, *movers)]
            # All movers were open, but a process that took this record over after its lease
            # lapsed may have applied a smaller group: the movers it left out go back.
            back = [
                t
                for t in c.group.movers
                if t.players[0] not in matched and _keep(by_room[t.room_id], t, now, limits)
            ]
            done.append(Retirement(c, back, waits))
        return done, slow

    async def _drive_all(self, claimed: Sequence[Claimed]) -> None:
        """Apply matches concurrently, then retire them together (one round trip)."""
        if not claimed:
            return
        outcomes = await asyncio.gather(*(self._drive_guarded(c) for c in claimed))
        await self.pools.retire_many([o for o in outcomes if o is not None])

    async def _drive_guarded(self, claimed: Claimed) -> Retirement | None:
        if claimed.match_id in self._driving:
            return None  # this process already drives it (a takeover of its own slow record)
        self._driving[claimed.match_id] = claimed
        try:
            async with self._gate:
                outcome = await self.drive(claimed)
        except Exception:
            # The record keeps its lease; once it lapses, any process finishes it.
            log.exception("match apply failed", extra={"match_id": claimed.match_id})
            outcome = None
        # (on cancellation the claim stays listed, for release_claims to hand it over)
        self._driving.pop(claimed.match_id, None)
        return outcome

    # ---- applying one match -----------------------------------------------------------------

    async def drive(self, claimed: Claimed) -> Retirement:
        """Apply a claimed match from wherever it stands; what retiring it must do."""
        group = claimed.group
        target = group.target
        # fresh reads that also warm the room cache the compare-and-set steps start from
        docs = await asyncio.gather(
            *(self.rooms.load(t.app_id, t.room_id, fresh=True) for t in group.members)
        )
        by_room = {t.room_id: d for t, d in zip(group.members, docs, strict=True)}
        now = now_ms()
        target_doc = by_room[target.room_id]
        matched = _matched(target_doc, claimed.match_id)
        if matched is None:
            if not _open(target_doc, target, now, self.limits):
                return self._release(claimed, group.members, by_room)
            live = tuple(t for t in group.movers if _open(by_room[t.room_id], t, now, self.limits))
            if len(live) < len(group.movers):
                reduced = Group(target=target, movers=live)
                if not live or not matching.is_valid(reduced):
                    return self._release(claimed, group.members, by_room)
                group = reduced
            newcomers = [_seat_of(by_room[t.room_id]) for t in group.movers]
            try:
                target_doc = await self._apply_target(claimed.match_id, target, newcomers)
            except _Closed:
                return self._release(claimed, claimed.group.members, by_room)
            now = now_ms()
            if now - claimed.claimed_ms > self.pools.lease_ms // 2:
                await self.pools.progress(claimed, 1, now)  # slow: note it, renew the lease
            matched = _matched(target_doc, claimed.match_id) or set()
        movers = [t for t in claimed.group.movers if t.players[0] in matched]
        await asyncio.gather(*(self._apply_mover(claimed.match_id, target, t) for t in movers))
        now = now_ms()
        left_out = [
            t
            for t in claimed.group.movers
            if t.players[0] not in matched and _keep(by_room[t.room_id], t, now, self.limits)
        ]
        waits = [now - t.since_ms for t in (target, *movers)]
        return Retirement(claimed, left_out, waits)

    def _release(
        self, claimed: Claimed, members: Sequence[Ticket], by_room: dict[str, RoomDoc | None]
    ) -> Retirement:
        now = now_ms()
        back = [t for t in members if _keep(by_room[t.room_id], t, now, self.limits)]
        return Retirement(claimed, back, [])

    async def _apply_target(
        self, match_id: str, target: Ticket, newcomers: list[Participant]
    ) -> RoomDoc:
        limits = self.limits

        def change(doc: RoomDoc) -> RoomDoc | None:
            if _matched(doc, match_id) is not None:
                return None  # applied already (a retry, or another process's takeover)
            now = now_ms()
            if not _open(doc, target, now, limits):
                raise _Closed
            if any(doc.of_player(n.player_id) is not None for n in newcomers):
                raise _Closed  # a player never meets themselves
            fresh = [msgspec.structs.replace(n) for n in newcomers]  # the core mutates them
            return rooms.add_automatched(doc, fresh, match_id=match_id, now_ms=now, limits=limits)

        try:
            applied = await self.rooms.mutate(
                target.app_id, target.room_id, change, request_id=f"match:{match_id}"
            )
        except NotFound:
            raise _Closed from None
        return applied.room

    async def _apply_mover(self, match_id: str, target: Ticket, mover: Ticket) -> None:
        limits = self.limits

        def change(doc: RoomDoc) -> RoomDoc | None:
            if doc.merged_into == target.room_id:
                return None
            if not _open(doc, mover, now_ms(), limits):
                raise _Closed
            return rooms.merge_into(doc, target.room_id, now_ms=now_ms())

        try:
            await self.rooms.mutate(
                mover.app_id, mover.room_id, change, request_id=f"match:{match_id}"
            )
        except (_Closed, NotFound):
            await self._withdraw_from_target(match_id, target, mover.players[0])

    async def _withdraw_from_target(self, match_id: str, target: Ticket, player_id: str) -> None:
        """The mover withdrew its ticket after the target step: it leaves the target room."""
        limits = self.limits

        def change(doc: RoomDoc) -> RoomDoc | None:
            p = doc.of_player(player_id)
            if p is None or p.match_id != match_id or p.status is not PStatus.JOINED:
                return None
            if rooms.room_status(doc) is RoomState.DELETED:
                return None  # the game already ended for everyone
            return rooms.leave(doc, player_id, reason="PLAYER_LEFT", now_ms=now_ms(), limits=limits)

        log.info("matched player withdrew", extra={"match_id": match_id, "room_id": target.room_id})
        await self.rooms.mutate(
            target.app_id, target.room_id, change, request_id=f"match:{match_id}:{player_id}:left"
        )

    # ---- waitEstimateSeconds ------------------------------------------------------------------

    async def _refresh_estimate(self, pool: str, now: int) -> None:
        self._estimated_at[pool] = now
        waits = await self.pools.recent_waits(pool)
        if waits:
            self._estimates[pool] = round(statistics.median(waits) / 1000)
        else:
            self._estimates.pop(pool, None)

    def wait_estimate(self, app_id: str, variant: int | None) -> int | None:
        """The median of the pool's last 100 waits, in seconds; None before any match."""
        return self._estimates.get(keys.pool_id(app_id, variant))


def _matched(doc: RoomDoc | None, match_id: str) -> set[str] | None:
    """The players this match brought into `doc`, or None if it has not been applied there."""
    if doc is None:
        return None
    players = {p.player_id for p in doc.participants if p.match_id == match_id}
    return players or None


def _seat_of(doc: RoomDoc | None) -> Participant:
    """A seeker's own participant record, carried into the target room."""
    creator = doc.participant(doc.creator) if doc is not None else None
    if creator is None:
        raise _Closed
    return creator
