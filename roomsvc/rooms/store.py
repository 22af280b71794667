"""Rooms in Redis: each change one compare-and-set script on the room's own slot (docs/spec.md §4).

`mutate` reads the room (from a small per-process cache when it can), lets the pure core
compute the next document, and writes it with `room_cas.lua`, which checks the version,
records the request id and publishes, all at once. On a version conflict it recomputes from
the document the script returned (no extra read), a bounded number of times. Within one process
a per-room lock serializes callers, so conflicts only arise between processes.

`write_many` is the same compare-and-set for many rooms at once, for the matcher's rounds
(docs/spec.md §5, §11): every write queued on one batch (store/batching.py), the per-player index
additions before the writes in the same round trip and the removals after them. Both go through
`cas_call` and `_outcome`: one place decides TTLs and who is told, one decodes the reply.

Request ids make every write idempotent: redis-py's retry of a script whose reply was lost
finds its id in the applied set and reports "already applied" (docs/design.md "Retries never
double-apply"). Per-player indexes follow docs/design.md: add before the write, remove after.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from roomsvc.common.errors import N_, Conflict, NotFound, RoomsvcError
from roomsvc.common.metrics import ROOM_TRANSITIONS
from roomsvc.rooms.indexes import PlayerIndexes
from roomsvc.rooms.rules import Limits, PStatus, RoomDoc, RoomState, next_deadline, room_status
from roomsvc.store import keys
from roomsvc.store.batching import Batch, CommandBatcher
from roomsvc.store.scripts import script

log = logging.getLogger("roomsvc.rooms")
# One counter child per status, looked up once: `labels()` takes a lock and builds its key on
# every call, and every accepted write counts its room's new status.
_ENTERED = {state: ROOM_TRANSITIONS.labels(state.value) for state in RoomState}
_encode = msgspec.msgpack.Encoder().encode


def _warn_if_failed(first: asyncio.Future[Any]) -> None:
    """A command queued ahead of a write failed: logged, and the write's outcome stands (a
    failed batch fails the write too). A missing hint is what "verify on read" cannot repair,
    so it is loud."""
    if not first.cancelled() and isinstance(failed := first.exception(), Exception):
        log.warning("index, timer or ticket update failed", exc_info=failed)


_decode = msgspec.msgpack.Decoder(RoomDoc).decode
_MAX_ATTEMPTS = 64
_CACHE_SIZE = 4096
LIVE_ROOM_TTL_MS = 7 * 86_400_000  # a room idle this long expires (README: rooms)
CREATE_REQUEST_TTL_S = 86_400  # a create's requestId names the same room for 24 h
_CAS = script("room_cas")
_CREATE_REQUEST = script("create_request")
# What room_cas.lua answers: the write applied; the room had another version (the current
# document comes back); this request id was applied already (the room as it is comes back).
CONFLICT, APPLIED, REPLAYED = 0, 1, 2
BREATHE_EVERY = 64  # writes of a batch prepared between two turns of the event loop


async def breathe(n: int) -> None:
    """Let the event loop run once every BREATHE_EVERY items: the matcher shares its loop with
    a web process's requests, which must not wait out a whole round's CPU (docs/spec.md §11)."""
    if n % BREATHE_EVERY == BREATHE_EVERY - 1:
        await asyncio.sleep(0)


class Applied(msgspec.Struct):
    """The outcome of a write: the room after it, and whether this call changed it."""

    room: RoomDoc
    changed: bool


class Write(msgspec.Struct):
    """One write of `write_many`: `new` over `old` (whose version it expects)."""

    old: RoomDoc
    new: RoomDoc
    request_id: str


class RoomStore:
    def __init__(self, store: Any, limits: Limits, tombstone_ms: int) -> None:
        self.store = store
        self.limits = limits
        self.tombstone_ms = tombstone_ms
        # Every command of the mutation path shares round trips with its neighbours'
        # (store/batching.py): the process, not the store, is the ceiling (docs/spec.md §11).
        self.commands = CommandBatcher(store)
        self._locks: weakref.WeakValueDictionary[str, asyncio.Lock] = weakref.WeakValueDictionary()
        self._cache: collections.OrderedDict[str, RoomDoc] = collections.OrderedDict()
        self.indexes = PlayerIndexes(self.commands)  # read by the services; written here

    # ---- reading ------------------------------------------------------------------------------

    async def load(self, app: str, room_id: str, *, fresh: bool = False) -> RoomDoc | None:
        key = keys.room(app, room_id)
        if not fresh and key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        raw = await self.commands.execute("HGET", key, "d")
        if raw is None:
            self._cache.pop(key, None)
            return None
        doc = _decode(raw)
        self._remember(key, doc)
        return doc

    async def claim_create_request(
        self, app: str, player: str, request_id: str, room_id: str
    ) -> str | None:
        """Tie a create's client requestId to `room_id` for a day (docs/spec.md §4: a create
        retried with the same requestId is the same room); the room it is already tied to, or
        None when this call tied it."""
        # One round trip, on the command batcher. A resend after a lost reply finds
        # `room_id` itself, which the caller then creates.
        existing = await self.commands.call(
            _CREATE_REQUEST,
            keys=[keys.create_request(app, player, request_id)],
            args=[room_id, CREATE_REQUEST_TTL_S],
        )
        return existing.decode() if existing is not None else None

    def cached(self, app: str, room_id: str) -> RoomDoc | None:
        """The newest document of the room this process read or wrote, without a round trip."""
        return self._cache.get(keys.room(app, room_id))

    async def load_many(self, app: str, room_ids: Sequence[str]) -> list[RoomDoc | None]:
        return await self.load_each([(app, room_id) for room_id in room_ids])

    async def load_each(self, rooms: Sequence[tuple[str, str]]) -> list[RoomDoc | None]:
        """(app, roomId) pairs -> their current documents, in one round trip."""
        if not rooms:
            return []
        raws = [self.commands.execute("HGET", keys.room(app, r), "d") for app, r in rooms]
        return decoded(await asyncio.gather(*raws))

    @staticmethod
    def queue_loads(batch: Batch, rooms: Sequence[tuple[str, str]]) -> list[int]:
        """Queue the reads of these rooms on `batch`; `decoded` turns the replies into docs."""
        return [batch.command("HGET", keys.room(app, room_id), "d") for app, room_id in rooms]

    def adopt(self, raw: bytes) -> RoomDoc:
        """A document another script returned (a refused check): decoded and cached, so the
        next caller starts from it rather than from the stale copy."""
        doc = _decode(raw)
        self._remember(keys.room(doc.app_id, doc.room_id), doc)
        return doc

    def _remember(self, key: str, doc: RoomDoc) -> None:
        cached = self._cache.get(key)
        if cached is not None and cached.version > doc.version:
            return
        self._cache[key] = doc
        self._cache.move_to_end(key)
        if len(self._cache) > _CACHE_SIZE:
            self._cache.popitem(last=False)

    # ---- writing ------------------------------------------------------------------------------

    def _lock(self, key: str) -> asyncio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = asyncio.Lock()
            self._locks[key] = lock
        return lock

    async def create(
        self, doc: RoomDoc, request_id: str, first: Sequence[tuple[Any, ...]] = ()
    ) -> Applied:
        """Write a new room (version 1); a replay of the same request returns the room.
        `first`: commands of `self.commands` that must reach the store before the room does
        (its auto-match ticket, `PoolStore.ticket_commands`), sent as `_write` sends its own."""
        timer = ("ZADD", keys.timer_shard_of(doc.app_id, doc.room_id),
                 next_deadline(doc, self.limits) or 0, f"{doc.app_id}/{doc.room_id}")  # fmt: skip
        status = room_status(doc)
        adds = self.index_changes(None, doc, (None, status))[0]
        before = [*first, timer, *self._index_additions(doc, adds)]
        outcome, current = await self._write(
            doc, expected=0, request_id=request_id, status=status, before=before
        )
        if outcome == APPLIED:
            _ENTERED[status].inc()
            return Applied(doc, True)
        if current is None:
            raise Conflict(N_("The room {room_id} already exists."), room_id=doc.room_id)
        return Applied(current, False)

    async def mutate(
        self,
        app: str,
        room_id: str,
        change: Callable[[RoomDoc], RoomDoc | None],
        request_id: str,
    ) -> Applied:
        """Apply `change` (a pure transition; None = nothing to do) with compare-and-set.

        The room's writer lock is held for one round trip per attempt: the index additions
        and the write go out together, additions first (docs/store.md "Per-player indexes").
        The removals are queued once the lock is released, so the next change of a busy room
        (three invitees joining at once) does not wait for them; queued before that change's
        own commands, they still reach the store first."""
        applied, removal = await self._apply(app, room_id, change, request_id)
        if removal is not None:
            # Index removals are hints verified on read (docs/design.md "Rooms"): a failed one
            # is logged, never reported. Awaited all the same, so no store work outlives the
            # call (a shutdown closes the store right after).
            await self._index_remove(*removal)
        return applied

    async def _apply(
        self, app: str, room_id: str, change: Callable[[RoomDoc], RoomDoc | None], request_id: str
    ) -> tuple[Applied, tuple[RoomDoc, list[str]] | None]:
        key = keys.room(app, room_id)
        async with self._lock(key):
            # Only the CAS proves a cached document current: another process may have changed
            # the room since. A refusal or a no-op computed from the cache is therefore
            # confirmed on a fresh read before it is reported.
            confirmed = key not in self._cache
            doc = await self.load(app, room_id)
            for attempt in range(_MAX_ATTEMPTS):
                if doc is None:
                    raise NotFound(N_("Room {room_id} not found."), room_id=room_id)
                try:
                    new = change(doc)
                except RoomsvcError:
                    if confirmed:
                        # A replay of a request already applied is refused by the rules on the
                        # room it produced: report that room, as the script would (docs/design.md).
                        replayed = await self._replayed(app, room_id, request_id)
                        if replayed is not None:
                            return Applied(replayed, False), None
                        raise
                    new = None
                if new is None:
                    if confirmed:
                        return Applied(doc, False), None
                    doc, confirmed = await self.load(app, room_id, fresh=True), True
                    continue
                # The statuses are computed once here and handed on: each is a pass over
                # every pair of participants, wanted by the indexes, the TTL and the metric.
                old_status, new_status = room_status(doc), room_status(new)
                adds, removes = self.index_changes(doc, new, (old_status, new_status))
                outcome, current = await self._write(
                    new, expected=doc.version, request_id=request_id, status=new_status,
                    before=self._index_additions(new, adds),
                )  # fmt: skip
                if outcome == APPLIED:
                    if new_status is not old_status:
                        _ENTERED[new_status].inc()
                    return Applied(new, True), ((new, removes) if removes else None)
                if outcome == REPLAYED and current is not None:
                    return Applied(current, False), None
                doc, confirmed = current, True
                if attempt > 2:
                    await asyncio.sleep(random.uniform(0, 0.002 * attempt))
        raise Conflict(N_("The room {room_id} is busy; retry."), room_id=room_id)

    async def _replayed(self, app: str, room_id: str, request_id: str) -> RoomDoc | None:
        """The room as it is now if `request_id` was already applied to it, else None."""
        if not request_id:
            return None
        score_f = self.commands.execute("ZSCORE", keys.room_applied(app, room_id), request_id)
        raw_f = self.commands.execute("HGET", keys.room(app, room_id), "d")
        score, raw = await score_f, await raw_f
        if score is None or raw is None:
            return None
        doc = _decode(raw)
        self._remember(keys.room(app, room_id), doc)
        return doc

    def cas_call(
        self, doc: RoomDoc, expected: int, request_id: str, status: RoomState | None = None
    ) -> tuple[list[str], list[Any]]:
        """KEYS and ARGV of `room_cas.lua` writing `doc` (whose status is `status`, computed
        here if not given) over version `expected`: the one place that decides TTLs and who
        is told."""
        deleted = (status or room_status(doc)) is RoomState.DELETED
        ttl = self.tombstone_ms if deleted else LIVE_ROOM_TTL_MS
        channels = [keys.player_channel(doc.app_id, p.player_id) for p in doc.participants]
        return (
            [keys.room(doc.app_id, doc.room_id), keys.room_applied(doc.app_id, doc.room_id)],
            [expected, doc.version, _encode(doc), request_id, ttl,
             f"{doc.room_id} {doc.version}", *channels],
        )  # fmt: skip

    def _outcome(self, doc: RoomDoc, reply: Any) -> tuple[int, RoomDoc | None]:
        """A `room_cas.lua` reply writing `doc`: (APPLIED, doc) | (REPLAYED | CONFLICT, the
        room as it is, None if it does not exist); the cache learns the room as it is."""
        key = keys.room(doc.app_id, doc.room_id)
        outcome = int(reply[0])
        if outcome == APPLIED:
            self._remember(key, doc)
            return APPLIED, doc
        current = _decode(reply[2]) if len(reply) > 2 and reply[2] is not None else None
        if current is not None:
            self._remember(key, current)
        else:
            self._cache.pop(key, None)
        return outcome, current

    async def _write(
        self, doc: RoomDoc, *, expected: int, request_id: str, status: RoomState | None = None,
        before: Sequence[tuple[Any, ...]] = (),
    ) -> tuple[int, RoomDoc | None]:  # fmt: skip
        """One compare-and-set. `before`: commands that must reach the store first (the index
        additions, a new room's timer and auto-match ticket; docs/store.md "Per-player
        indexes"). On a plain server they share the write's batch, ahead of it, so if the write
        ran, so did they; on a cluster they go to other nodes, in no order across them, so they
        are awaited first (a failure raises, and the write is not sent)."""
        cas = self.commands.script_command(_CAS, *self.cas_call(doc, expected, request_id, status))
        if not self.commands.in_order:
            if before:
                await asyncio.gather(*self.commands.execute_together(before))
            return self._outcome(doc, await self.commands.execute(*cas))
        *firsts, reply = self.commands.execute_together([*before, cas])
        for first in firsts:  # answered with the write, in its batch: nothing to wait for
            first.add_done_callback(_warn_if_failed)
        return self._outcome(doc, await reply)

    async def write_many(
        self, writes: Sequence[Write], after: Batch | None = None
    ) -> list[tuple[int, RoomDoc | None]]:
        """Each write's outcome, as `_outcome` says, in one round trip with the index additions
        (before the writes); the removals after the writes, in `after` when given (sent with
        the caller's next batch). A CONFLICT is the caller's to settle (`mutate` does that)."""
        if not writes:
            return []
        batch = Batch(self.store)
        # The additions go first: in the writes' round trip on a plain server, before it on a
        # cluster (as in `_write`).
        additions = batch if self.commands.in_order else Batch(self.store)
        plans = []
        for n, w in enumerate(writes):
            await breathe(n)
            statuses = room_status(w.old), room_status(w.new)
            adds, removes = self.index_changes(w.old, w.new, statuses)
            for key in adds:
                additions.command("ZADD", key, w.new.updated_ms, w.new.room_id)
            plans.append((statuses, removes))
        if additions is not batch:
            await additions.run()
        calls = []
        for n, (w, (statuses, _)) in enumerate(zip(writes, plans, strict=True)):
            await breathe(n)
            calls.append(
                batch.script(_CAS, *self.cas_call(w.new, w.old.version, w.request_id, statuses[1]))
            )
        replies = await batch.run()
        outcomes: list[tuple[int, RoomDoc | None]] = []
        removals = after if after is not None else Batch(self.store)
        for n, (w, ((old_status, new_status), removes), at) in enumerate(
            zip(writes, plans, calls, strict=True)
        ):
            await breathe(n)
            outcome = self._outcome(w.new, replies[at])
            outcomes.append(outcome)
            if outcome[0] == APPLIED:
                for key in removes:
                    removals.command("ZREM", key, w.new.room_id)
                if new_status is not old_status:
                    _ENTERED[new_status].inc()
        if after is None:
            await removals.run()
        return outcomes

    # ---- per-player indexes (hints: add before, remove after, verify on read) ----------------

    @staticmethod
    def _memberships(doc: RoomDoc | None, status: RoomState | None) -> tuple[set[str], set[str]]:
        if doc is None or (status or room_status(doc)) is RoomState.DELETED:
            return set(), set()
        joined = {p.player_id for p in doc.participants if p.status is PStatus.JOINED}
        invited = {p.player_id for p in doc.participants if p.status is PStatus.INVITED}
        return joined, invited

    @classmethod
    def index_changes(
        cls,
        old: RoomDoc | None,
        new: RoomDoc,
        statuses: tuple[RoomState | None, RoomState | None] = (None, None),
    ) -> tuple[list[str], list[str]]:
        """The index keys to add the room to (before its write) and remove it from (after);
        `statuses` are those of `old` and `new` when the caller has them."""
        old_joined, old_invited = cls._memberships(old, statuses[0])
        new_joined, new_invited = cls._memberships(new, statuses[1])
        app = new.app_id
        adds = [keys.player_rooms(app, p) for p in new_joined - old_joined]
        adds += [keys.player_invitations(app, p) for p in new_invited - old_invited]
        removes = [keys.player_rooms(app, p) for p in old_joined - new_joined]
        removes += [keys.player_invitations(app, p) for p in old_invited - new_invited]
        return adds, removes

    @staticmethod
    def _index_additions(new: RoomDoc, index_keys: list[str]) -> list[tuple[Any, ...]]:
        """The ZADDs that list the room in these indexes, for `_write`'s `before`."""
        return [("ZADD", k, new.updated_ms, new.room_id) for k in index_keys]

    async def _index_remove(self, new: RoomDoc, index_keys: list[str]) -> None:
        removed = [self.commands.execute("ZREM", k, new.room_id) for k in index_keys]
        for outcome in await asyncio.gather(*removed, return_exceptions=True):
            if isinstance(outcome, Exception):
                log.warning("index update failed; repaired on read", exc_info=outcome)


def decoded(raws: Sequence[bytes | None]) -> list[RoomDoc | None]:
    """Room documents as read (`HGET <room> d`): None where the room does not exist."""
    return [None if raw is None else _decode(raw) for raw in raws]
