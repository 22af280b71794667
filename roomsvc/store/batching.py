"""Commands sent together share one round trip (docs/spec.md §11; docs/store.md "Round trips").

A Python process, not the store, is the first ceiling: one command sent on its own costs the
client ~170 us of CPU (pool checkout, timeouts, one write and one read per command), while the
same command sent in a pipeline with its neighbours costs ~35 us (`scripts/bench_rooms.py`
prints both). Two ways in, one way out:

- `CommandBatcher`, for the request path: every command issued before the event loop next polls
  for I/O (by any number of concurrent requests) goes out as one batch, each caller awaiting its
  own reply or its own error. Nobody waits for a batch to fill: a lone command is sent on the
  very next loop iteration, so latency does not grow on an idle server.
- `Batch`, for the matcher's rounds: the caller queues commands and script calls and `run`s
  them, replies in the order queued.

Both end in `send`. On a plain server a batch is packed by hiredis (in C), written at once on
the process's store link (link.py), and its replies are parsed raw by hiredis (RESP3 types:
bytes, int, float, list, dict, bool or None; no redis-py response callbacks) under one
deadline for the whole batch; the server runs a connection's
commands in order, so "add an index entry before the room write" (docs/design.md "Rooms") holds
within a batch. A lost connection is retried once on a new one, as redis-py's own retry would:
everything batched is idempotent (reads, ZADD/ZREM of a member, scripts keyed by a match or
request id; docs/design.md "Retries never double-apply"). Scripts go out as plain EVALSHA, and
only a call the server answers NOSCRIPT (its script cache was flushed, or it restarted: the call
did not run) is sent again once its script is loaded, so nothing runs twice.

On a cluster a batch spans slots, and redis-py refuses EVALSHA in a cluster pipeline: there
`_on_cluster` is the one fallback. Each run of consecutive plain commands is one cluster
pipeline, each run of script calls goes out concurrently (each routed to its slot), one run
after the other, so the order between runs still holds. redis-py's response callbacks apply
there: callers batch only commands whose replies are the same either way.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from redis.exceptions import NoScriptError

from roomsvc.store.connection import Store, is_cluster
from roomsvc.store.link import link_of
from roomsvc.store.scripts import Script

MAX_BATCH = 512  # commands per batch of the CommandBatcher; more wait for the next one
BATCH_TIMEOUT_S = 5.0  # no reply at all for this long: the connection is given up
PER_COMMAND_S = 0.001  # plus this much per command of the batch
CLUSTER_SCRIPTS_AT_ONCE = 64  # script calls in flight at once on a cluster: below a node's pool

_Command = tuple[Any, ...]
_Pending = list[tuple[_Command, "asyncio.Future[Any]"]]


def _evalsha(script: Script, keys: Sequence[Any], args: Sequence[Any]) -> _Command:
    return ("EVALSHA", script.sha, len(keys), *keys, *args)


class CommandBatcher:
    """Commands issued in the same turn of the event loop, sent as one batch."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # A plain server gets a batch in one write on one connection and runs it in the order
        # queued; a cluster's nodes each get their share, in no order across them.
        self.in_order = not is_cluster(store)
        self._pending: _Pending = []
        self._sources: dict[str, str] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def execute(self, *args: Any) -> asyncio.Future[Any]:
        """The reply of one idempotent command (raw on a plain server: RESP3 types as hiredis
        reads them), or its error; a future to await."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._pending:
            loop.call_soon(self.flush)
        self._pending.append((args, future))
        if len(self._pending) >= MAX_BATCH:
            self.flush()
        return future

    def call(self, script: Script, *, keys: list[Any], args: list[Any]) -> asyncio.Future[Any]:
        """The reply of one call of `script`; a future to await."""
        return self.execute(*self.script_command(script, keys, args))

    def script_command(self, script: Script, keys: list[Any], args: list[Any]) -> _Command:
        """One call of `script` as a command for `execute_together`."""
        self._sources[script.sha] = script.source
        return _evalsha(script, keys, args)

    def execute_together(self, commands: Sequence[_Command]) -> list[asyncio.Future[Any]]:
        """`execute` for commands that must share one batch, in this order: a batch that would
        grow past MAX_BATCH is sent first rather than split them, so on a plain server
        (`in_order`) the later ones run only after the earlier ones. There a script call
        followed by others in the group goes out with its source (EVAL): an EVALSHA the store
        answered NOSCRIPT (its script cache flushed, or a restart) would be sent again after
        the batch, behind the commands that were to follow it."""
        if self.in_order:
            last = len(commands) - 1
            commands = [self._with_source(c) if n < last else c for n, c in enumerate(commands)]
        if self._pending and len(self._pending) + len(commands) > MAX_BATCH:
            self.flush()
        loop = asyncio.get_running_loop()
        if not self._pending:
            loop.call_soon(self.flush)
        futures = [loop.create_future() for _ in commands]
        self._pending.extend(zip(commands, futures, strict=True))
        return futures

    def _with_source(self, command: _Command) -> _Command:
        if command[0] != "EVALSHA":
            return command
        return ("EVAL", self._sources[str(command[1])], *command[2:])

    def flush(self) -> None:
        batch, self._pending = self._pending, []
        if not batch:
            return
        commands = [args for args, _ in batch]
        if self.in_order:  # no task: the link calls back with the replies (link.py)
            link_of(self.store).submit(
                commands,
                lambda outcome: self._answered(batch, outcome),
                deadline_of(commands),
                lambda: not all(future.done() for _, future in batch),
            )
            return
        self._spawn(self._send(batch, send(self.store, commands, self._sources)))

    def _answered(self, batch: _Pending, outcome: list[Any] | BaseException) -> None:
        if not isinstance(outcome, BaseException) and any(
            isinstance(reply, NoScriptError) for reply in outcome
        ):
            commands = [args for args, _ in batch]
            self._spawn(self._send(batch, reload_missing(self.store, commands, outcome,
                                                         self._sources)))  # fmt: skip
            return
        self._resolve(batch, outcome)

    def _spawn(self, work: Any) -> None:
        task = asyncio.get_running_loop().create_task(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: _Pending, replies: Any) -> None:
        try:
            outcome = await replies
        except BaseException as exc:
            self._resolve(batch, exc)
            if not isinstance(exc, Exception):
                raise
            return
        self._resolve(batch, outcome)

    @staticmethod
    def _resolve(batch: _Pending, outcome: list[Any] | BaseException) -> None:
        if isinstance(outcome, BaseException):  # the whole round trip failed: all learn why
            for _, future in batch:
                if not future.done():
                    future.set_exception(outcome)
            return
        for (_, future), reply in zip(batch, outcome, strict=True):
            if future.done():  # the caller was cancelled; the command still ran
                continue
            if isinstance(reply, BaseException):
                future.set_exception(reply)
            else:
                future.set_result(reply)


class Batch:
    """Queue with `command` and `script`; `run` returns every reply in the order queued, and
    raises the first error reply."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._commands: list[_Command] = []
        self._sources: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self._commands)

    def command(self, *args: Any) -> int:
        """Queue one command (`"ZADD", key, score, member`); returns the index of its reply."""
        self._commands.append(args)
        return len(self._commands) - 1

    def script(self, script: Script, keys: Sequence[Any], args: Sequence[Any]) -> int:
        """Queue a call of `script`; returns the index of its reply."""
        self._sources[script.sha] = script.source
        return self.command(*_evalsha(script, keys, args))

    async def run(self) -> list[Any]:
        if not self._commands:
            return []
        replies = await send(self.store, self._commands, self._sources)
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies


