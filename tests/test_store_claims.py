"""store/claims.py, the one claim/lease/retire module of the timers and presence (docs/design.md
"claim, apply idempotently, retire"): a due member is leased to one claimer at a time, is
claimed again once its lease lapses, and is retired only by the claim that still holds it."""

from __future__ import annotations

import uuid
from typing import Any

from roomsvc.store.batching import CommandBatcher
from roomsvc.store.claims import Claims

LEASE_MS = 10_000
T0 = 50_000_000_000_000


def _shard() -> str:
    return f"{{claims:{uuid.uuid4().hex}}}"


async def test_a_due_member_is_leased_to_one_claimer_until_its_lease_lapses(store: Any) -> None:
    """Two processes claim at the same time: only one gets each member; after the lease any
    process claims it again, and the claim says the earliest score left in the shard."""
    shard = _shard()
    await store.zadd(shard, {"a": T0, "b": T0 + 5, "later": T0 + 60_000})
    first, second = Claims(CommandBatcher(store), LEASE_MS), Claims(CommandBatcher(store), LEASE_MS)
    claim = await first.claim(shard, T0 + 10, 100)
    assert sorted(claim.members) == ["a", "b"]
    assert claim.lease_until == T0 + 10 + LEASE_MS
    assert claim.earliest == T0 + 10 + LEASE_MS  # the leased members come first now
    assert (await second.claim(shard, T0 + 20, 100)).members == []
    again = await second.claim(shard, claim.lease_until, 100)
    assert sorted(again.members) == ["a", "b"]


async def test_a_claim_takes_at_most_its_limit(store: Any) -> None:
    shard = _shard()
    await store.zadd(shard, {f"m{n}": T0 + n for n in range(5)})
    claims = Claims(CommandBatcher(store), LEASE_MS)
    assert (await claims.claim(shard, T0 + 10, 2)).members == ["m0", "m1"]
    assert (await claims.claim(shard, T0 + 10, 10)).members == ["m2", "m3", "m4"]


async def test_a_retire_acts_only_on_members_that_keep_the_lease(store: Any) -> None:
    """Retired members are removed or scored at their next deadline; a member written since
    the claim (a reconnect, or another claimer after a lapsed lease) is left alone."""
    shard = _shard()
    await store.zadd(shard, {"gone": T0, "rescored": T0, "refreshed": T0})
    claims = Claims(CommandBatcher(store), LEASE_MS)
    claim = await claims.claim(shard, T0, 10)
    await store.zadd(shard, {"refreshed": T0 + 99})
    retired = await claims.retire(
        shard, claim.lease_until, [("gone", None), ("rescored", T0 + 500), ("refreshed", None)]
    )
    assert retired == 2
    assert await store.zscore(shard, "gone") is None
    assert await store.zscore(shard, "rescored") == T0 + 500
    assert await store.zscore(shard, "refreshed") == T0 + 99
    assert await claims.retire(shard, claim.lease_until, []) == 0
