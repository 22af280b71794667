"""Model check of the rooms store against the pure rules (docs/spec.md §4, §12 item 2).

A hypothesis state machine plays random commands (join, decline, leave, reportStatus,
presence failure, timeouts) by random players (invitees, the creator, strangers) on one room,
twice: on an in-memory `RoomDoc` through `roomsvc.rooms`, and on the real store through
`RoomStore.mutate`, alternating between two `RoomStore`s (two processes, each with its own
cache, so stale caches and compare-and-set retries are exercised). Both sides get the same
`now`. After every step the stored room must equal the model, refusals must be the same error
class, and no illegal transition may be accepted.

The store is asyncio and hypothesis drives a synchronous machine: the store runs on its own
event loop in a thread. Model time starts ten years ahead of the clock so that the servers'
timeout wheel, which shares this store, never finds one of these rooms due.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

import pytest
import redis.asyncio as aioredis
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)

from roomsvc.common.clock import now_ms
from roomsvc.common.errors import RoomsvcError
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Criteria, Limits, PStatus, RoomDoc, RoomState
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from tests.support import new_app_id

T = TypeVar("T")
LIMITS = Limits(max_players=8, invite_timeout_ms=300_000, automatch_timeout_ms=60_000)
INVITEES = ("ana", "ben", "cho", "dev")
PLAYERS = ("creator", *INVITEES, "stranger")
TEN_YEARS_MS = 10 * 365 * 86_400_000
REASONS = (None, "PLAYER_LEFT", "GAME_LEFT", "REALTIME_TIMEOUT", "REALTIME_SERVER_ERROR", "odd")


class LoopThread:
    """An event loop in a thread, for calling the asyncio store from synchronous code."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


class Backend:
    """Two store clients (two 'processes') on the test valkey, living on a LoopThread."""

    def __init__(self, url: str, cluster: bool) -> None:
        self.thread = LoopThread()
        self.clients = [self.thread.run(self._connect(url, cluster)) for _ in range(2)]

    @staticmethod
    async def _connect(url: str, cluster: bool) -> Any:
        if cluster:
            return aioredis.RedisCluster.from_url(url)
        return aioredis.Redis.from_url(url)

    def close(self) -> None:
        for client in self.clients:
            self.thread.run(client.aclose())
        self.thread.close()


@pytest.fixture(scope="module")
def backend(request: pytest.FixtureRequest) -> Iterator[Backend]:
    """The store the servers use: the test valkey, or the cluster with --cluster."""
    cluster = bool(request.config.getoption("--cluster"))
    backend = Backend(request.getfixturevalue("cluster" if cluster else "valkey").url, cluster)
    yield backend
    backend.close()


def _outcome(call: Callable[[], T]) -> tuple[T | None, type[RoomsvcError] | None]:
    try:
        return call(), None
    except RoomsvcError as exc:
        return None, type(exc)