async def send(store: Store, commands: Sequence[_Command], sources: dict[str, str]) -> list[Any]:
    """The replies of `commands`, in order, error replies in place as exceptions; raises only
    when the batch as a whole failed. Every EVALSHA the store answered NOSCRIPT is sent once
    more after its script (`sources`: sha -> Lua source) is loaded."""
    return await reload_missing(store, commands, await _send_once(store, commands), sources)


async def reload_missing(store: Store, commands: Sequence[_Command], replies: list[Any],
                         sources: dict[str, str]) -> list[Any]:  # fmt: skip
    """`replies` with each NOSCRIPT answer replaced by the reply of its call sent once more,
    after its script is loaded."""
    missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for sha in {str(commands[n][1]) for n in missing}:
            await store.script_load(sources[sha])  # the same sha: it is the source's SHA-1
        again = await _send_once(store, [commands[n] for n in missing])
        for n, reply in zip(missing, again, strict=True):
            replies[n] = reply
    return replies


async def _send_once(store: Store, commands: Sequence[_Command]) -> list[Any]:
    if is_cluster(store):
        return await _on_cluster(store, commands)
    return await send_packed(store, commands)


def deadline_of(commands: Sequence[_Command]) -> float:
    """How long a batch may wait for all its replies before its connection is given up."""
    return BATCH_TIMEOUT_S + PER_COMMAND_S * len(commands)


async def send_packed(store: Any, commands: Sequence[_Command]) -> list[Any]:
    """Raw replies of `commands` (error replies as ResponseError values, in place), sent to a
    plain server in one write on the process's store link (link.py: its deadline, and one
    more attempt on a new connection after a lost one)."""
    return await link_of(store).request(commands, deadline_of(commands))


async def _on_cluster(store: Any, commands: Sequence[_Command]) -> list[Any]:
    """The cluster fallback (module doc): runs of plain commands as cluster pipelines, runs of
    script calls concurrently, one run after the other."""
    replies: list[Any] = []
    start = 0
    while start < len(commands):
        scripted = commands[start][0] == "EVALSHA"
        end = start
        while end < len(commands) and (commands[end][0] == "EVALSHA") == scripted:
            end += 1
        if scripted:
            for at in range(start, end, CLUSTER_SCRIPTS_AT_ONCE):
                chunk = commands[at : min(end, at + CLUSTER_SCRIPTS_AT_ONCE)]
                replies += await asyncio.gather(
                    *(store.execute_command(*args) for args in chunk), return_exceptions=True
                )
        else:
            async with store.pipeline() as pipe:
                for args in commands[start:end]:
                    pipe.execute_command(*args)
                replies += await pipe.execute(raise_on_error=False)
        start = end
    return replies
