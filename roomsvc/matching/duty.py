"""Auto-matching (docs/spec.md §5) as a background duty of every web process; it has no routes.

The duty shares the rooms service's pool store (tickets enter the pool on rooms.create) and
publishes the per-pool wait estimate that Room views show as waitEstimateSeconds.
"""

from __future__ import annotations

from typing import Any

from roomsvc.matching.loop import run_forever
from roomsvc.matching.rounds import Matcher

routes: list[Any] = []


async def matcher_duty(app: Any) -> None:
    settings = app.state.settings
    matcher = Matcher(
        app.state.room_store,
        app.state.rooms.pool,
        fill_window_ms=settings.fill_window_seconds * 1000,
    )
    app.state.wait_estimate = matcher.wait_estimate
    await run_forever(matcher)


duties = [matcher_duty]