class RoomMachine(RuleBasedStateMachine):
    """One room, the pure model beside the real store."""

    backend: Backend

    def __init__(self) -> None:
        super().__init__()
        self.app = new_app_id()
        self.room_id = "m" + uuid.uuid4().hex[:12]
        self.now = now_ms() + TEN_YEARS_MS
        self.stores = [RoomStore(c, LIMITS, 3_600_000) for c in self.backend.clients]
        self.reader = RoomStore(self.backend.clients[0], LIMITS, 3_600_000)  # leaves caches be
        self.model: RoomDoc | None = None

    # ---- plumbing -----------------------------------------------------------------------

    def stored(self) -> RoomDoc | None:
        return self.backend.thread.run(self.reader.load(self.app, self.room_id, fresh=True))

    def step(self, which: int, command: Callable[[RoomDoc, int], RoomDoc | None]) -> None:
        """Run one command on both sides with the same `now`, and compare the outcomes."""
        model = self.model
        if model is None:
            raise RuntimeError("the room was never created")
        now = self.now
        expected, expected_error = _outcome(lambda: command(model, now))
        store = self.stores[which]
        applied, error = _outcome(
            lambda: self.backend.thread.run(
                store.mutate(
                    self.app, self.room_id, lambda doc: command(doc, now), uuid.uuid4().hex
                )
            )
        )
        assert error is expected_error, (expected_error, error)
        if error is not None:
            return
        assert applied is not None
        if expected is None:
            assert not applied.changed
            assert applied.room == model
            return
        # An accepted change: exactly one version on, never out of a deleted room.
        assert applied.changed
        assert rooms.room_status(model) is not RoomState.DELETED
        assert expected.version == model.version + 1
        assert applied.room == expected
        self.model = expected

    def status_of(self, player: str) -> PStatus | None:
        p = self.model.of_player(player) if self.model else None
        return p.status if p else None

    # ---- rules -----------------------------------------------------------------------------

    @initialize(
        invited=st.lists(st.sampled_from(INVITEES), min_size=0, max_size=4, unique=True),
        automatch=st.booleans(),
        which=st.integers(0, 1),
    )
    def create(self, invited: list[str], automatch: bool, which: int) -> None:
        criteria = Criteria(min_players=1, max_players=2) if automatch or not invited else None
        counter = itertools.count()
        doc = rooms.create(
            room_id=self.room_id,
            app_id=self.app,
            player_id="creator",
            name="Creator",
            avatar=None,
            invited=invited,
            criteria=criteria,
            variant=None,
            capabilities=[],
            xmpp_address=None,
            ids=(f"p{next(counter)}" for _ in itertools.repeat(None)),
            now_ms=self.now,
            limits=LIMITS,
        )
        applied = self.backend.thread.run(
            self.stores[which].create(doc, request_id=f"create:{self.room_id}")
        )
        assert applied.changed and applied.room == doc
        self.model = doc

    @rule(ms=st.sampled_from([1, 1_000, 59_999, 60_000, 120_000, 299_999, 300_000, 400_000]))
    def time_passes(self, ms: int) -> None:
        self.now += ms

    @rule(player=st.sampled_from(PLAYERS), which=st.integers(0, 1))
    def join(self, player: str, which: int) -> None:
        before = self.status_of(player)
        self.step(
            which,
            lambda doc, now: rooms.join(
                doc, player, capabilities=["c"], xmpp_address=None, now_ms=now, limits=LIMITS
            ),
        )
        if before is not PStatus.INVITED:
            # Only an invitee can join: a JOINED, LEFT, DECLINED or absent player never can.
            assert self.status_of(player) is before

    @rule(player=st.sampled_from(PLAYERS), which=st.integers(0, 1))
    def decline(self, player: str, which: int) -> None:
        before = self.status_of(player)
        self.step(which, lambda doc, now: rooms.decline(doc, player, now_ms=now, limits=LIMITS))
        if before is not PStatus.INVITED:
            assert self.status_of(player) is before

    @rule(player=st.sampled_from(PLAYERS), reason=st.sampled_from(REASONS), which=st.integers(0, 1))
    def leave(self, player: str, reason: str | None, which: int) -> None:
        before = self.status_of(player)
        self.step(
            which,
            lambda doc, now: rooms.leave(doc, player, reason=reason, now_ms=now, limits=LIMITS),
        )
        if before in (PStatus.DECLINED, PStatus.LEFT, None):
            assert self.status_of(player) is before

    @rule(player=st.sampled_from(PLAYERS), which=st.integers(0, 1))
    def presence_failure(self, player: str, which: int) -> None:
        self.step(
            which,
            lambda doc, now: rooms.presence_failure(doc, player, now_ms=now, limits=LIMITS),
        )

    @rule(
        player=st.sampled_from(PLAYERS),
        updates=st.lists(
            st.tuples(
                st.integers(-1, 5),
                st.sampled_from(["CONNECTION_ESTABLISHED", "CONNECTION_FAILED", "BOGUS"]),
            ),
            min_size=0,
            max_size=4,
        ),
        which=st.integers(0, 1),
    )
    def report_status(self, player: str, updates: list[tuple[int, str]], which: int) -> None:
        # Peers by index into the room's participants; -1 and out-of-range are unknown ids.
        pairs = [(f"p{i}" if i >= 0 else "nobody", status) for i, status in updates]
        self.step(
            which,
            lambda doc, now: rooms.report_status(doc, player, pairs, now_ms=now, limits=LIMITS),
        )

    @rule(which=st.integers(0, 1))
    def expire(self, which: int) -> None:
        self.step(which, lambda doc, now: rooms.expire(doc, now, LIMITS))

    # ---- invariants ------------------------------------------------------------------------

    @invariant()
    def store_equals_model(self) -> None:
        if self.model is not None:
            assert self.stored() == self.model

    def teardown(self) -> None:
        self.backend.thread.run(
            self.stores[0].store.zrem(
                keys.timer_shard_of(self.app, self.room_id), f"{self.app}/{self.room_id}"
            )
        )


def test_store_follows_the_pure_rules(backend: Backend) -> None:
    """Random command sequences: the stored room always equals the pure model's room."""

    class Machine(RoomMachine):
        pass

    Machine.backend = backend
    run_state_machine_as_test(
        Machine,
        settings=settings(
            max_examples=50,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
