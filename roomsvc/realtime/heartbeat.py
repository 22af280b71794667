"""Presence heartbeats (docs/spec.md §6): every `interval`, a process pushes forward the deadline of
every player it holds a connection of, for a client cost that does not grow with its players.

The store keeps, per presence shard and per process, the set of members that process holds
(`keys.presence_held`, in the shard's slot). A beat sends only what changed since the
last one (players who connected or went away here: a set difference, done in C), and
`presence_refresh.lua` moves the deadline of every member of the set, so a beat's client CPU
follows the connections that changed, not the players held (docs/performance.md).

The set is only a copy of what this process knows, and is rebuilt whole when it may differ: on
the first beat, after a beat that failed (some of its changes may not have landed), when the
script counts other than we do (the store lost the set: a restart, a failover, or its expiry
after a stall), and every FULL_EVERY beats whatever happened. Between two full beats the set
expires if nobody refreshes it, so a killed process leaves nothing behind for long; its
players' deadlines simply stop moving and lapse.

Every beat reaches every shard, also those where this process holds nobody: each call is also
the shard's clock tick, by which the sweepers tell a stalled store from lapsed players
(claim.lua; docs/store.md "Presence through a stall").
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Collection
from collections.abc import Set as AbstractSet

from roomsvc.store.batching import CommandBatcher
from roomsvc.store.keys import (
    PRESENCE_SHARDS,
    presence_clock,
    presence_held,
    presence_member,
    presence_shard,
    presence_shard_of,
)
from roomsvc.store.scripts import script

FULL_EVERY = 8
_REFRESH = script("presence_refresh")
SHARDS = tuple(presence_shard(n) for n in range(PRESENCE_SHARDS))


class Heartbeat:
    def __init__(self, commands: CommandBatcher, interval_ms: int, silence_ms: int) -> None:
        self.process = uuid.uuid4().hex[:16]
        self.silence_ms = silence_ms
        self.commands = commands  # a beat's shards go out in one round trip
        # Renewed by every full beat, and set whenever a beat adds to a set: a set always
        # outlives the next full beat of a live process, never long its process.
        self._ttl_ms = 2 * FULL_EVERY * interval_ms
        self._present: frozenset[tuple[str, str]] = frozenset()
        self._held: dict[str, set[str]] = {}  # shard -> members, as the store should have them
        self._beats = 0

    async def beat(self, players: AbstractSet[tuple[str, str]], deadline: int) -> None:
        """Move every held player's deadline to `deadline`; `players` are those held now."""
        now_held = frozenset(players)
        previous, self._present = self._present, now_held
        full = self._beats % FULL_EVERY == 0
        self._beats += 1
        try:
            if full:
                await self._full(now_held, deadline)
            else:
                await self._changes(now_held - previous, previous - now_held, deadline)
        except BaseException:
            # Some changes may not have landed: the next beat sends everything again.
            self._present, self._beats = previous, 0
            raise

    async def _changes(
        self, arrived: AbstractSet[tuple[str, str]], gone: AbstractSet[tuple[str, str]],
        deadline: int,
    ) -> None:  # fmt: skip
        changes: dict[str, tuple[list[str], list[str]]] = {}
        for players, index in ((arrived, 0), (gone, 1)):
            for app, player in players:
                member = presence_member(app, player)
                changes.setdefault(presence_shard_of(member), ([], []))[index].append(member)
        for shard, (added, removed) in changes.items():
            held = self._held.setdefault(shard, set())
            held.update(added)
            held.difference_update(removed)
        counts = await asyncio.gather(
            *(self._call(s, deadline, *changes.get(s, ((), ()))) for s in SHARDS)
        )
        kept = self._held
        lost = [s for s, n in zip(SHARDS, counts, strict=True) if n != len(kept.get(s, ()))]
        await asyncio.gather(*(self._call(s, deadline, kept.get(s, ()), (), True) for s in lost))
        self._held = {s: m for s, m in kept.items() if m}

    async def _full(self, players: AbstractSet[tuple[str, str]], deadline: int) -> None:
        held: dict[str, set[str]] = {s: set() for s in SHARDS}  # emptied shards too
        for app, player in players:
            member = presence_member(app, player)
            held[presence_shard_of(member)].add(member)
        await asyncio.gather(*(self._call(s, deadline, m, (), True) for s, m in held.items()))
        self._held = {s: m for s, m in held.items() if m}

    async def _call(
        self, shard: str, deadline: int, added: Collection[str], removed: Collection[str],
        replace: bool = False,
    ) -> int:  # fmt: skip
        args = [self.silence_ms, deadline, self._ttl_ms, int(replace), len(added),
                *added, *removed]  # fmt: skip
        keys = [shard, presence_held(shard, self.process), presence_clock(shard)]
        return int(await self.commands.call(_REFRESH, keys=keys, args=args))
