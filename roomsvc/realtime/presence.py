"""Presence (docs/spec.md §6): a JOINED player whose realtime connections are all gone for longer
than the grace period leaves its rooms with leaveReason PRESENCE_FAILURE, also when the process that
held them is killed.

The state lives in Redis, never in one process: each connected player has a deadline in a
sharded sorted set (store/keys.py), pushed forward every `interval` by every process that
holds one of its connections (heartbeat.py: the store moves them all, the process only sends
who arrived and who went away), and at once when a connection opens. The deadline is
`now + grace + interval`: when a process dies its players' deadlines stop moving, and their
seats are released between `grace` and `grace + interval` after (plus one sweep), never
earlier. When a player's last connection to a live process closes, `gone` sets its deadline
to `grace` after the close (a process that still holds it moves it again within an interval,
well inside the grace), so the common drop is released a grace after it.

Every process sweeps every shard with the claim/lease pattern of docs/design.md (store/claims.py):
claim due members (their score moves one lease ahead), apply `rooms.presence_failure` to each
JOINED room with compare-and-set, then retire the members unless a reconnect refreshed them
meanwhile. The transition only applies to a JOINED participant,
so a claim replayed after a crash, or taken by two processes, releases nothing twice.

What keeps the release time independent of the number of players (a busy event loop makes
every sequential await cost a whole lap of it):
- refreshing and sweeping are two loops, so a long sweep never delays a refresh (a late
  refresh would let another process release a connected player);
- a sweep is a fixed number of round trips whatever it finds: the shards claimed at once,
  the rooms of every lapsed player read in one pipeline, the seats released concurrently (at
  most RELEASES_AT_ONCE in flight, well inside the store's pool), the claims retired at once;
- each claim also answers the shard's earliest deadline. Scores only move later (a refresh,
  a lease) and a new one is at least `deadline(now)`, so nothing in a shard lapses before
  that: the sweeper sleeps until the earliest one (at most `interval`) and then claims only
  the shards that are due, all of them every FULL_SWEEP_INTERVALS intervals (another
  process's clock may run a little behind, and its `gone` writes move scores earlier: that
  process's own sweeper knows of them). A lapsed deadline is swept when it lapses, and an
  idle sweep costs the store nothing.

A stall is not a lapse (docs/spec.md §12 item 16; docs/store.md "Presence through a stall"): while
no process can write a refresh, deadlines pass for want of one. Every beat reaches every shard and
stamps its clock with the store's own time; a claim or beat that finds the clock silent for longer
than `silence_ms` holds every claim of the shard for `hold_ms` (a grace and an interval), in which
every live process beats again. A player whose socket closed meanwhile is released after the hold,
once.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from collections.abc import Set as AbstractSet
from typing import Any

from roomsvc.common import logs
from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.common.clock import now_ms
from roomsvc.common.errors import NotFound
from roomsvc.realtime.heartbeat import Heartbeat
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import RoomDoc
from roomsvc.rooms.store import RoomStore
from roomsvc.store.claims import Claims, Hold
from roomsvc.store.connection import UNAVAILABLE_ERRORS
from roomsvc.store.keys import (
    PRESENCE_SHARDS,
    presence_clock,
    presence_member,
    presence_shard,
    presence_shard_of,
)

log = logging.getLogger("roomsvc.presence")
LEASE_MS = 10_000
BATCH = 200
RELEASES_AT_ONCE = 32
_ZADD_CHUNK = 1000
FULL_SWEEP_INTERVALS = 8
CLAIM_DEADLINE_S = 1.0
_MIN_PAUSE_S = 0.02
SHARDS = tuple(presence_shard(n) for n in range(PRESENCE_SHARDS))


def refresh_interval_s(grace_seconds: int) -> float:
    """How often deadlines move (and the longest a sweeper sleeps): well inside the grace."""
    return min(5.0, max(0.2, grace_seconds / 4))


class Presence:
    def __init__(self, room_store: RoomStore, grace_seconds: int) -> None:
        self.rooms = room_store
        self.interval_s = refresh_interval_s(grace_seconds)
        self.grace_ms = grace_seconds * 1000
        interval_ms = int(self.interval_s * 1000)
        # A stall (docs/store.md "Presence through a stall"): no heartbeat for `silence_ms` by
        # the store's clock holds every claim for `hold_ms`, a grace and an interval from when
        # it is noticed. Short enough that a stall it misses cannot lapse a live deadline
        # (those are a grace and an interval ahead of a beat, and live processes beat within
        # an interval of recovery), long enough that a late beat is not taken for a stall.
        self.silence_ms = self.grace_ms - 2 * interval_ms
        self.hold_ms = self.grace_ms + interval_ms
        self.heartbeat = Heartbeat(room_store.commands, interval_ms, self.silence_ms)
        self.claims = Claims(room_store.commands, LEASE_MS)
        # Per shard, the time (ms) before which nothing in it can lapse, learnt by claiming it;
        # and when every shard is claimed again whatever it said.
        self._due: dict[str, int] = {}
        self._full_sweep_at = 0
        self._gone: dict[tuple[str, str], int] = {}  # players whose last connection closed, when
        self._gone_event = asyncio.Event()

    def deadline(self, now: int) -> int:
        return now + self.grace_ms + int(self.interval_s * 1000)

    async def refresh(self, players: AbstractSet[tuple[str, str]], now: int) -> None:
        """The heartbeat: every player connected here (and only they) gets `deadline(now)`."""
        await self.heartbeat.beat(players, self.deadline(now))

    async def touch(self, players: Iterable[tuple[str, str]], now: int) -> None:
        """Push the deadline of these (app, player) forward now: a new connection, or a late
        refresh found by a sweep."""
        by_shard: dict[str, dict[str, int]] = {}
        deadline = self.deadline(now)
        for app, player in players:
            member = presence_member(app, player)
            by_shard.setdefault(presence_shard_of(member), {})[member] = deadline
        # Through the batcher: a connection's touch shares a round trip with the other
        # commands of the same loop turn (docs/performance.md "Joins").
        await self._zadd(by_shard)

    async def _zadd(self, by_shard: dict[str, dict[str, int]], *flags: str) -> None:
        """Set these scores (shard -> member -> deadline), in chunks, through the batcher."""
        writes = []
        for shard, mapping in by_shard.items():
            items = list(mapping.items())
            for start in range(0, len(items), _ZADD_CHUNK):
                args = [str(x) for member, score in items[start : start + _ZADD_CHUNK]
                        for x in (score, member)]  # fmt: skip
                writes.append(self.rooms.commands.execute("ZADD", shard, *flags, *args))
        for write in writes:
            await write

    def gone(self, app: str, player: str, now: int | None = None) -> None:
        """The player's last connection here closed (for Hub.unregister; sync, no I/O): its
        deadline becomes `grace` after now (`forget`), so a dropped player is released a grace
        after the drop rather than up to an interval later. A process still holding it moves
        it forward again at its next beat, well within the grace."""
        self._gone[(app, player)] = now_ms() if now is None else now
        self._gone_event.set()

    async def forget(self, is_local: Callable[[str, str], bool]) -> None:
        """Write the deadlines of the players `gone` since the last call (XX: only a deadline
        that exists; a player back here meanwhile is left alone), and tell the sweeper: these
        scores moved earlier, unlike every other write."""
        pending, self._gone = self._gone, {}
        self._gone_event.clear()
        # A write later than an interval after the close could land after the player came
        # back elsewhere and lower a deadline that process then moves only at its next beat:
        # only a prompt one is safe (a reconnect's next beat is within two intervals of the
        # close, half the grace). A late one is dropped: the grace counts from the last beat.
        fresh = now_ms() - int(self.interval_s * 1000)
        by_shard: dict[str, dict[str, int]] = {}
        for (app, player), at in pending.items():
            if at >= fresh and not is_local(app, player):
                member = presence_member(app, player)
                by_shard.setdefault(presence_shard_of(member), {})[member] = at + self.grace_ms
        if not by_shard:
            return
        await self._zadd(by_shard, "XX")
        for shard, mapping in by_shard.items():
            earliest = min(mapping.values())
            self._due[shard] = min(self._due.get(shard, earliest), earliest)

    async def sweep_once(self, now: int, is_local: Callable[[str, str], bool]) -> int:
        """Claim every lapsed deadline and release its seats; returns the seats released."""
        shards = self._shards_to_claim(now)
        # Bounded: against a stalled store the sweep ends and is tried again an interval later
        # rather than waiting out redis-py's retries (a claim that timed out may still run
        # when the store wakes; its members' lease lapses and they are claimed again).
        async with asyncio.timeout(CLAIM_DEADLINE_S):
            claims = await asyncio.gather(
                *(self.claims.claim(shard, now, BATCH, self._hold(shard)) for shard in shards)
            )
        # Scores only ever move later (a refresh, a lease) and a new member's deadline is at
        # least `deadline(now)`: until a shard's earliest score, nothing in it can lapse.
        for shard, claim in zip(shards, claims, strict=True):
            earliest = claim.earliest
            self._due[shard] = now if len(claim.members) >= BATCH else (
                earliest if earliest >= 0 else self.deadline(now))  # fmt: skip
        local: list[tuple[str, str]] = []
        lapsed: list[tuple[str, str, str]] = []  # (shard, app, player)
        for shard, claim in zip(shards, claims, strict=True):
            for member in claim.members:
                app, _, player = member.partition(":")
                if is_local(app, player):
                    local.append((app, player))
                else:
                    lapsed.append((shard, app, player))
        if local:  # connected here: our refresh was merely late
            await self.touch(local, now)
        if not lapsed:
            return 0
        room_ids = await self.rooms.indexes.rooms_of([(app, player) for _, app, player in lapsed])
        gate = asyncio.Semaphore(RELEASES_AT_ONCE)
        outcomes = await asyncio.gather(
            *(self._release(app, player, ids, gate)
              for (_, app, player), ids in zip(lapsed, room_ids, strict=True)),
            return_exceptions=True,
        )  # fmt: skip
        released = 0
        retire: dict[str, list[tuple[str, None]]] = {}
        for (shard, app, player), outcome in zip(lapsed, outcomes, strict=True):
            if isinstance(outcome, BaseException):
                raise_if_cancelled()
                log.error("presence release failed; retried after the lease",
                          exc_info=outcome, extra={"player_id": player})  # fmt: skip
                continue
            released += outcome
            retire.setdefault(shard, []).append((presence_member(app, player), None))
        lease_until = now + LEASE_MS
        await asyncio.gather(*(self.claims.retire(s, lease_until, m) for s, m in retire.items()))
        return released

    def _hold(self, shard: str) -> Hold:
        return Hold(presence_clock(shard), self.silence_ms, self.hold_ms)

    def _shards_to_claim(self, now: int) -> list[str]:
        """The shards where something may have lapsed by `now`, and every shard now and then:
        other processes' clocks may run a little behind ours."""
        if now >= self._full_sweep_at:
            self._full_sweep_at = now + FULL_SWEEP_INTERVALS * int(self.interval_s * 1000)
            return list(SHARDS)
        return [shard for shard in SHARDS if self._due.get(shard, now) <= now]

    @property
    def next_due(self) -> int:
        """When the next sweep has something to claim (ms), as far as the last sweeps saw."""
        return min((self._due.get(shard, 0) for shard in SHARDS), default=0)

    def pause_s(self, now: int) -> float:
        """How long the sweeper sleeps after a sweep at `now`: until the earliest deadline it
        saw, at most one interval, and a little at least so that a burst shares a sweep."""
        wait = min(self.interval_s, (self.next_due - now + 1) / 1000)
        return max(_MIN_PAUSE_S, wait)

    async def release(self, app: str, player: str) -> int:
        """PRESENCE_FAILURE in every room where the player is still JOINED."""
        (room_ids,) = await self.rooms.indexes.rooms_of([(app, player)])
        return await self._release(app, player, room_ids, asyncio.Semaphore(RELEASES_AT_ONCE))

    async def _release(
        self, app: str, player: str, room_ids: list[str], gate: asyncio.Semaphore
    ) -> int:
        limits = self.rooms.limits

        def change(doc: RoomDoc) -> RoomDoc | None:
            if not rooms.is_live(doc, player):
                return None  # left meanwhile, or released by an earlier claim: nothing twice
            return rooms.presence_failure(doc, player, now_ms=now_ms(), limits=limits)

        async def one(room_id: str) -> int:
            async with gate:
                try:
                    applied = await self.rooms.mutate(
                        app, room_id, change, request_id=f"presence:{uuid.uuid4().hex}"
                    )
                except NotFound:
                    return 0
            return int(applied.changed)

        return sum(await asyncio.gather(*(one(room_id) for room_id in room_ids)))


