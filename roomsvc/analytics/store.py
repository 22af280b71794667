"""Analytics storage (docs/spec.md §8): a capped Redis Stream per application, one script per batch.

A batch is appended by one script call (lua/analytics_append.lua) together with its marker,
so it is stored whole or not at all, and at most once per marker. Every call carries a marker:
the client's BatchId, or one the service mints per request, which redis-py reuses when it
retries the command after a lost reply (docs/design.md "Retries never double-apply").

Consumers read the stream with consumer groups (`XGROUP CREATE ... $ MKSTREAM`,
`XREADGROUP`); each entry has one field, `item`, a JSON document (analytics_wire.StoredItem).
"""

from __future__ import annotations

import dataclasses

from roomsvc.store import keys, scripts
from roomsvc.store.connection import Store


@dataclasses.dataclass(frozen=True, slots=True)
class AppendResult:
    stored: bool  # False: the marker was there, this is a retry of a stored batch
    count: int


class AnalyticsStore:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._append = scripts.register(store, "analytics_append")
        # Applications this process has already added to keys.ANALYTICS_APPS: the SADD is
        # idempotent, the cache only saves its round trip on every later batch.
        self._known_apps: set[str] = set()

    async def append(
        self,
        app_id: str,
        marker: tuple[str, str],
        items: list[bytes],
        *,
        maxlen: int,
        marker_ttl_ms: int,
    ) -> AppendResult:
        """Store `items` in `app_id`'s stream unless `marker` (user key, batch id) exists.

        Each item is one compact JSON document (no raw newline: the script splits on it).
        """
        if app_id not in self._known_apps:
            await self._store.sadd(keys.ANALYTICS_APPS, app_id)
            self._known_apps.add(app_id)
        user_key, batch_id = marker
        stored, count = await self._append(
            keys=[
                keys.analytics_stream(app_id),
                keys.analytics_batch_marker(app_id, user_key, batch_id),
            ],
            args=[maxlen, marker_ttl_ms, b"\n".join(items)],
        )
        return AppendResult(bool(stored), int(count))
