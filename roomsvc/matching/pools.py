"""Auto-match pools and match records in Redis (docs/spec.md §5; docs/design.md "claim, apply
idempotently, retire"). Every key of one pool shares the `{mp:<app>:<variant>}` tag
(store/keys.py), so each step below is one script in one slot:

- enqueue (`ticket_put.lua`; `ticket_remove.lua` takes tickets out): a room with criteria adds
  its ticket *before* its room is written (docs/design.md: add
  to an index before, verify on read), so a crash in between leaves at worst a ticket whose room
  never appeared, which the matcher drops once it has been queued for `CREATE_GRACE_MS`;
- window (`match_window.lua`): under a short per-pool lock, read the oldest tickets for the
  pure policy (roomsvc/matching/policy.py); tickets past their own deadline (fixed in the room when
  the ticket opened, so every process agrees whatever its settings) are dropped instead;
- claim (`match_claim.lua`): move each group's tickets out of the pool into a match record with
  a lease, only if all of them are still there; a ticket is thus in at most one record, ever
  (queued on the round's batch, which also reads the rooms, store/batching.py);
- the apply steps run against the rooms (roomsvc/matching/rounds.py); `progress` notes a slow one
  and renews the lease;
- retire (`match_retire.lua`): delete the record, putting back the tickets it releases, once
  (a round's records of one pool in one call);
- takeover (`match_takeover.lua`): a record whose lease lapsed is re-leased by another process,
  which drives it on from where it stands.

`rs:pools` lists the pools that may hold work, a hint in another slot: added after the ticket,
dropped only after a check that finds the pool empty (and re-added if the check races an
enqueue), so a pool with tickets is never missing from it for long.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Sequence
from typing import Any

import msgspec

from roomsvc.common.clock import now_ms
from roomsvc.matching.policy import Group, Ticket
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import PStatus, RoomDoc
from roomsvc.store import keys
from roomsvc.store.batching import Batch, CommandBatcher
from roomsvc.store.scripts import Script, script

LEASE_MS = 5_000  # a match record is finished by another process this long after a crash
LOCK_MS = 2_000  # the per-pool read-and-claim lock (released by the claim)
WINDOW = 2_000  # tickets the policy sees per pool per round, oldest first
CREATE_GRACE_MS = 10_000  # a ticket whose room is missing for longer was never created
POOLS_REFRESH_MS = 20  # `active` reads the pool list again at most this often

_WINDOW = script("match_window")
_CLAIM = script("match_claim")
_TAKEOVER = script("match_takeover")
_PROGRESS = script("match_progress")
_RETIRE = script("match_retire")
_TICKET_PUT = script("ticket_put")
_TICKET_REMOVE = script("ticket_remove")

_ticket_encode = msgspec.msgpack.Encoder().encode
_ticket_decode = msgspec.msgpack.Decoder(Ticket).decode
_group_decode = msgspec.msgpack.Decoder(Group).decode
_group_encode = msgspec.msgpack.Encoder().encode


def ticket_of(doc: RoomDoc, queued_ms: int = 0) -> Ticket | None:
    """The pool ticket of a room with criteria (docs/spec.md §5), or None."""
    if doc.criteria is None:
        return None
    players = tuple(
        p.player_id for p in doc.participants if p.status in (PStatus.JOINED, PStatus.INVITED)
    )
    return Ticket(
        room_id=doc.room_id,
        app_id=doc.app_id,
        variant=doc.variant,
        since_ms=doc.ticket_since_ms,
        min_players=doc.criteria.min_players,
        max_players=doc.criteria.max_players,
        bitmask=doc.criteria.bitmask,
        players=players,
        host=not rooms.is_seeker(doc),
        deadline_ms=doc.ticket_deadline_ms,
        queued_ms=queued_ms,
    )


def pool_of(ticket: Ticket) -> str:
    return keys.pool_id(ticket.app_id, ticket.variant)


class Claimed(msgspec.Struct):
    """A match record as its driver sees it."""

    pool: str
    match_id: str
    group: Group
    step: int = 0  # 1 once the target room has been applied
    claimed_ms: int = 0


class Retirement(msgspec.Struct):
    """How a record ends: the tickets it puts back in the pool, the waits it reports."""

    claimed: Claimed
    release: list[Ticket]
    waits_ms: list[int]


class _Claiming(msgspec.Struct):
    """A claim queued on a batch: the candidate records and where the script's reply is."""

    candidates: list[Claimed]
    reply_at: int

    def claimed(self, replies: Sequence[Any]) -> list[Claimed]:
        outcome = replies[self.reply_at]
        return [c for c, ok in zip(self.candidates, outcome, strict=True) if int(ok) == 1]


