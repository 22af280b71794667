"""The matcher: rounds of read, group, claim, apply, retire over every pool (docs/spec.md §5).

One round of one pool (`_round`):
1. claim: read the pool's oldest tickets under its lock, group them (matching/policy.py), and
   claim the groups into match records, reading every claimed room in the claim's round trip
   (a room read with its claim is as good as one read after it, since every step is a
   compare-and-set on the version read);
2. apply (`apply`): every match's target step in one round trip, then every mover step in one
   (`RoomStore.write_many`), each decided by matching/steps.py; a match that meets anything
   but the plain case (a conflict, a replay, a withdrawn mover) is finished on its own by
   `steps.drive`, which handles every case with the same decisions;
3. retire the round's records together, one script per pool, with the index removals of the
   writes.

What a round costs (docs/spec.md §11; store/batching.py sends each step as one round trip on a
plain server): the window; the claim with the reads of every claimed room; the index additions with
every target step; every mover step; the index removals with the retires. Five round trips for up to
ROUND_TICKETS tickets, about three commands per ticket (a read and a compare-and-set of its room,
half an index addition and half a removal). A round's apply runs in the background while the next
round claims (at most APPLYING rounds at once), so one process keeps its CPU busy instead of waiting
on the store, and processes sharing a pool take turns only for the short read-group-claim step under
the pool's lock, then apply side by side.

Records whose lease lapsed (their process died or stalled) are taken over by `recover` and
applied the same way, from wherever they stand (docs/spec.md §12 item 3).
"""

from __future__ import annotations

import asyncio
import logging
import statistics
from collections.abc import Sequence

from roomsvc.common.clock import now_ms
from roomsvc.common.errors import RoomsvcError
from roomsvc.matching import policy, steps
from roomsvc.matching.policy import Ticket
from roomsvc.matching.pools import Claimed, PoolStore, Retirement
from roomsvc.matching.steps import Docs
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.store import CONFLICT, RoomStore, Write, breathe, decoded
from roomsvc.store import keys
from roomsvc.store.batching import Batch

log = logging.getLogger("roomsvc.matcher")
CONCURRENCY = 64  # matches finished one by one at once by one process
ESTIMATE_REFRESH_MS = 1_000
CONTENDED_S = 0.002
IDLE_FIRST_S = 0.002  # the first idle pause after work; it doubles up to `run_forever`'s idle_s
ROUND_TICKETS = 1_000  # tickets one round claims at most (applied well within one lease)
APPLYING = 2  # claimed rounds a process applies while it claims the next (docs/spec.md §11)
BUSY_ROUND = 64  # tickets a round must claim for the next one to start at once


