"""Failing fast (docs/spec.md §12 items 16-17; roomsvc/common/call_guard.py): past the calls in
flight a call is refused at once; against a stalled store (a real valkey-server, SIGSTOPped) a call
ends at its deadline, reconnect and handshake included, as "unavailable" for a read and "outcome
unknown" for a change; a batch of the room path gives up too; and the settings are validated. Across
real server processes: test_store_stall.py."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Iterator

import pytest

from roomsvc.common.call_guard import CallGuard
from roomsvc.common.errors import OutcomeUnknown, Overloaded, StoreUnavailable
from roomsvc.settings import Settings
from roomsvc.store import batching
from roomsvc.store.connection import UNAVAILABLE_ERRORS, Store, connect
from tests.support import ValkeyProcess, roomsvc_cli


def test_fail_fast_settings_have_defaults_and_are_validated() -> None:
    """The deadline and the calls in flight default to 1 s and 256; `roomsvc config check`
    names a bad value of either."""
    settings = Settings.from_env({})
    assert (settings.store_deadline_ms, settings.max_calls_in_flight) == (1000, 256)
    result = roomsvc_cli(
        "config", "check",
        env={"ROOMSVC_STORE_DEADLINE_MS": "0", "ROOMSVC_MAX_CALLS_IN_FLIGHT": "lots"},
    )  # fmt: skip
    assert result.returncode == 1
    assert "ROOMSVC_STORE_DEADLINE_MS" in result.stderr
    assert "ROOMSVC_MAX_CALLS_IN_FLIGHT" in result.stderr


async def test_past_the_calls_in_flight_a_call_is_refused_at_once() -> None:
    """With as many calls in flight as allowed, the next is refused (503, Retry-After, reason
    `overloaded`) without running; once one ends, calls are taken again."""
    guard = CallGuard(Settings(max_calls_in_flight=2))
    release = asyncio.Event()
    entered = [asyncio.Event(), asyncio.Event()]

    async def held(entered: asyncio.Event) -> None:
        async with guard.call("rest", mutation=False):
            entered.set()
            await release.wait()

    calls = [asyncio.create_task(held(event)) for event in entered]
    for event in entered:
        await event.wait()
    ran = False
    with pytest.raises(Overloaded) as refused:
        async with guard.call("socket", mutation=True):
            ran = True
    assert not ran
    assert (refused.value.http_status, refused.value.reason) == (503, "overloaded")
    assert int(refused.value.headers()["Retry-After"]) >= 1
    assert not guard.try_enter("socket")  # a new socket is refused the same way
    release.set()
    await asyncio.gather(*calls)
    async with guard.call("rest", mutation=False):
        assert guard.in_flight == 1
    assert guard.in_flight == 0


async def test_every_admitted_call_leaves_however_it_ends() -> None:
    """Admission is given back when a call is cancelled from outside, when it raises, and when
    its context cannot even be entered (a guard entered twice): a leak would shed every call
    once the process had leaked as many as it admits."""
    guard = CallGuard(Settings(max_calls_in_flight=2))
    inside = asyncio.Event()

    async def waits() -> None:
        async with guard.call("rest", mutation=False):
            inside.set()
            await asyncio.Event().wait()

    waiting = asyncio.create_task(waits())
    await inside.wait()
    assert guard.in_flight == 1
    waiting.cancel()
    await asyncio.gather(waiting, return_exceptions=True)
    assert guard.in_flight == 0
    with pytest.raises(KeyError):
        async with guard.call("socket", mutation=True):
            raise KeyError("a bug in the call")
    assert guard.in_flight == 0
    once = guard.call("rest", mutation=False)
    async with once:
        pass
    with pytest.raises(RuntimeError):  # asyncio.timeout refuses a second entry
        async with once:
            pass
    assert guard.in_flight == 0


@pytest.fixture
def stalled() -> Iterator[ValkeyProcess]:
    """A store of its own (never the session's): the test stops it with SIGSTOP."""
    store = ValkeyProcess().start()
    yield store
    assert store.process is not None
    store.process.send_signal(signal.SIGCONT)
    store.stop()


@pytest.fixture
async def client(stalled: ValkeyProcess) -> AsyncIterator[Store]:
    store = await connect(stalled.url)  # the service's own client and pool settings
    yield store
    await store.aclose()


def stop(store: ValkeyProcess) -> None:
    assert store.process is not None
    store.process.send_signal(signal.SIGSTOP)


@pytest.mark.timeout(10)  # a hang (redis-py's own retries: 15-45 s) fails the test
async def test_a_stalled_store_ends_the_call_at_its_deadline(
    stalled: ValkeyProcess, client: Store
) -> None:
    """Against a stalled store, on a live connection and on a new one (whose handshake the
    stalled server never answers), a read ends as StoreUnavailable and a change as
    OutcomeUnknown, both 503 with Retry-After; after SIGCONT the same calls succeed."""
    guard = CallGuard(Settings(store_deadline_ms=200))
    await client.set("k", "1")  # a pooled connection, live
    stop(stalled)
    with pytest.raises(StoreUnavailable) as read:
        async with guard.call("rest", mutation=False):
            await client.get("k")
    assert type(read.value) is StoreUnavailable and read.value.headers()["Retry-After"]
    await client.connection_pool.disconnect()  # the next command must connect first
    with pytest.raises(OutcomeUnknown) as change:
        async with guard.call("socket", mutation=True):
            await client.set("k", "2")
    assert (change.value.http_status, change.value.reason) == (503, "outcomeUnknown")
    assert guard.in_flight == 0
    assert stalled.process is not None
    stalled.process.send_signal(signal.SIGCONT)
    async with guard.call("rest", mutation=False):
        assert await client.get("k") in (b"1", b"2")  # the change may have been applied


@pytest.mark.timeout(10)  # without a deadline on the handshake: 15 s of redis-py's retries
async def test_a_batch_gives_up_on_a_stalled_store(
    stalled: ValkeyProcess, client: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The room path's batches (store/batching.py) end against a stalled store, the wait for
    a new connection's handshake included, instead of waiting out redis-py's retries."""
    monkeypatch.setattr(batching, "BATCH_TIMEOUT_S", 0.2)
    await client.connection_pool.disconnect()
    stop(stalled)
    with pytest.raises(UNAVAILABLE_ERRORS):
        await batching.send_packed(client, [("PING",)])
