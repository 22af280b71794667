"""The timeout wheel (docs/spec.md §4 timeouts): claim due rooms, apply `rooms.expire`, retire.

Deadlines live in TIMER_SHARDS sorted sets (`{timers:n}`), member `<app>/<roomId>`, score =
the room's next deadline. A process claims due members for a lease (store/claims.py), applies
the pure `expire` with compare-and-set (idempotent: expiring an already-expired room changes
nothing), then retires each member: scored at the room's next deadline, or removed. A process
killed mid-way leaves members whose lease lapses; another claims them.
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
from roomsvc.store.claims import Claims

log = logging.getLogger("roomsvc.timers")
LEASE_MS = 10_000
BATCH = 200


class RoomTimers:
    def __init__(self, room_store: RoomStore) -> None:
        self.rooms = room_store
        self.claims = Claims(room_store.commands, LEASE_MS)

    async def run_once(self, now: int | None = None) -> int:
        """One pass over every shard; returns how many rooms changed."""
        changed = 0
        for shard in range(keys.TIMER_SHARDS):
            changed += await self._run_shard(keys.timer_shard(shard), now)
        return changed

    async def _run_shard(self, shard_key: str, now: int | None) -> int:
        claim = await self.claims.claim(shard_key, now if now is not None else now_ms(), BATCH)
        changed = 0
        retire: list[tuple[str, int | None]] = []
        for member in claim.members:
            app, _, room_id = member.partition("/")
            try:
                room_changed, deadline = await self._expire(app, room_id, now)
            except Exception:
                log.exception("timer failed; retried after the lease", extra={"room_id": room_id})
                continue
            changed += room_changed
            retire.append((member, deadline))
        await self.claims.retire(shard_key, claim.lease_until, retire)
        return changed

    async def _expire(self, app: str, room_id: str, now: int | None) -> tuple[int, int | None]:
        """Whether expiring the room changed it, and its next deadline (None: none)."""
        limits = self.rooms.limits
        try:
            applied = await self.rooms.mutate(
                app,
                room_id,
                lambda doc: rooms.expire(doc, now if now is not None else now_ms(), limits),
                request_id=f"timer:{uuid.uuid4().hex}",
            )
        except NotFound:
            return 0, None
        return int(applied.changed), rooms.next_deadline(applied.room, limits)


async def timers_duty(app: Any) -> None:
    timers = RoomTimers(app.state.room_store)
    while True:
        raise_if_cancelled()
        changed = await timers.run_once()
        await asyncio.sleep(0.05 if changed else 0.5)
