"""Background loops stop when cancelled even if the cancellation was lost inside an await
(roomsvc/common/cancellation.py): on Python 3.11 `asyncio.wait_for` (inside redis-py's socket
writes) and `asyncio.timeout` can each drop a cancel, and a duty that ran on would keep a process
from exiting on SIGTERM (docs/spec.md §12 item 11)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from roomsvc import app as app_module
from roomsvc.common.cancellation import raise_if_cancelled


class CancelLoser:
    """An await that swallows the first cancellation it meets, as 3.11's wait_for does when
    its inner call finishes in the same loop turn; with `error`, one that turns it into that
    error, as an expiring asyncio.timeout does. Later cancellations go through, so a loop
    that does not check still ends when the test's cleanup cancels it again."""

    def __init__(self, error: type[BaseException] | None = None) -> None:
        self.error = error
        self.started = asyncio.Event()
        self.lost = False

    async def wait(self) -> None:
        self.started.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            if self.lost:
                raise
            self.lost = True
            if self.error is not None:
                raise self.error() from None


async def stop(task: asyncio.Task[Any]) -> bool:
    """Cancel `task` once; True if it ended within 5 s. (One that did not is cancelled again,
    so a failing test leaves nothing running.)"""
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return task in done


async def test_a_lost_cancellation_is_raised_at_the_next_check() -> None:
    loser = CancelLoser()

    async def loop_forever() -> None:
        while True:
            raise_if_cancelled()
            await loser.wait()

    task = asyncio.create_task(loop_forever())
    await loser.started.wait()
    assert await stop(task)
    assert task.cancelled() and loser.lost


async def test_no_check_fires_without_a_cancel() -> None:
    raise_if_cancelled()  # a task that was never cancelled goes on
    assert asyncio.current_task() is not None


@pytest.mark.parametrize("error", [None, TimeoutError, RuntimeError])
async def test_a_supervised_duty_that_loses_its_cancel_still_stops(
    error: type[BaseException] | None,
) -> None:
    """The supervisor restarts a duty that returned or crashed and pauses on a store outage;
    a cancel that was lost, or came back as a timeout or an error, is shutdown all the same."""
    loser = CancelLoser(error)
    runs = 0

    async def duty(_: Any) -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            await loser.wait()
        else:
            await asyncio.sleep(30)  # a restarted duty

    task = asyncio.create_task(app_module.supervise(duty, None))  # type: ignore[arg-type]
    await loser.started.wait()
    assert await stop(task)
    assert (runs, loser.lost) == (1, True)
