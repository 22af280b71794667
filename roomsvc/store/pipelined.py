"""Commands and script calls sent together, in order, in one round trip (SPEC §11).

The matcher's rounds write hundreds of rooms; what one of them costs is mostly round trips and
client CPU (DESIGN "Where the CPU goes"). redis-py's own pipelines spend an extra round trip
(`SCRIPT EXISTS`) before any pipeline that holds a script call; here the script calls go out as
plain EVALSHAs, and only a call the server answers NOSCRIPT (its script cache was flushed or
it restarted) is sent again once the script is loaded: a NOSCRIPT reply means the script did
not run, so sending it again cannot apply anything twice.

On a plain server one pipeline carries everything, in the order given: "add an index entry
before the room write" (DESIGN "Rooms") holds because the server runs a connection's commands
in order. On a cluster, where redis-py refuses EVALSHA in a pipeline and a batch spans slots,
each run of consecutive plain commands is one cluster pipeline and each run of script calls
goes out concurrently (`connection.run_scripts`), one run after the other, so the order
between runs still holds.
"""

from __future__ import annotations

from typing import Any

from redis.exceptions import NoScriptError, ResponseError

from roomsvc.store.connection import is_cluster, run_scripts


class Batch:
    """Queue with `command` and `script`; `run` returns every reply in the order queued."""

    def __init__(self, store: Any) -> None:
        self.store = store
        # (method name, args, kwargs) for a command; (script, keys, args) for a script call
        self._ops: list[tuple[bool, Any, Any, Any]] = []

    def __len__(self) -> int:
        return len(self._ops)

    def command(self, name: str, *args: Any, **kwargs: Any) -> int:
        """Queue `store.<name>(*args, **kwargs)`; returns the index of its reply."""
        self._ops.append((False, name, args, kwargs))
        return len(self._ops) - 1

    def script(self, script: Any, keys: list[Any], args: list[Any]) -> int:
        """Queue a call of a registered script; returns the index of its reply."""
        self._ops.append((True, script, keys, args))
        return len(self._ops) - 1

    async def run(self) -> list[Any]:
        if not self._ops:
            return []
        if is_cluster(self.store):
            return await self._run_on_cluster()
        replies = await self._pipeline(self._ops)
        missing = [n for n, r in enumerate(replies) if isinstance(r, NoScriptError)]
        if missing:
            for script in {id(self._ops[n][1]): self._ops[n][1] for n in missing}.values():
                script.sha = await self.store.script_load(script.script)
            again = await self._pipeline([self._ops[n] for n in missing])
            for n, reply in zip(missing, again, strict=True):
                replies[n] = reply
        for reply in replies:
            if isinstance(reply, ResponseError):
                raise reply
        return replies

    async def _pipeline(self, ops: list[tuple[bool, Any, Any, Any]]) -> list[Any]:
        async with self.store.pipeline(transaction=False) as pipe:
            for is_script, what, args, extra in ops:
                if is_script:
                    pipe.evalsha(what.sha, len(args), *args, *extra)
                else:
                    getattr(pipe, what)(*args, **extra)
            return list(await pipe.execute(raise_on_error=False))

    async def _run_on_cluster(self) -> list[Any]:
        replies: list[Any] = []
        start = 0
        while start < len(self._ops):
            end = start
            kind = self._ops[start][0]
            while end < len(self._ops) and self._ops[end][0] == kind:
                end += 1
            run = self._ops[start:end]
            if kind:
                replies += await run_scripts(self.store, [(s, k, a) for _, s, k, a in run])
            else:
                async with self.store.pipeline() as pipe:
                    for _, name, args, kwargs in run:
                        getattr(pipe, name)(*args, **kwargs)
                    replies += list(await pipe.execute())
            start = end
        return replies
