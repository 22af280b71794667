"""Failing fast (docs/spec.md §12 items 16-17; docs/store.md "Deadlines" and "Admission").

Every REST call and every JSON-RPC call on the realtime channel runs inside `CallGuard.call`:

- **Admission.** A process takes at most `ROOMSVC_MAX_CALLS_IN_FLIGHT` calls (and socket
  handshakes) at once. Past it a call is refused at once with `Overloaded` (503, Retry-After;
  nothing was done, so it is always safe to retry) and a new socket is closed with 1013. Work queued
  in one Python process only waits behind the work ahead of it (docs/spec.md §11: the process is the
  first ceiling), so bounding what is accepted is what bounds the accepted calls' latency.
- **Deadline.** The call's store work ends within `ROOMSVC_STORE_DEADLINE_MS`, whatever the
  store does: the deadline spans every round trip of the call, the wait for a pooled connection
  and redis-py's reconnect, handshake and retries (which alone stack a socket timeout per
  attempt: 15-45 s against a stalled server). Past it, or on any store error, a read answers
  `StoreUnavailable` and a change answers `OutcomeUnknown` (both 503 with Retry-After): a
  command already written to a stalled server still runs when it wakes, so "not confirmed" is
  all a change can say. Retrying is safe (docs/store.md "Retries never double-apply").
"""

from __future__ import annotations

import asyncio
import logging
from types import TracebackType

from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.common.errors import OutcomeUnknown, Overloaded, StoreUnavailable
from roomsvc.common.metrics import (
    CALLS_IN_FLIGHT,
    CALLS_SHED,
    LOOP_LAG,
    STORE_ERRORS,
    record_gc_pauses,
)
from roomsvc.settings import Settings
from roomsvc.store.connection import UNAVAILABLE_ERRORS

log = logging.getLogger("roomsvc.web")
RETRY_AFTER_S = 1


# How late the event loop runs is exported (roomsvc_event_loop_lag_seconds) for operators
# choosing ROOMSVC_MAX_CALLS_IN_FLIGHT (docs/store.md "Admission"); it does not gate admission:
# a loaded machine or a collection pause makes it jump on a healthy process, and refusing calls
# then would only add retries.
LAG_TICK_S = 0.1


class CallGuard:
    def __init__(self, settings: Settings) -> None:
        self.deadline_s = settings.store_deadline_ms / 1000
        self.limit = settings.max_calls_in_flight
        self.in_flight = 0
        self.lag_s = 0.0  # how late the loop ran lately (decays by half each tick)

    @property
    def saturated(self) -> bool:
        return self.in_flight >= self.limit

    async def watch_loop(self) -> None:
        """Forever: how late a timer of this loop fires, and the collector's pauses since the
        last tick, for /metrics (http/health.py)."""
        loop = asyncio.get_running_loop()
        while True:
            raise_if_cancelled()
            due = loop.time() + LAG_TICK_S
            await asyncio.sleep(LAG_TICK_S)
            self.lag_s = max(loop.time() - due, self.lag_s / 2)
            LOOP_LAG.set(self.lag_s)
            record_gc_pauses()

    def try_enter(self, transport: str) -> bool:
        """Take one unit of work (False, counted as shed, when the process is saturated);
        every True is followed by exactly one `leave`."""
        if self.saturated:
            CALLS_SHED.labels(transport).inc()
            return False
        self.in_flight += 1
        CALLS_IN_FLIGHT.inc()
        return True

    def leave(self) -> None:
        self.in_flight -= 1
        CALLS_IN_FLIGHT.dec()

    def call(self, transport: str, *, mutation: bool) -> Guarded:
        """Admit one call and hold its store work to the deadline (module docstring)."""
        return Guarded(self, mutation, admit=transport)

    def deadline(self, *, mutation: bool) -> Guarded:
        """The deadline alone (for work already admitted, such as a socket's welcome)."""
        return Guarded(self, mutation, admit=None)


class Guarded:
    """`async with` one call under its guard: admitted (when `admit` names its transport),
    bounded by the deadline, a store failure answered as `unavailable` says. A class rather
    than a generator-based context manager: every REST and JSON-RPC call enters one, and an
    async generator costs a loop hook and a weak reference each."""

    __slots__ = ("_admit", "_guard", "_mutation", "_timeout")

    def __init__(self, guard: CallGuard, mutation: bool, admit: str | None) -> None:
        self._guard = guard
        self._mutation = mutation
        self._admit = admit
        self._timeout = asyncio.timeout(guard.deadline_s)

    async def __aenter__(self) -> None:
        if self._admit is not None and not self._guard.try_enter(self._admit):
            raise Overloaded(retry_after=RETRY_AFTER_S)
        try:
            await self._timeout.__aenter__()
        except BaseException:
            if self._admit is not None:
                self._guard.leave()
            raise

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            await self._timeout.__aexit__(kind, exc, tb)  # raises TimeoutError past the deadline
        except UNAVAILABLE_ERRORS as failed:
            raise unavailable(failed, mutation=self._mutation) from None
        finally:
            if self._admit is not None:
                self._guard.leave()
        if isinstance(exc, UNAVAILABLE_ERRORS):
            raise unavailable(exc, mutation=self._mutation) from None


def unavailable(exc: BaseException, *, mutation: bool) -> StoreUnavailable:
    """The 503 a store failure answers: one log line, no traceback (an outage is an
    operational event, not a bug)."""
    kind = "DeadlineExceeded" if isinstance(exc, TimeoutError) else type(exc).__name__
    STORE_ERRORS.labels(kind).inc()
    log.warning("store unavailable", extra={"error": kind, "mutation": mutation})
    if mutation:
        return OutcomeUnknown(retry_after=RETRY_AFTER_S)
    return StoreUnavailable(retry_after=RETRY_AFTER_S)
