"""Many room compare-and-sets in one round trip, for the matcher's batches (docs/spec.md §5, §11).

A round of the matcher writes hundreds of rooms that no request is touching (seekers waiting in a
pool). `RoomStore.mutate` costs a few round trips of client CPU per room; here the same writes go
out pipelined: one read of every room, then every write as the same `room_cas.lua` call `RoomStore`
makes (same keys, arguments, request id, TTL and publish; store/pipelined.py: one round trip, or
calls routed to their slots on a cluster), with the per-player index adds before the writes in the
same round trip and the removals after them (docs/design.md "Rooms"). Each write is still its own
atomic script keyed by its request id, so nothing about idempotency changes; a write that meets a
newer version reports a conflict and the caller falls back to `RoomStore.mutate`.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from roomsvc.common.metrics import ROOM_TRANSITIONS
from roomsvc.rooms.rules import RoomDoc, room_status
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from roomsvc.store.pipelined import Batch
from roomsvc.store.scripts import register

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(RoomDoc).decode

APPLIED, CONFLICT, REPLAYED = 1, 0, 2


BREATHE_EVERY = 64  # items of a batch handled between two turns of the event loop


async def breathe(n: int) -> None:
    """Let the event loop run once every BREATHE_EVERY items: the matcher shares its loop with
    a web process's requests, which must not wait out a whole round's CPU (docs/spec.md §11)."""
    if n % BREATHE_EVERY == BREATHE_EVERY - 1:
        await asyncio.sleep(0)


class Write(msgspec.Struct):
    old: RoomDoc
    new: RoomDoc
    request_id: str


class BatchWriter:
    def __init__(self, room_store: RoomStore) -> None:
        self.rooms = room_store
        self.store: Any = room_store.store
        self._cas = register(self.store, "room_cas")

    async def load_many(self, rooms: Sequence[tuple[str, str]]) -> list[RoomDoc | None]:
        """(app, roomId) pairs -> their current documents, in one pipeline."""
        return await self.rooms.load_each(rooms)

    @staticmethod
    def queue_loads(batch: Batch, rooms: Sequence[tuple[str, str]]) -> list[int]:
        """Queue the reads of these rooms on `batch`; `decoded` turns the replies into docs."""
        return [batch.command("HGET", keys.room(app, room_id), "d") for app, room_id in rooms]

    @staticmethod
    def decoded(raws: Sequence[bytes | None]) -> list[RoomDoc | None]:
        return [None if raw is None else _decode(raw) for raw in raws]

    async def write_many(
        self, writes: Sequence[Write], after: Batch | None = None
    ) -> list[tuple[int, RoomDoc | None]]:
        """Each write's outcome: (APPLIED, new) | (REPLAYED, current) | (CONFLICT, current).

        The index additions go out in the same round trip as the writes, before them; the
        removals after the writes, in `after` when given (sent with the caller's next batch)."""
        if not writes:
            return []
        batch = Batch(self.store)
        diffs = []
        for n, w in enumerate(writes):
            await breathe(n)
            diffs.append(self.rooms.index_changes(w.old, w.new))
            for key in diffs[-1][0]:
                batch.command("ZADD", key, w.new.updated_ms, w.new.room_id)
        first = len(batch)
        for n, w in enumerate(writes):
            await breathe(n)
            batch.script(self._cas, *self.rooms.cas_call(w.new, w.old.version, w.request_id))
        replies = (await batch.run())[first:]
        outcomes: list[tuple[int, RoomDoc | None]] = []
        removes = after if after is not None else Batch(self.store)
        for n, (w, (_, remove), reply) in enumerate(zip(writes, diffs, replies, strict=True)):
            await breathe(n)
            outcome = int(reply[0])
            if outcome == APPLIED:
                outcomes.append((APPLIED, w.new))
                for key in remove:
                    removes.command("ZREM", key, w.new.room_id)
                new_status = room_status(w.new)
                if new_status is not room_status(w.old):
                    ROOM_TRANSITIONS.labels(new_status.value).inc()
            else:
                current = _decode(reply[2]) if len(reply) > 2 and reply[2] is not None else None
                outcomes.append((outcome, current))
        if after is None:
            await removes.run()
        return outcomes
