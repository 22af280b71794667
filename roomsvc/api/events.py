"""REST routes for events (filled in by its feature)."""

from __future__ import annotations

from starlette.routing import BaseRoute

routes: list[BaseRoute] = []
duties: list = []