class Matcher:
    def __init__(self, room_store: RoomStore, pools: PoolStore, *, fill_window_ms: int = 0) -> None:
        self.rooms = room_store
        self.pools = pools
        self.fill_window_ms = fill_window_ms
        self.contended = False  # a pool was busy with another process in the last round
        self._estimates: dict[str, tuple[int, int | None]] = {}  # pool -> (read at, seconds)
        self._rounds = asyncio.Semaphore(APPLYING)  # rounds claimed and not yet applied
        self._one_by_one = asyncio.Semaphore(CONCURRENCY)
        self._applying: set[asyncio.Task[None]] = set()
        self._driving: dict[str, Claimed] = {}  # match id -> record this process is applying

    # ---- rounds ---------------------------------------------------------------------------

    async def run_once(self) -> int:
        """One round over every active pool, side by side; returns how many tickets were
        claimed once each pool's round is claimed (their apply goes on in the background)."""
        self.contended = False
        pools = await self.pools.active(now_ms())
        return sum(await asyncio.gather(*(self._round(pool) for pool in pools)))

    @property
    def in_flight(self) -> list[asyncio.Task[None]]:
        """The rounds being applied in the background."""
        return list(self._applying)

    async def _round(self, pool: str) -> int:
        """One round of `pool`, a task of its own: claim, then apply in the background; the
        tickets claimed, as soon as they are claimed."""
        counted: asyncio.Future[int] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(self._claim_and_apply(pool, counted))
        self._applying.add(task)
        task.add_done_callback(self._applying.discard)
        return await counted

    async def _claim_and_apply(self, pool: str, counted: asyncio.Future[int]) -> None:
        # The slot is taken before claiming and held through the apply, so no claim waits
        # for its apply beyond a round.
        async with self._rounds:
            try:
                claimed, docs = await self._claim(pool)
            except Exception:
                log.exception("matching round failed; retried next round", extra={"pool": pool})
                claimed, docs = [], {}
            except BaseException:
                counted.cancel()  # (a cancelled claim: run_once is stopping too)
                raise
            if not counted.done():  # (run_once may have been cancelled meanwhile)
                counted.set_result(sum(len(c.group.members) for c in claimed))
            await self.apply(claimed, docs)

    async def _claim(self, pool: str) -> tuple[list[Claimed], Docs]:
        """Read the pool's oldest tickets, group them, claim the groups and read their rooms."""
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
        groups = policy.run_once(tickets, now, self.fill_window_ms, max_tickets=ROUND_TICKETS)
        batch = self.pools.batch()
        claiming = self.pools.queue_claim(batch, pool, groups, now)
        members = [t for g in groups for t in g.members]
        loads = RoomStore.queue_loads(batch, [(t.app_id, t.room_id) for t in members])
        replies = await batch.run()
        claimed = claiming.claimed(replies)
        for c in claimed:
            # listed at once: a shutdown before the apply starts still hands them over
            self._driving[c.match_id] = c
        read = decoded([replies[n] for n in loads])
        if not tickets:
            await self.pools.deactivate_if_empty(pool)
        if now - self._estimates.get(pool, (0, None))[0] >= ESTIMATE_REFRESH_MS:
            await self._refresh_estimate(pool, now)
        return claimed, {t.room_id: doc for t, doc in zip(members, read, strict=True)}

    async def apply(self, claimed: Sequence[Claimed], docs: Docs | None = None) -> None:
        """Apply claimed records and retire them: together where they take the plain case,
        one by one (`steps.drive`) otherwise. `docs` holds their rooms as read, if read."""
        if not claimed:
            return
        for c in claimed:
            self._driving[c.match_id] = c
        members = [(t.app_id, t.room_id) for c in claimed for t in c.group.members]
        after = self.pools.batch()  # index removals, sent with the retires
        try:
            if docs is None or any(room_id not in docs for _, room_id in members):
                read = await self.rooms.load_each(members)
                docs = {room_id: d for (_, room_id), d in zip(members, read, strict=True)}
            done, rest = await self._together(claimed, docs, after)
        except Exception:
            log.exception("batch apply failed; the records are finished after their lease")
            done, rest = [], []
        # (on cancellation the claims stay listed, for release_claims to hand them over)
        for c in claimed:
            self._driving.pop(c.match_id, None)
        alone = await asyncio.gather(*(self._alone(c) for c in rest))
        await self.pools.retire_many([*done, *(r for r in alone if r is not None)], batch=after)

    async def _together(
        self, claimed: Sequence[Claimed], docs: Docs, after: Batch
    ) -> tuple[list[Retirement], list[Claimed]]:
        """The plain case of many matches in two round trips: every target step, then every
        mover step. Returns the retirements, and the matches left to finish one by one."""
        limits = self.rooms.limits
        now = now_ms()
        done: list[Retirement] = []
        rest: list[Claimed] = []
        targets: list[tuple[Claimed, Write]] = []
        for n, c in enumerate(claimed):
            await breathe(n)
            target_doc = docs[c.group.target.room_id]
            if steps.matched(target_doc, c.match_id) is not None:
                rest.append(c)  # applied already: a record taken over
                continue
            group = steps.plan(c.group, docs, now, limits)
            if group is None or target_doc is None:
                done.append(steps.released(c, docs, now, limits))
                continue
            try:
                new = steps.seated(target_doc, group, docs, c.match_id, now, limits)
            except (steps.Closed, RoomsvcError):
                rest.append(c)
                continue
            targets.append((c, Write(target_doc, new, f"match:{c.match_id}")))
        outcomes = await self.rooms.write_many([w for _, w in targets], after)
        moves: list[tuple[Claimed, Ticket, Write]] = []
        seated: list[tuple[Claimed, set[str]]] = []
        for n, ((c, _), (outcome, current)) in enumerate(zip(targets, outcomes, strict=True)):
            await breathe(n)
            if outcome == CONFLICT or current is None:
                rest.append(c)
                continue
            players = steps.matched(current, c.match_id) or set()
            for t in c.group.movers:
                mover_doc = docs[t.room_id]
                if t.players[0] in players and mover_doc is not None:
                    merge = rooms.merge_into(mover_doc, c.group.target.room_id, now_ms=now)
                    moves.append((c, t, Write(mover_doc, merge, f"match:{c.match_id}")))
            seated.append((c, players))
        moved = await self.rooms.write_many([w for *_, w in moves], after)
        again = [(c, t) for (c, t, _), (o, _) in zip(moves, moved, strict=True) if o == CONFLICT]
        await asyncio.gather(
            *(steps.move(self.rooms, c.match_id, c.group.target, t) for c, t in again)
        )
        now = now_ms()
        done += [steps.finished(c, players, docs, now, limits) for c, players in seated]
        return done, rest

    async def _alone(self, claimed: Claimed) -> Retirement | None:
        """`steps.drive` for one match; None if it failed (its lease lapses, and any process
        finishes it) or this process drives it already."""
        if claimed.match_id in self._driving:
            return None  # this process already drives it (a takeover of its own slow record)
        self._driving[claimed.match_id] = claimed
        try:
            async with self._one_by_one:
                outcome: Retirement | None = await steps.drive(self.rooms, self.pools, claimed)
        except Exception:
            log.exception("match apply failed", extra={"match_id": claimed.match_id})
            outcome = None
        # (on cancellation the claim stays listed, for release_claims to hand it over)
        self._driving.pop(claimed.match_id, None)
        return outcome

    # ---- records of other processes, and shutdown --------------------------------------------

    async def recover(self, pool: str) -> int:
        """Finish the records of this pool whose lease lapsed (docs/spec.md §12 item 3)."""
        now = now_ms()
        taken = []
        for match_id in await self.pools.lapsed(pool, now):
            claimed = await self.pools.takeover(pool, match_id, now)
            # (a slow record of this process's own is taken over too, which renews its lease,
            # and left to the task that drives it)
            if claimed is not None and match_id not in self._driving:
                log.info(
                    "match taken over",
                    extra={"match_id": match_id, "claimed_ms_ago": now - claimed.claimed_ms},
                )
                taken.append(claimed)
        await self.apply(taken)
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

    # ---- waitEstimateSeconds ------------------------------------------------------------------

    async def _refresh_estimate(self, pool: str, now: int) -> None:
        waits = await self.pools.recent_waits(pool)
        self._estimates[pool] = (now, round(statistics.median(waits) / 1000) if waits else None)

    def wait_estimate(self, app_id: str, variant: int | None) -> int | None:
        """The median of the pool's last 100 waits, in seconds; None before any match."""
        return self._estimates.get(keys.pool_id(app_id, variant), (0, None))[1]
