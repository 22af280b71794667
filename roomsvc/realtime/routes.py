"""The realtime feature (docs/spec.md §6): the WebSocket route and its background duties."""

from __future__ import annotations

import asyncio
from typing import Any

from starlette.routing import BaseRoute, WebSocketRoute

from roomsvc.realtime import drain, presence
from roomsvc.realtime.endpoint import RealtimeEndpoint, hub_of


async def bridge_duty(app: Any) -> None:
    """The pub/sub link of this process (reconnects and resyncs by itself)."""
    hub = hub_of(app)
    drain.install(hub)
    try:
        await hub.bridge.run()
    finally:
        await hub.bridge.stop()


async def message_links_duty(app: Any) -> None:
    """The sharded pub/sub links of in-room messages: made as rooms are followed, closed here."""
    hub = hub_of(app)
    try:
        await asyncio.Event().wait()
    finally:
        await hub.feeds.stop()


async def presence_duty(app: Any) -> None:
    """Refresh this process's players' presence deadlines and release lapsed seats."""
    hub = hub_of(app)
    await presence.run(hub.presence, hub)


routes: list[BaseRoute] = [
    WebSocketRoute("/games/v1/realtime", RealtimeEndpoint(), name="realtime"),
]
duties = [bridge_duty, message_links_duty, presence_duty]
