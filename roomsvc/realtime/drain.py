"""Graceful shutdown of the realtime channel (docs/spec.md §6, §12 item 11).

uvicorn, on SIGTERM, closes every WebSocket with 1012 at once, before the calls in flight on
them can answer. So the process's SIGTERM (and SIGINT) handler is wrapped: the first signal
drains the hub (new requests are no longer read, calls in flight finish and reply, then every
socket closes with 1012 so clients reconnect elsewhere) and only then hands the signal to the
server's own handler, which stops the process. A second signal goes straight through.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from types import FrameType
from typing import Any

from roomsvc.realtime.hub import Hub

CALLS_TIMEOUT_S = 10.0


class _DrainFirst:
    roomsvc_drain = True

    def __init__(self, hub: Hub, loop: asyncio.AbstractEventLoop, previous: Any) -> None:
        self.hub = hub
        self.loop = loop
        self.previous = previous
        self.task: asyncio.Task[None] | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        if self.hub.draining or self.loop.is_closed():
            self._forward(signum, frame)
            return
        self.hub.draining = True
        self.loop.call_soon_threadsafe(self._start, signum, frame)

    def _start(self, signum: int, frame: FrameType | None) -> None:
        self.task = self.loop.create_task(self._drain_then_forward(signum, frame))

    async def _drain_then_forward(self, signum: int, frame: FrameType | None) -> None:
        try:
            await self.hub.drain(CALLS_TIMEOUT_S)
        finally:
            self._forward(signum, frame)

    def _forward(self, signum: int, frame: FrameType | None) -> None:
        if callable(self.previous):
            self.previous(signum, frame)
        elif self.previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)


def install(hub: Hub) -> None:
    """Wrap the current SIGTERM/SIGINT handlers (the server's) once per process."""
    if threading.current_thread() is not threading.main_thread():
        return
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        previous = signal.getsignal(signum)
        if getattr(previous, "roomsvc_drain", False) or previous == signal.SIG_IGN:
            continue
        signal.signal(signum, _DrainFirst(hub, loop, previous))
