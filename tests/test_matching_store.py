"""Claim, apply, retire against a real store (docs/spec.md §5; roomsvc/matching/rounds.py,
steps.py): what a match does when a room changed between its claim and its steps, and that
replaying a match changes nothing. A private valkey keeps every other process's matcher away
from these pools."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import redis.asyncio as aioredis

from roomsvc.common.clock import now_ms
from roomsvc.matching import policy as matching
from roomsvc.matching import rounds, steps
from roomsvc.matching.loop import run_forever
from roomsvc.matching.pools import Claimed, PoolStore, Retirement
from roomsvc.matching.rounds import Matcher
from roomsvc.rooms import rules as rooms
from roomsvc.rooms import store as room_store
from roomsvc.rooms.rules import Criteria, Limits, PStatus, RoomDoc, RoomState
from roomsvc.rooms.service import new_room_id
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from tests.support import UNIT, ValkeyProcess, new_app_id

LIMITS = Limits()


@pytest.fixture(scope="module")
def private_valkey() -> Iterator[ValkeyProcess]:
    server = ValkeyProcess().start()
    yield server
    server.stop()


@pytest.fixture
async def parts(private_valkey: ValkeyProcess) -> AsyncIterator[tuple[RoomStore, PoolStore]]:
    store = aioredis.Redis.from_url(private_valkey.url)
    yield RoomStore(store, LIMITS, 3_600_000), PoolStore(store, lease_ms=60_000)
    await store.aclose()


async def open_room(
    rs: RoomStore, pools: PoolStore, app: str, player: str, low: int, high: int,
    invited: tuple[str, ...] = (),
) -> RoomDoc:  # fmt: skip
    doc = rooms.create(
        room_id=new_room_id(), app_id=app, player_id=player, name=None, avatar=None,
        invited=list(invited), criteria=Criteria(low, high), variant=None, capabilities=[],
        xmpp_address=None, ids=(f"{player}_{n}" for n in itertools.count()), now_ms=now_ms(),
        limits=LIMITS,
    )  # fmt: skip
    await pools.enqueue(doc)
    await rs.create(doc, f"create:{doc.room_id}")
    return doc


async def claim_all(pools: PoolStore, app: str) -> list[Claimed]:
    pool = keys.pool_id(app, None)
    tickets = await pools.window(pool)
    assert tickets is not None
    batch = pools.batch()
    claiming = pools.queue_claim(batch, pool, matching.run_once(tickets, now_ms()), now_ms())
    return claiming.claimed(await batch.run())


async def leave(rs: RoomStore, doc: RoomDoc, player: str) -> None:
    await rs.mutate(
        doc.app_id,
        doc.room_id,
        lambda d: rooms.leave(d, player, reason=None, now_ms=now_ms(), limits=LIMITS),
        request_id=f"leave:{player}",
    )


async def test_a_host_gone_before_any_step_releases_the_seekers(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """The host left after the claim: nothing is applied, the seeker goes back with its age."""
    rs, pools = parts
    app = new_app_id()
    host = await open_room(rs, pools, app, "alice", 1, 1, invited=("bob",))
    seeker = await open_room(rs, pools, app, "carol", 2, 2)  # meets alice and bob
    (claimed,) = await claim_all(pools, app)
    assert claimed.group.target.room_id == host.room_id
    await leave(rs, host, "alice")

    retirement = await steps.drive(rs, pools, claimed)
    assert [t.room_id for t in retirement.release] == [seeker.room_id]
    assert await pools.retire_many([retirement]) == [True]

    pool = keys.pool_id(app, None)
    waiting = await rs.store.zrange(keys.pool_tickets(pool), 0, -1, withscores=True)
    assert waiting == [(seeker.room_id.encode(), float(seeker.ticket_since_ms))]
    assert not await rs.store.exists(keys.pool_match(pool, claimed.match_id))
    untouched = await rs.load(app, seeker.room_id, fresh=True)
    assert untouched is not None and untouched.version == 1
    assert rooms.room_status(untouched) is RoomState.AUTO_MATCHING


async def test_a_mover_who_withdrew_after_the_target_step_leaves_the_target_room(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """The withdrawal wins: the player leaves the room it was moved into (PLAYER_LEFT)."""
    rs, pools = parts
    app = new_app_id()
    dan = await open_room(rs, pools, app, "dan", 1, 1)
    eve = await open_room(rs, pools, app, "eve", 1, 1)
    (claimed,) = await claim_all(pools, app)
    assert claimed.group.target.room_id == dan.room_id
    # the target step, as a matcher that died right after it would have left it
    seat = eve.participant(eve.creator)
    assert seat is not None
    await rs.mutate(
        app,
        dan.room_id,
        lambda d: rooms.add_automatched(
            d, [seat], match_id=claimed.match_id, now_ms=now_ms(), limits=LIMITS
        ),
        request_id=f"match:{claimed.match_id}",
    )
    await leave(rs, eve, "eve")  # before her room was merged

    retirement = await steps.drive(rs, pools, claimed)
    assert retirement.release == []
    await pools.retire_many([retirement])
    room = await rs.load(app, dan.room_id, fresh=True)
    assert room is not None
    moved = room.of_player("eve")
    assert moved is not None and moved.status is PStatus.LEFT
    assert moved.leave_reason == "PLAYER_LEFT"
    tomb = await rs.load(app, eve.room_id, fresh=True)
    assert tomb is not None and tomb.merged_into is None


async def test_replaying_a_match_changes_nothing(parts: tuple[RoomStore, PoolStore]) -> None:
    """Driving an applied match again (a takeover after a lost lease) is a no-op."""
    rs, pools = parts
    app = new_app_id()
    first = await open_room(rs, pools, app, "fay", 1, 2)
    second = await open_room(rs, pools, app, "gus", 1, 2)
    third = await open_room(rs, pools, app, "hal", 1, 2)
    (claimed,) = await claim_all(pools, app)
    await steps.drive(rs, pools, claimed)
    ids = [first.room_id, second.room_id, third.room_id]
    before = [d.version if d else 0 for d in await rs.load_many(app, ids)]
    again = await steps.drive(rs, pools, claimed)
    after = [d.version if d else 0 for d in await rs.load_many(app, ids)]
    assert before == after and again.release == []
    target = await rs.load(app, first.room_id, fresh=True)
    assert target is not None and target.auto_matched == 2
    # movers are seated in ticket order, (since_ms, room_id): gus and hal may share a millisecond
    seated = [p.player_id for p in target.participants]
    assert seated[0] == "fay" and sorted(seated[1:]) == ["gus", "hal"]
    for room_id in ids[1:]:
        tomb = await rs.load(app, room_id, fresh=True)
        assert tomb is not None and tomb.merged_into == first.room_id


async def test_shutdown_hands_over_the_claims_in_flight(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """A matcher stopped mid-apply (SIGTERM) ends its leases at once (docs/spec.md §12 item 11)."""
    rs, pools = parts
    app = new_app_id()
    await open_room(rs, pools, app, "ida", 1, 1)
    await open_room(rs, pools, app, "jon", 1, 1)
    parked = ParkedWrites(rs.store, LIMITS, 3_600_000)
    running = asyncio.create_task(run_forever(Matcher(parked, pools)))
    async with asyncio.timeout(30):
        await parked.parked.wait()  # the round claimed the match and is applying it
    running.cancel()
    async with asyncio.timeout(30):  # a loop that lost its cancel fails here, not by hanging
        await asyncio.gather(running, return_exceptions=True)
    pool = keys.pool_id(app, None)
    (match_id,) = await pools.lapsed(pool, now_ms())  # lapsed at once, not after 60 s
    assert await rs.store.zscore(keys.pool_matches(pool), match_id) == 0


class LosesFirstCancel(PoolStore):
    """A pool store whose pool listing swallows the first cancellation that lands in it, as
    Python 3.11's wait_for (inside redis-py's socket writes) can
    (roomsvc/common/cancellation.py). `listing` is set while a listing is under way, so the
    test cancels exactly then rather than by luck."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listing = asyncio.Event()
        self.lost = False

    async def pools(self) -> list[str]:
        listed = await super().pools()
        self.listing.set()
        try:
            await asyncio.sleep(1.0)  # long enough for the test's cancel to land here
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost = True
        finally:
            self.listing.clear()
        return listed