class PoolStore:
    def __init__(self, store: Any, owner: str | None = None, lease_ms: int = LEASE_MS) -> None:
        self.store = store
        self.owner = owner or uuid.uuid4().hex
        self.lease_ms = lease_ms
        self.commands = CommandBatcher(store)
        self._active: tuple[int, list[str]] = (0, [])  # (read at, the pools then)

    def batch(self) -> Batch:
        """A batch on this store's connection, for a round to queue its steps on."""
        return Batch(self.store)

    async def _call(self, script: Script, keys: list[Any], args: list[Any]) -> Any:
        batch = Batch(self.store)
        at = batch.script(script, keys, args)
        return (await batch.run())[at]

    # ---- tickets --------------------------------------------------------------------------

    def ticket_commands(
        self, doc: RoomDoc, on: CommandBatcher | None = None
    ) -> list[tuple[Any, ...]]:
        """The commands that put the room's ticket in its pool, the ticket first and then the
        POOLS hint, as commands of `on` (this store's batcher by default): none when the room
        seeks no one. `RoomStore.create` queues them ahead of the room's own write, in its
        round trip on a plain server (see module doc: the ticket before the room)."""
        ticket = ticket_of(doc, queued_ms=now_ms())
        if ticket is None or not doc.ticket_open:
            return []
        pool = pool_of(ticket)
        put = (on or self.commands).script_command(
            _TICKET_PUT,
            [keys.pool_tickets(pool), keys.pool_ticket_data(pool)],
            [ticket.room_id, _ticket_encode(ticket), ticket.since_ms],
        )
        return [put, ("SADD", keys.POOLS, pool)]

    async def enqueue(self, doc: RoomDoc) -> None:
        """Put the room's ticket in its pool on its own, without the room's write (a create
        queues `ticket_commands` ahead of its room instead): for tools that seed pools."""
        await asyncio.gather(*self.commands.execute_together(self.ticket_commands(doc)))

    async def withdraw(self, doc: RoomDoc) -> None:
        """Remove a closed ticket still waiting in its pool (after a leave: a hint only)."""
        ticket = ticket_of(doc)
        if ticket is not None:
            await self._remove(pool_of(ticket), [ticket.room_id])

    async def _remove(self, pool: str, room_ids: Sequence[str]) -> None:
        await self.commands.call(
            _TICKET_REMOVE,
            keys=[keys.pool_tickets(pool), keys.pool_ticket_data(pool)],
            args=list(room_ids),
        )

    async def pools(self) -> list[str]:
        return sorted(m.decode() for m in await self.commands.execute("SMEMBERS", keys.POOLS))

    async def active(self, now: int) -> list[str]:
        """`pools`, read again at most every POOLS_REFRESH_MS: rounds come every few
        milliseconds under load, and a new pool may wait that long for its first round."""
        read_at, pools = self._active
        if now - read_at >= POOLS_REFRESH_MS:
            pools = await self.pools()
            self._active = (now, pools)
        return pools

    async def window(self, pool: str) -> list[Ticket] | None:
        """The oldest tickets of the pool, or None while another process is claiming from it."""
        raw = await self._call(
            _WINDOW,
            [keys.pool_tickets(pool), keys.pool_ticket_data(pool), keys.pool_lock(pool)],
            [self.owner, LOCK_MS, WINDOW],
        )
        if raw is None:
            return None
        return [_ticket_decode(blob) for blob in raw if blob is not None]

    async def drop(self, pool: str, tickets: Sequence[Ticket]) -> None:
        """Remove timed-out tickets (the timeout wheel ends their rooms, docs/spec.md §4)."""
        ids = [t.room_id for t in tickets]
        if ids:
            await self._remove(pool, ids)

    def queue_claim(self, batch: Batch, pool: str, groups: Sequence[Group], now: int) -> _Claiming:
        """Queue the claim of each group whose tickets are all still in the pool on `batch`
        (the caller may add reads after it); the claim releases the pool lock."""
        record_keys: list[str] = []
        args: list[Any] = [self.owner, now + self.lease_ms, now]
        candidates: list[Claimed] = []
        for group in groups:
            match_id = uuid.uuid4().hex
            members = group.members
            record_keys.append(keys.pool_match(pool, match_id))
            args += [match_id, _group_encode(group), len(members)]
            args += [t.room_id for t in members]
            candidates.append(Claimed(pool, match_id, group, 0, now))
        claim_keys = [
            keys.pool_tickets(pool),
            keys.pool_ticket_data(pool),
            keys.pool_matches(pool),
            keys.pool_lock(pool),
            *record_keys,
        ]
        return _Claiming(candidates, batch.script(_CLAIM, claim_keys, args))

    # ---- match records ----------------------------------------------------------------------

    async def lapsed(self, pool: str, now: int, limit: int = 100) -> list[str]:
        """Match ids whose lease has lapsed (their owner died or stalled)."""
        ids = await self.commands.execute(
            "ZRANGE", keys.pool_matches(pool), "-inf", now, "BYSCORE", "LIMIT", 0, limit
        )
        return [m.decode() for m in ids]

    async def takeover(self, pool: str, match_id: str, now: int) -> Claimed | None:
        reply = await self._call(
            _TAKEOVER,
            [keys.pool_matches(pool), keys.pool_match(pool, match_id)],
            [match_id, now, now + self.lease_ms, self.owner],
        )
        if not reply or reply[0] is None:
            return None
        group = _group_decode(reply[0])
        return Claimed(pool, match_id, group, int(reply[1] or 0), int(reply[2] or 0))

    async def lapse(self, claimed: Claimed) -> None:
        """End this process's lease on a record now, so any process takes it over."""
        await self.store.zadd(keys.pool_matches(claimed.pool), {claimed.match_id: 0}, xx=True)

    async def progress(self, claimed: Claimed, step: int, now: int) -> None:
        pool = claimed.pool
        await self._call(
            _PROGRESS,
            [keys.pool_matches(pool), keys.pool_match(pool, claimed.match_id)],
            [claimed.match_id, step, now + self.lease_ms],
        )

    async def retire_many(
        self, retirements: Sequence[Retirement], batch: Batch | None = None
    ) -> list[bool]:
        """Delete each record, putting back the tickets it releases, unless it was retired
        already (False): one script call per pool, one round trip in all (with whatever
        `batch` already holds, sent before the retires)."""
        batch = batch if batch is not None else Batch(self.store)
        by_pool: dict[str, list[int]] = {}
        for n, r in enumerate(retirements):
            by_pool.setdefault(r.claimed.pool, []).append(n)
        calls: list[tuple[list[int], int]] = []
        for pool, members in by_pool.items():
            record_keys = [
                keys.pool_tickets(pool),
                keys.pool_ticket_data(pool),
                keys.pool_matches(pool),
                keys.pool_waits(pool),
            ]
            args: list[Any] = []
            for n in members:
                r = retirements[n]
                record_keys.append(keys.pool_match(pool, r.claimed.match_id))
                args += [r.claimed.match_id, len(r.release)]
                for t in r.release:
                    args += [t.room_id, t.since_ms, _ticket_encode(t)]
                args.append(len(r.waits_ms))
                args += [max(0, int(w)) for w in r.waits_ms]
            calls.append((members, batch.script(_RETIRE, record_keys, args)))
        replies = await batch.run()
        done = [False] * len(retirements)
        for members, at in calls:
            for n, outcome in zip(members, replies[at], strict=True):
                done[n] = int(outcome) == 1
        return done

    # ---- pool bookkeeping -------------------------------------------------------------------

    async def deactivate_if_empty(self, pool: str) -> None:
        """Drop an empty pool from `rs:pools`; re-add it if an enqueue raced the check."""
        if await self._pending(pool):
            return
        await self.store.srem(keys.POOLS, pool)
        if await self._pending(pool):
            await self.store.sadd(keys.POOLS, pool)

    async def _pending(self, pool: str) -> int:
        async with self.store.pipeline(transaction=False) as pipe:
            pipe.zcard(keys.pool_tickets(pool))
            pipe.zcard(keys.pool_matches(pool))
            tickets, matches = await pipe.execute()
        return int(tickets) + int(matches)

    async def recent_waits(self, pool: str) -> list[int]:
        return [int(w) for w in await self.commands.execute("LRANGE", keys.pool_waits(pool), 0, 99)]
