"""Cancellation that survives Python 3.11's asyncio (docs/spec.md §12 item 11: shutdown hands over).

On 3.11, `asyncio.wait_for` returns the inner result when a cancellation arrives in the same
loop turn as that result (redis-py wraps every socket write in one when a socket timeout is
set), and an `asyncio.timeout` that expires together with a cancellation raises TimeoutError
instead. Either way the cancel is gone, yet the task still counts it as requested
(`Task.cancelling()`): nothing called `uncancel()`. A background loop that never looks would
run on after shutdown cancelled it, and the process would not exit on SIGTERM. Every loop
that runs until cancelled therefore checks once per pass.
"""

from __future__ import annotations

import asyncio


def raise_if_cancelled() -> None:
    """Raise CancelledError if this task's cancellation was requested and then lost."""
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError()
