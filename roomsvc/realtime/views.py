"""Room documents and rendered `roomStatus` frames, shared by a process's connections.

A change reaches a process as `<roomId> <version>` (docs/design.md "Pushes: publish little, render
per receiver"). The first connection that needs that version loads the document once (concurrent
needs share the one read), and each distinct view (receiver, language, public URL) is rendered and
encoded once, whatever the number of that player's connections (docs/spec.md §11: CPU per fan-out).
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

import msgspec

from roomsvc.realtime import protocol
from roomsvc.rooms.rules import PStatus, RoomDoc, RoomState
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import Shared, ViewContext, render_room

_encode = msgspec.json.Encoder().encode
_MAX_ROOMS = 8192
_LOAD_ATTEMPTS = 3


class _Entry:
    __slots__ = ("doc", "frames", "shared")

    def __init__(self, doc: RoomDoc) -> None:
        self.doc = doc
        self.frames: dict[tuple[str, str, str], str] = {}
        self.shared: Shared | None = None  # `Views._shared`


def _consume(future: asyncio.Future[RoomDoc | None]) -> None:
    if not future.cancelled():
        future.exception()  # retrieved: a failed shared load is raised to its waiters


class Views:
    def __init__(
        self,
        room_store: RoomStore,
        wait_estimate: Callable[[], Callable[[str, int | None], int | None] | None],
    ) -> None:
        self.room_store = room_store
        self.wait_estimate = wait_estimate
        self._rooms: collections.OrderedDict[tuple[str, str], _Entry] = collections.OrderedDict()
        self._loading: dict[tuple[str, str], asyncio.Future[RoomDoc | None]] = {}

    def put(self, doc: RoomDoc) -> None:
        """Remember a document read elsewhere (resync), unless a newer one is known."""
        key = (doc.app_id, doc.room_id)
        entry = self._rooms.get(key)
        if entry is None or entry.doc.version < doc.version:
            self._rooms[key] = _Entry(doc)
        self._rooms.move_to_end(key)
        if len(self._rooms) > _MAX_ROOMS:
            self._rooms.popitem(last=False)

    def cached(self, app: str, room_id: str, version: int) -> RoomDoc | None:
        """The room at `version` or newer if it is in memory, without waiting: here, or in the
        room store's cache when this process made the change (no load task for it)."""
        entry = self._rooms.get((app, room_id))
        if entry is not None and entry.doc.version >= version:
            return entry.doc
        doc = self.room_store.cached(app, room_id)
        if doc is None or doc.version < version:
            return None
        self.put(doc)
        return doc

    async def doc(self, app: str, room_id: str, version: int) -> RoomDoc | None:
        """The room at `version` or newer; None when it no longer exists."""
        key = (app, room_id)
        doc: RoomDoc | None = None
        for _ in range(_LOAD_ATTEMPTS):
            entry = self._rooms.get(key)
            if entry is not None and entry.doc.version >= version:
                return entry.doc
            loading = self._loading.get(key)
            if loading is None:
                loading = asyncio.get_running_loop().create_future()
                loading.add_done_callback(_consume)
                self._loading[key] = loading
                try:
                    # The store's own cache holds what this process wrote: no round trip
                    # for a change made here; anything older is read afresh.
                    doc = await self.room_store.load(app, room_id)
                    if doc is not None and doc.version < version:
                        doc = await self.room_store.load(app, room_id, fresh=True)
                except asyncio.CancelledError:
                    loading.cancel()  # waiters load again themselves
                    raise
                except Exception as exc:
                    loading.set_exception(exc)
                    raise
                finally:
                    if self._loading.get(key) is loading:
                        del self._loading[key]
                if not loading.done():
                    loading.set_result(doc)
            else:
                try:
                    doc = await asyncio.shield(loading)
                except asyncio.CancelledError:
                    if loading.cancelled():
                        continue
                    raise
            if doc is None:
                return None
            self.put(doc)
            if doc.version >= version:
                return doc
        return doc  # the store is behind what was announced (not expected): newest we have

    def involved(self, doc: RoomDoc, player_id: str) -> bool:
        """The player is in the room or invited to it: it receives its changes (docs/spec.md §6)."""
        p = doc.of_player(player_id)
        if p is None or p.status not in (PStatus.JOINED, PStatus.INVITED):
            return False
        return not self.deleted(doc)

    def deleted(self, doc: RoomDoc) -> bool:
        """The room's derived status is DELETED: computed once per document, not once per
        receiver (it is a pass over every pair of participants)."""
        return self._shared(doc).status is RoomState.DELETED

    def _shared(self, doc: RoomDoc) -> Shared:
        """What every receiver's view of `doc` has in common: made once while `doc` is the
        version held here, else for this caller alone."""
        entry = self._rooms.get((doc.app_id, doc.room_id))
        if entry is None or entry.doc is not doc:
            return Shared(doc)
        if entry.shared is None:
            entry.shared = Shared(doc)
        return entry.shared

    def frame(self, doc: RoomDoc, player_id: str, locale: str, base_url: str) -> str:
        """The `roomStatus` notification of `doc` as `player_id` sees it, encoded once."""
        key = (player_id, locale, base_url)
        entry = self._rooms.get((doc.app_id, doc.room_id))
        if entry is not None and entry.doc is doc:
            cached = entry.frames.get(key)
            if cached is not None:
                return cached
        ctx = ViewContext(locale=locale, base_url=base_url,
                          wait_estimate=self.wait_estimate())  # fmt: skip
        view = render_room(doc, player_id, ctx, self._shared(doc))
        text = protocol.notification("roomStatus", _encode(view))
        if entry is not None and entry.doc is doc:
            entry.frames[key] = text
        return text