async def run(presence: Presence, hub: Any) -> None:
    """The presence duty: refresh this process's players, write the deadlines of those gone,
    and sweep; forever, side by side."""
    async with asyncio.TaskGroup() as group:
        group.create_task(refresh_forever(presence, hub))
        group.create_task(forget_forever(presence, hub))
        group.create_task(sweep_forever(presence, hub))


async def forget_forever(presence: Presence, hub: Any) -> None:
    while True:
        raise_if_cancelled()
        await presence._gone_event.wait()
        await asyncio.sleep(_MIN_PAUSE_S)  # a burst of closes shares one pipeline
        try:
            await presence.forget(hub.is_local)
        except UNAVAILABLE_ERRORS:
            logs.outage_warning(
                log, "presence-forget",
                "presence: store unavailable; the grace counts from the last beat",
            )  # fmt: skip


async def refresh_forever(presence: Presence, hub: Any) -> None:
    loop = asyncio.get_running_loop()
    while True:
        raise_if_cancelled()
        started = loop.time()
        try:
            await presence.refresh(hub.present_players(), now_ms())
        except UNAVAILABLE_ERRORS:
            logs.outage_warning(log, "presence-refresh", "presence: store unavailable; retrying")
        # At a fixed rate: a slow round trip eats into the pause, not into the grace.
        await asyncio.sleep(max(0.0, presence.interval_s - (loop.time() - started)))


async def sweep_forever(presence: Presence, hub: Any) -> None:
    while True:
        raise_if_cancelled()
        try:
            await presence.sweep_once(now_ms(), hub.is_local)
            pause = presence.pause_s(now_ms())
        except UNAVAILABLE_ERRORS:
            logs.outage_warning(log, "presence-sweep", "presence: store unavailable; retrying")
            pause = presence.interval_s
        await asyncio.sleep(pause)
