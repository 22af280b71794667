"""Commands issued in the same turn of the event loop share one round trip (docs/spec.md §11).

A Python process, not the store, is the first ceiling: one command sent on its own costs the
client ~170 us of CPU (pool checkout, timeouts, one write and one read per command), while the
same command sent in a pipeline with its neighbours costs ~35 us (measured by
`scripts/bench_rooms.py`, which prints both). Concurrent requests each issue their own commands,
so `CommandBatcher` collects every command issued before the loop next polls for I/O and sends
them as one pipeline (not a transaction: each command keeps its own atomicity, and a script
stays one atomic step). Nobody waits for a batch to fill: a lone command is sent on the very
next loop iteration, so latency does not grow on an idle server.

Scripts go out as EVALSHA; a store that lost its script cache (restart, SCRIPT FLUSH) answers
NOSCRIPT for exactly those commands, which did not run, so they are loaded and sent again.

A cluster client cannot pipeline commands of different slots in one round trip, so there every
command is sent on its own, as before (README "Performance").
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

from roomsvc.store.connection import Store, is_cluster
from roomsvc.store.pipelined import send_scripted

MAX_BATCH = 512  # commands per pipeline; more wait for the next one (bounded write size)

_Pending = list[tuple[tuple[Any, ...], "asyncio.Future[Any]"]]


class BatchedScript:
    """A Lua script called through a batcher: `await script(keys=[...], args=[...])`."""

    def __init__(self, batcher: CommandBatcher, source: str) -> None:
        self.batcher = batcher
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()
        self._registered = batcher.store.register_script(source)  # the unbatched path

    def __call__(self, *, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        if self.batcher.direct:
            return asyncio.ensure_future(self._registered(keys=keys, args=args))
        return self.batcher.execute("EVALSHA", self.sha, len(keys), *keys, *args)


class CommandBatcher:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.direct = is_cluster(store)
        self._pending: _Pending = []
        self._sources: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def script(self, source: str) -> BatchedScript:
        script = BatchedScript(self, source)
        self._sources[script.sha] = source
        return script

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """The raw reply of one idempotent command (bytes, int, list or None: no redis-py
        response callbacks), or its error; a future to await."""
        loop = asyncio.get_running_loop()
        if self.direct:
            return asyncio.ensure_future(self.store.execute_command(*args))
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self._flush)
        self._pending.append((args, future))
        if len(self._pending) >= MAX_BATCH:
            self._flush()
        return future

    def _flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Pending) -> None:
        try:
            replies = await send_scripted(self.store, [args for args, _ in batch], self._sources)
        except BaseException as exc:  # the whole round trip failed: every caller learns why
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # the caller was cancelled; the command still ran
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)
