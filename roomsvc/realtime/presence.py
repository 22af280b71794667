"""Presence (SPEC §6): a JOINED player whose realtime connections are all gone for longer than
the grace period leaves its rooms with leaveReason PRESENCE_FAILURE, also when the process
that held them is killed.

The state lives in Redis, never in one process: each connected player has a deadline in a
sharded sorted set (realtime_keys.py), pushed forward every `interval` by every process that
holds one of its connections (one pipelined ZADD per shard). Nothing is written when a
connection closes: the deadline simply stops moving, so a clean close and a `kill -9` behave
alike. The deadline is `now + grace + interval`, so the seat is released between `grace` and
`grace + 2 * interval` after the last connection went away, never earlier.

Every process sweeps every shard with the claim/lease pattern of DESIGN (the same
`timers_claim.lua` as the room timers): claim due members (their score moves one lease ahead),
apply `rooms.presence_failure` to each JOINED room with compare-and-set, then retire the member
unless a reconnect refreshed it meanwhile (`presence_retire.lua`). The transition only applies
to a JOINED participant, so a claim replayed after a crash releases nothing twice.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable
from typing import Any

from roomsvc import rooms
from roomsvc.errors import NotFound
from roomsvc.rooms import PStatus, RoomDoc, RoomState
from roomsvc.store import keys
from roomsvc.store.connection import UNAVAILABLE_ERRORS
from roomsvc.store.realtime_keys import (
    PRESENCE_SHARDS,
    presence_member,
    presence_shard,
    presence_shard_of,
)
from roomsvc.store.room_store import RoomStore, now_ms
from roomsvc.store.scripts import register

log = logging.getLogger("roomsvc.presence")
LEASE_MS = 10_000
BATCH = 200
_ZADD_CHUNK = 1000


def refresh_interval_s(grace_seconds: int) -> float:
    """How often deadlines move and shards are swept: well inside the grace period."""
    return min(5.0, max(0.2, grace_seconds / 4))


def _joined(doc: RoomDoc, player_id: str) -> bool:
    p = doc.of_player(player_id)
    return (
        p is not None
        and p.status is PStatus.JOINED
        and rooms.room_status(doc) is not RoomState.DELETED
    )


class Presence:
    def __init__(self, room_store: RoomStore, grace_seconds: int) -> None:
        self.rooms = room_store
        self.store = room_store.store
        self.interval_s = refresh_interval_s(grace_seconds)
        self.grace_ms = grace_seconds * 1000
        self._claim = register(self.store, "timers_claim")
        self._retire = register(self.store, "presence_retire")

    def deadline(self, now: int) -> int:
        return now + self.grace_ms + int(self.interval_s * 1000)

    async def touch(self, players: Iterable[tuple[str, str]], now: int) -> None:
        """Push the deadline of every (app, player) forward: they hold a connection here."""
        by_shard: dict[str, dict[str, int]] = {}
        deadline = self.deadline(now)
        for app, player in players:
            member = presence_member(app, player)
            by_shard.setdefault(presence_shard_of(member), {})[member] = deadline
        if not by_shard:
            return
        async with self.store.pipeline(transaction=False) as pipe:
            for shard, mapping in by_shard.items():
                items = list(mapping.items())
                for start in range(0, len(items), _ZADD_CHUNK):
                    pipe.zadd(shard, dict(items[start : start + _ZADD_CHUNK]))
            await pipe.execute()

    async def sweep_once(self, now: int, is_local: Callable[[str, str], bool]) -> int:
        """Claim every lapsed deadline and release its seats; returns the seats released."""
        released = 0
        for n in range(PRESENCE_SHARDS):
            shard = presence_shard(n)
            due: list[Any] = await self._claim(keys=[shard], args=[now, LEASE_MS, BATCH])
            lease_until = now + LEASE_MS
            for raw in due:
                member = raw.decode()
                app, _, player = member.partition(":")
                if is_local(app, player):  # connected here: our refresh was merely late
                    await self.store.zadd(shard, {member: self.deadline(now)})
                    continue
                try:
                    released += await self.release(app, player)
                except Exception:
                    raise_if_cancelled()
                    log.exception("presence release failed; retried after the lease",
                                  extra={"player_id": player})  # fmt: skip
                    continue
                await self._retire(keys=[shard], args=[member, lease_until])
        return released

    async def release(self, app: str, player: str) -> int:
        """PRESENCE_FAILURE in every room where the player is still JOINED."""
        room_ids = [
            m.decode() for m in await self.store.zrange(keys.player_rooms(app, player), 0, -1)
        ]
        docs = await self.rooms.load_many(app, room_ids)
        limits = self.rooms.limits

        def change(doc: RoomDoc) -> RoomDoc | None:
            if not _joined(doc, player):
                return None  # left meanwhile, or released by an earlier claim: nothing twice
            return rooms.presence_failure(doc, player, now_ms=now_ms(), limits=limits)

        released = 0
        for room_id, doc in zip(room_ids, docs, strict=True):
            if doc is None or not _joined(doc, player):
                continue
            try:
                applied = await self.rooms.mutate(
                    app, room_id, change, request_id=f"presence:{uuid.uuid4().hex}"
                )
            except NotFound:
                continue
            released += int(applied.changed)
        return released


def raise_if_cancelled() -> None:
    """Honour a cancellation that a store call turned into another error (an asyncio timeout
    expiring together with the cancel does that on 3.11): otherwise shutdown waits forever."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()


async def run(presence: Presence, hub: Any) -> None:
    """The presence duty: refresh this process's players, then sweep; forever."""
    while True:
        raise_if_cancelled()
        now = now_ms()
        try:
            await presence.touch(hub.present_players(), now)
            await presence.sweep_once(now, hub.is_local)
        except UNAVAILABLE_ERRORS:
            log.warning("presence: store unavailable; retrying")
        await asyncio.sleep(presence.interval_s)
