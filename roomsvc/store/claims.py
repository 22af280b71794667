"""Claim, apply idempotently, retire (docs/design.md): due members of sharded sorted sets.

The timeout wheel (rooms/timers.py: rooms by their next deadline) and the presence sweeper
(realtime/presence.py: players by their presence deadline) keep their work as members of sorted
sets scored by when it is due. A process claims the due members of a shard (`claim.lua`: each
gets score `now + lease`, so nobody else takes it while the lease runs), applies each with an
idempotent compare-and-set, and retires what it applied (`claim_retire.lua`: remove it, or score
it at its next deadline), but only while the member still carries its lease: a member refreshed
meanwhile (a reconnect) or claimed again by another process once the lease lapsed is left to
that writer. A process killed mid-way leaves members whose lease lapses; any process claims them
again and drives them on.

Both calls go through the process's command batcher (store/batching.py), so the claims of many
shards share one round trip.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from roomsvc.store.batching import CommandBatcher
from roomsvc.store.scripts import script

_CLAIM = script("claim")
_RETIRE = script("claim_retire")


@dataclasses.dataclass(frozen=True, slots=True)
class Claim:
    members: list[str]  # claimed, now leased to this process until `lease_until`
    earliest: int  # the earliest score left in the shard (-1: none); while held, when to retry
    lease_until: int


@dataclasses.dataclass(frozen=True, slots=True)
class Hold:
    """A shard's clock: claims wait `hold_ms` after a silence of `silence_ms` (docs/store.md
    "Presence through a stall")."""

    clock: str  # the shard's clock key, in the shard's slot
    silence_ms: int
    hold_ms: int


class Claims:
    def __init__(self, commands: CommandBatcher, lease_ms: int) -> None:
        self.commands = commands
        self.lease_ms = lease_ms

    async def claim(self, shard: str, now: int, limit: int, hold: Hold | None = None) -> Claim:
        """Lease up to `limit` members of `shard` due by `now` to this process."""
        shard_keys = [shard] if hold is None else [shard, hold.clock]
        args = [now, self.lease_ms, limit]
        if hold is not None:
            args += [hold.silence_ms, hold.hold_ms]
        reply = await self.commands.call(_CLAIM, keys=shard_keys, args=args)
        members = [m.decode() for m in reply[1:]]
        return Claim(members, int(reply[0]), now + self.lease_ms)

    async def retire(
        self, shard: str, lease_until: int, members: Iterable[tuple[str, int | None]]
    ) -> int:
        """Retire (member, next score or None = remove) pairs claimed with `lease_until`;
        returns how many still carried that lease and were retired."""
        args: list[str | int] = []
        for member, score in members:
            args += [member, lease_until, "" if score is None else score]
        if not args:
            return 0
        return int(await self.commands.call(_RETIRE, keys=[shard], args=args))
