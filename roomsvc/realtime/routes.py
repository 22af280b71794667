"""The realtime feature (docs/spec.md §6): the WebSocket route and its background duties."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute

from roomsvc.realtime import drain, presence
from roomsvc.realtime.endpoint import RealtimeEndpoint
from roomsvc.realtime.hub import Hub


async def bridge_duty(app: Any) -> None:
    """The pub/sub link of this process (reconnects and resyncs by itself)."""
    hub: Hub = app.state.realtime
    drain.install(hub)
    try:
        await hub.bridge.run()
    finally:
        await hub.bridge.stop()


async def message_links_duty(app: Any) -> None:
    """The sharded pub/sub links of in-room messages: made as rooms are followed, closed here."""
    hub: Hub = app.state.realtime
    try:
        await asyncio.Event().wait()
    finally:
        await hub.feeds.stop()


async def presence_duty(app: Any) -> None:
    """Refresh this process's players' presence deadlines and release lapsed seats."""
    hub: Hub = app.state.realtime
    await presence.run(hub.presence, hub)


routes: list[BaseRoute] = [
    WebSocketRoute("/games/v1/realtime", RealtimeEndpoint(), name="realtime"),
]
duties = [bridge_duty, message_links_duty, presence_duty]
