"""Many room compare-and-sets in one round trip, for the matcher's batches (SPEC §5, §11).

A round of the matcher writes hundreds of rooms that no request is touching (seekers waiting
in a pool). `RoomStore.mutate` costs a few round trips of client CPU per room; here the same
writes go out pipelined: one read of every room, then every write as the same `room_cas.lua`
call `RoomStore` makes (same keys, arguments, request id, TTL and publish; `run_scripts`: one
pipeline, or calls routed to their slots on a cluster), with the per-player index adds before
the writes and the removals after them (DESIGN "Rooms"). Each write is still
its own atomic script keyed by its request id, so nothing about idempotency changes; a write
that meets a newer version reports a conflict and the caller falls back to `RoomStore.mutate`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import msgspec

from roomsvc.metrics import ROOM_TRANSITIONS
from roomsvc.rooms import RoomDoc, room_status
from roomsvc.store.connection import run_scripts
from roomsvc.store.room_store import RoomStore
from roomsvc.store.scripts import register

_encode = msgspec.msgpack.Encoder().encode
_decode = msgspec.msgpack.Decoder(RoomDoc).decode

APPLIED, CONFLICT, REPLAYED = 1, 0, 2


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

    async def write_many(self, writes: Sequence[Write]) -> list[tuple[int, RoomDoc | None]]:
        """Each write's outcome: (APPLIED, new) | (REPLAYED, current) | (CONFLICT, current)."""
        if not writes:
            return []
        diffs = [self.rooms.index_changes(w.old, w.new) for w in writes]
        adds = [(w.new, key) for w, (add, _) in zip(writes, diffs, strict=True) for key in add]
        if adds:
            async with self.store.pipeline(transaction=False) as pipe:
                for doc, key in adds:
                    pipe.zadd(key, {doc.room_id: doc.updated_ms})
                await pipe.execute()
        calls = [
            (self._cas, *self.rooms.cas_call(w.new, w.old.version, w.request_id)) for w in writes
        ]
        replies = await run_scripts(self.store, calls)
        outcomes: list[tuple[int, RoomDoc | None]] = []
        removes: list[tuple[RoomDoc, str]] = []
        for w, (_, remove), reply in zip(writes, diffs, replies, strict=True):
            outcome = int(reply[0])
            if outcome == APPLIED:
                outcomes.append((APPLIED, w.new))
                removes += [(w.new, key) for key in remove]
                if room_status(w.new) is not room_status(w.old):
                    ROOM_TRANSITIONS.labels(room_status(w.new).value).inc()
            else:
                current = _decode(reply[2]) if len(reply) > 2 and reply[2] is not None else None
                outcomes.append((outcome, current))
        if removes:
            async with self.store.pipeline(transaction=False) as pipe:
                for doc, key in removes:
                    pipe.zrem(key, doc.room_id)
                await pipe.execute()
        return outcomes
