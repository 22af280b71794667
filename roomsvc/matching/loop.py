"""The matcher duty's loop (docs/spec.md §5, §12 #3, #11): rounds back to back while there is work,
lapsed records of other processes recovered beside them, claims handed over on shutdown.
One round itself (claim, apply, retire) is rounds.py."""

from __future__ import annotations

import asyncio
from typing import Any

from roomsvc.common import logs
from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.matching.rounds import BUSY_ROUND, CONTENDED_S, IDLE_FIRST_S, Matcher, log
from roomsvc.store.connection import UNAVAILABLE_ERRORS


async def run_forever(matcher: Matcher, idle_s: float = 0.05) -> None:
    """Rounds back to back while there is work, else after a pause that grows from
    IDLE_FIRST_S to `idle_s` (the matcher duty): a group that forms just after a busy spell is
    claimed within milliseconds (docs/spec.md §11 time to match), an idle process polls rarely.

    Each round's apply overlaps the next round (`Matcher.run_once`). Lapsed records are
    looked for in a loop of their own, so a long round never delays the recovery of a dead
    process's claims. On cancellation (shutdown, SIGTERM) the rounds being applied stop and
    the records this process was applying are handed over at once rather than after their
    lease (docs/spec.md §12 #11).
    """
    recovering = asyncio.create_task(recover_forever(matcher, idle_s * 2))
    pause = IDLE_FIRST_S
    try:
        while True:
            raise_if_cancelled()
            work = await matcher.run_once()
            if work:
                pause = IDLE_FIRST_S
                # A small round is followed by a short pause rather than at once: a few more
                # tickets then arrive for the next round, which costs the same round trips.
                await asyncio.sleep(0 if work >= BUSY_ROUND else IDLE_FIRST_S)
            elif matcher.contended:
                await asyncio.sleep(CONTENDED_S)  # another process claims: our turn comes soon
            else:
                await asyncio.sleep(pause)
                pause = min(pause * 2, idle_s)
    finally:
        stopping = [recovering, *matcher.in_flight]
        for task in stopping:
            task.cancel()
        await asyncio.shield(_hand_over(matcher, stopping))


async def _hand_over(matcher: Matcher, stopping: list[asyncio.Task[Any]]) -> None:
    # Only once nothing of this process touches the pools any more: a recovery pass still
    # running would otherwise take back over the very records just handed over.
    await asyncio.gather(*stopping, return_exceptions=True)
    await matcher.release_claims()


async def recover_forever(matcher: Matcher, every_s: float) -> None:
    """Drive other processes' lapsed records forward, for as long as the matcher runs: a
    failed pass (the store unreachable a moment, a bug) is logged and the next one follows,
    since nothing else would recover orphaned claims (docs/spec.md §12 #3)."""
    while True:
        raise_if_cancelled()
        try:
            await matcher.recover_all()
        except UNAVAILABLE_ERRORS as exc:
            logs.outage_warning(log, "match-recovery", "match recovery paused: store unavailable",
                                error=type(exc).__name__)  # fmt: skip
        except Exception:
            log.exception("match recovery pass failed; retrying")
        await asyncio.sleep(every_s)