async def test_a_matcher_that_loses_its_cancel_still_stops(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """Shutdown ends the matcher loop and its recovery loop even when the cancellation was
    swallowed inside a store call (docs/spec.md §12 item 11: the process must exit on SIGTERM)."""
    rs, _ = parts
    await open_room(rs, PoolStore(rs.store), new_app_id(), "una", 1, 1)  # one active pool
    pools = LosesFirstCancel(rs.store, lease_ms=60_000)
    running = asyncio.create_task(run_forever(Matcher(rs, pools)))
    async with asyncio.timeout(30):
        await pools.listing.wait()  # the loop is inside the listing: the cancel lands there
    running.cancel()
    for _ in range(100):  # the cancel lands once the loop runs the task again
        if pools.lost:
            break
        await asyncio.sleep(0.01)
    assert pools.lost
    done, _ = await asyncio.wait({running}, timeout=5)
    running.cancel()
    await asyncio.gather(running, return_exceptions=True)
    assert running in done
    await asyncio.sleep(0.05)
    assert not [t for t in asyncio.all_tasks() if "recover_forever" in repr(t.get_coro())]


class ParkedWrites(RoomStore):
    """A room store whose first batched write never returns: a match is being applied when
    the matcher stops. Later writes (a recovery pass's) go through."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parked = asyncio.Event()

    async def write_many(self, *args: Any, **kwargs: Any) -> Any:
        if not self.parked.is_set():
            self.parked.set()
            await asyncio.Event().wait()
        return await super().write_many(*args, **kwargs)


class SlowLapsedRead(PoolStore):
    """A pool store whose first lapsed-record read takes 0.2 s and, if cancelled meanwhile,
    swallows that and goes on a while longer (as 3.11's wait_for can,
    roomsvc/common/cancellation.py)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.parked = asyncio.Event()

    async def lapsed(self, pool: str, now: int, limit: int = 100) -> list[str]:
        if not self.parked.is_set():
            self.parked.set()
            try:
                await asyncio.sleep(0.2)
            except asyncio.CancelledError:
                await asyncio.sleep(0.2)  # the call goes on as if never cancelled
            now = now_ms()
        return await super().lapsed(pool, now, limit)


async def test_a_recovery_pass_in_flight_never_retakes_what_shutdown_handed_over(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """Shutdown hands its claims over only once its own recovery pass has ended: a pass still
    running would read the just-lapsed record and take it over again, under a lease of a
    process that is stopping (docs/spec.md §12 items 3, 11)."""
    rs, pools = parts
    app = new_app_id()
    await open_room(rs, pools, app, "vic", 1, 1)
    await open_room(rs, pools, app, "wes", 1, 1)
    slow = SlowLapsedRead(rs.store, lease_ms=60_000)
    parked = ParkedWrites(rs.store, LIMITS, 3_600_000)
    running = asyncio.create_task(run_forever(Matcher(parked, slow)))
    async with asyncio.timeout(30):
        await slow.parked.wait()  # the recovery pass is reading lapsed records
        await parked.parked.wait()  # and the round is applying the match it claimed
    running.cancel()
    async with asyncio.timeout(30):
        await asyncio.gather(running, return_exceptions=True)
    await asyncio.sleep(0.3)  # a pass that outlived the shutdown would act by now
    pool = keys.pool_id(app, None)
    (match_id,) = await pools.lapsed(pool, now_ms())
    assert await rs.store.zscore(keys.pool_matches(pool), match_id) == 0


async def test_one_retire_call_retires_each_record_once(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """Records of two pools retire together; a record listed twice is retired (and its
    tickets put back) only the first time, and the others of the call are unaffected."""
    rs, pools = parts
    apps = [new_app_id(), new_app_id()]
    claims = []
    for app in apps:
        await open_room(rs, pools, app, "kim", 1, 1)
        await open_room(rs, pools, app, "lou", 1, 1)
        claims += await claim_all(pools, app)
    first, second = claims
    released = first.group.movers[0]
    retirements = [
        Retirement(first, [released], []),
        Retirement(first, [released], []),
        Retirement(second, [], [7, 9]),
    ]
    assert await pools.retire_many(retirements) == [True, False, True]
    pool = keys.pool_id(apps[0], None)
    assert await rs.store.zrange(keys.pool_tickets(pool), 0, -1) == [released.room_id.encode()]
    assert await rs.store.zcard(keys.pool_matches(pool)) == 0
    assert await pools.recent_waits(keys.pool_id(apps[1], None)) == [9, 7]
    assert await pools.retire_many(retirements) == [False, False, False]


async def test_overlapping_rounds_match_every_ticket_once(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """With rounds applied in the background while the next is claimed, every pair of a
    pool larger than one round is matched, each seeker exactly once."""
    rs, pools = parts
    app = new_app_id()
    count = 2 * rounds.ROUND_TICKETS + 2
    docs: list[RoomDoc] = []
    for start in range(0, count, 50):
        batch = range(start, min(count, start + 50))
        docs += await asyncio.gather(*(open_room(rs, pools, app, f"p{n}", 1, 1) for n in batch))
    matcher = Matcher(rs, pools)
    pool = keys.pool_id(app, None)
    async with asyncio.timeout(60):
        while await rs.store.zcard(keys.pool_tickets(pool)) or matcher.in_flight:
            await matcher.run_once()
            await asyncio.sleep(0.001)
    final = await rs.load_many(app, [d.room_id for d in docs])
    targets = [d for d in final if d is not None and d.merged_into is None]
    tombs = [d for d in final if d is not None and d.merged_into is not None]
    assert len(targets) == len(tombs) == count // 2
    assert all(len(d.participants) == 2 for d in targets)
    seated = [p.player_id for d in targets for p in d.participants]
    assert sorted(seated) == sorted(f"p{n}" for n in range(count))
    assert await rs.store.zcard(keys.pool_matches(pool)) == 0


async def test_a_long_batch_lets_the_event_loop_run() -> None:
    """Building a round's writes yields to the loop every BREATHE_EVERY items (requests
    served by the same process wait at most that long)."""
    turns: list[int] = []

    async def build() -> None:
        for n in range(3 * room_store.BREATHE_EVERY):
            turns.append(n)
            await room_store.breathe(n)

    async def other() -> None:
        turns.append(-1)

    await asyncio.gather(build(), other())  # build starts first
    assert 0 < turns.index(-1) < 3 * room_store.BREATHE_EVERY  # other ran in between


async def test_a_group_with_a_room_not_yet_written_goes_back_whole(
    parts: tuple[RoomStore, PoolStore],
) -> None:
    """A seeker whose ticket is in the pool but whose room is still being written: nothing is
    applied, and every ticket of the group waits for the next round (which can then form the
    largest group, docs/spec.md §5) instead of the host taking the others without it."""
    rs, pools = parts
    app = new_app_id()
    host = await open_room(rs, pools, app, "max", 1, 2, invited=("ned",))
    first = await open_room(rs, pools, app, "ola", 1, 3)
    late = rooms.create(
        room_id=new_room_id(), app_id=app, player_id="pam", name=None, avatar=None,
        invited=[], criteria=Criteria(1, 3), variant=None, capabilities=[], xmpp_address=None,
        ids=(f"pam_{n}" for n in itertools.count()), now_ms=now_ms(), limits=LIMITS,
    )  # fmt: skip
    await pools.enqueue(late)  # its room is not written yet
    claimed = await claim_all(pools, app)
    assert [len(c.group.members) for c in claimed] == [3]
    await Matcher(rs, pools).apply(claimed)
    pool = keys.pool_id(app, None)
    waiting = {m.decode() for m in await rs.store.zrange(keys.pool_tickets(pool), 0, -1)}
    assert waiting == {host.room_id, first.room_id, late.room_id}
    target = await rs.load(app, host.room_id, fresh=True)
    assert target is not None and target.version == host.version


async def test_recovery_outlives_a_store_outage() -> None:
    """The loop that recovers other processes' lapsed claims keeps going through store errors
    (docs/spec.md §12 #3): nothing else would pick those claims up."""
    from roomsvc.matching.loop import recover_forever
    from roomsvc.store.embedded import free_port

    unreachable = aioredis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0")
    try:
        matcher = Matcher(RoomStore(unreachable, Limits(), 60_000), PoolStore(unreachable))
        recovering = asyncio.create_task(recover_forever(matcher, 0.01))
        await asyncio.sleep(3 * UNIT)  # several passes, each failing to connect
        assert not recovering.done(), recovering.exception()
        recovering.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await recovering
    finally:
        await unreachable.aclose()
