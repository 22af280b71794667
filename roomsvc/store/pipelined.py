"""Commands and script calls sent together, in order, in one round trip (docs/spec.md §11).

The matcher's rounds write hundreds of rooms at once, and what that costs is client CPU
(docs/design.md "Where the CPU goes"). redis-py's pipelines spend an extra round trip (`SCRIPT
EXISTS`) before any pipeline that holds a script call, pack each command in Python and arm a
timer for every reply; here a batch is packed by hiredis (in C), written at once, and its
replies are read raw (bytes, int, list or None: no redis-py response callbacks) under one
deadline for the whole batch. A script call goes out as a plain EVALSHA, and only a call the
server answers NOSCRIPT (its script cache was flushed, or it restarted) is sent again once the
script is loaded: a NOSCRIPT reply means the script did not run, so nothing runs twice.

On a plain server one write carries everything, in the order given: "add an index entry before
the room write" (docs/design.md "Rooms") holds because the server runs a connection's commands in
order. A lost connection is retried once on a new one, as redis-py's own retry would: every
command the matcher batches is idempotent (reads, ZADD/ZREM of a member, scripts keyed by a
match or request id; docs/design.md "Retries never double-apply"). On a cluster, where a batch spans
slots, each run of consecutive plain commands is one cluster pipeline and each run of script
calls goes out concurrently (`connection.run_scripts`), one run after the other, so the order
between runs still holds (and redis-py's response callbacks apply there: the matcher batches
only commands whose replies are the same either way).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
from typing import Any

import hiredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from roomsvc.store.connection import is_cluster, run_scripts

BATCH_TIMEOUT_S = 5.0  # no reply at all for this long: the connection is given up
PER_COMMAND_S = 0.001  # plus this much per command of the batch


class Batch:
    """Queue with `command` and `script`; `run` returns every reply in the order queued."""

    def __init__(self, store: Any) -> None:
        self.store = store
        self._commands: list[tuple[Any, ...]] = []  # raw arguments, EVALSHA for a script
        self._scripts: dict[int, Any] = {}  # index -> the script object of a script call

    def __len__(self) -> int:
        return len(self._commands)

    def command(self, *args: Any) -> int:
        """Queue one command (`"ZADD", key, score, member`); returns the index of its reply."""
        self._commands.append(args)
        return len(self._commands) - 1

    def script(self, script: Any, keys: list[Any], args: list[Any]) -> int:
        """Queue a call of a registered script; returns the index of its reply."""
        self._scripts[len(self._commands)] = script
        return self.command("EVALSHA", script.sha, len(keys), *keys, *args)

    async def run(self) -> list[Any]:
        if not self._commands:
            return []
        if is_cluster(self.store):
            return await self._run_on_cluster()
        sources = {script.sha: script.script for script in self._scripts.values()}
        replies = await send_scripted(self.store, self._commands, sources)
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def _run_on_cluster(self) -> list[Any]:
        replies: list[Any] = []
        start = 0
        while start < len(self._commands):
            scripted = start in self._scripts
            end = start
            while end < len(self._commands) and (end in self._scripts) == scripted:
                end += 1
            if scripted:
                calls = [
                    (self._scripts[n], list(c[3 : 3 + c[2]]), list(c[3 + c[2] :]))
                    for n, c in enumerate(self._commands[start:end], start)
                ]
                replies += await run_scripts(self.store, calls)
            else:
                async with self.store.pipeline() as pipe:
                    for args in self._commands[start:end]:
                        pipe.execute_command(*args)
                    replies += list(await pipe.execute())
            start = end
        return replies


async def send_packed(store: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """Raw replies of `commands` (error replies as ResponseError values, in place), sent to a
    plain server in one write on one pooled connection and read under one deadline. Every
    command must be idempotent: after a lost connection the batch is sent once more, on a new
    connection (the idle ones are dropped first: a lost connection usually means the store
    restarted or dropped its clients, and they are as dead)."""
    packed = b"".join(map(hiredis.pack_command, commands))
    pool = store.connection_pool
    deadline_s = BATCH_TIMEOUT_S + PER_COMMAND_S * len(commands)
    for attempt in (1, 2):
        conn = None
        try:
            # One deadline for the attempt, the wait for a connection included: against a
            # stalled server a new connection is accepted by the kernel and then waits on its
            # handshake under redis-py's own retries (15-45 s; docs/store.md "Deadlines").
            # Cancelled there, the pool takes the connection back.
            async with asyncio.timeout(deadline_s):
                conn = await pool.get_connection()
                await conn.send_packed_command(packed)
                replies: list[Any] = []
                for _ in commands:
                    try:
                        # (math.inf: no timer per reply; the batch has one deadline)
                        replies.append(await conn.read_response(timeout=math.inf))
                    except ResponseError as exc:  # read on: the next reply follows it
                        replies.append(exc)
            return replies
        except (RedisConnectionError, RedisTimeoutError, TimeoutError):
            if conn is not None:
                await conn.disconnect()
            if attempt == 2:
                raise
            with contextlib.suppress(Exception):
                await pool.disconnect(inuse_connections=False)
        except BaseException:
            if conn is not None:
                await conn.disconnect()  # a half-read connection must not be reused
            raise
        finally:
            if conn is not None:
                await pool.release(conn)
    raise AssertionError("unreachable")


async def send_scripted(
    store: Any, commands: list[tuple[Any, ...]], sources: dict[str, str]
) -> list[Any]:
    """`send_packed`, then every EVALSHA the server answered NOSCRIPT (its script cache was
    flushed, or it restarted: the call did not run, so nothing runs twice) sent once more after
    its script (`sources`: sha -> Lua source) is loaded."""
    replies = await send_packed(store, commands)
    missing = [n for n, reply in enumerate(replies) if isinstance(reply, NoScriptError)]
    if missing:
        for sha in {str(commands[n][1]) for n in missing}:
            await store.script_load(sources[sha])  # the same sha: it is the source's SHA-1
        again = await send_packed(store, [commands[n] for n in missing])
        for n, reply in zip(missing, again, strict=True):
            replies[n] = reply
    return replies
