"""The timeout wheel (docs/spec.md §4 timeouts): claim due rooms, apply `rooms.expire`, retire.

Deadlines live in TIMER_SHARDS sorted sets (`{timers:n}`), member `<app>/<roomId>`, score =
the room's next deadline. A process claims due members by pushing their score one lease ahead
(`timers_claim.lua`), applies the pure `expire` with compare-and-set (idempotent: expiring an
already-expired room changes nothing), then re-scores the member at the room's next deadline
or removes it. A process killed mid-way leaves members whose lease lapses; another claims them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.common.clock import now_ms
from roomsvc.common.errors import NotFound
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from roomsvc.store.scripts import register

log = logging.getLogger("roomsvc.timers")
LEASE_MS = 10_000
BATCH = 200


class RoomTimers:
    def __init__(self, room_store: RoomStore) -> None:
        self.rooms = room_store
        self._claim = register(room_store.store, "timers_claim")

    async def run_once(self, now: int | None = None) -> int:
        """One pass over every shard; returns how many rooms changed."""
        changed = 0
        for shard in range(keys.TIMER_SHARDS):
            changed += await self._run_shard(keys.timer_shard(shard), now)
        return changed

    async def _run_shard(self, shard_key: str, now: int | None) -> int:
        at = now if now is not None else now_ms()
        due: list[Any] = await self._claim(keys=[shard_key], args=[at, LEASE_MS, BATCH])
        changed = 0
        for member in due:
            app, _, room_id = member.decode().partition("/")
            try:
                changed += await self._expire(shard_key, app, room_id, now)
            except Exception:
                log.exception("timer failed; retried after the lease", extra={"room_id": room_id})
        return changed

    async def _expire(self, shard_key: str, app: str, room_id: str, now: int | None) -> int:
        limits = self.rooms.limits
        member = f"{app}/{room_id}"
        try:
            applied = await self.rooms.mutate(
                app,
                room_id,
                lambda doc: rooms.expire(doc, now if now is not None else now_ms(), limits),
                request_id=f"timer:{uuid.uuid4().hex}",
            )
        except NotFound:
            await self.rooms.store.zrem(shard_key, member)
            return 0
        deadline = rooms.next_deadline(applied.room, limits)
        if deadline is None:
            await self.rooms.store.zrem(shard_key, member)
        else:
            await self.rooms.store.zadd(shard_key, {member: deadline})
        return int(applied.changed)


async def timers_duty(app: Any) -> None:
    timers = RoomTimers(app.state.room_store)
    while True:
        raise_if_cancelled()
        changed = await timers.run_once()
        await asyncio.sleep(0.05 if changed else 0.5)
