"""The push path, from the pub/sub message to the frame (docs/realtime.md "The push path").

1. `on_message`: the bridge hands over `<roomId> <version>` published on a player's channel
   (docs/design.md "Pushes: publish little, render per receiver"); the player's connections
   here that have not shown that version are the targets.
2. The room at that version is taken from the shared documents (`Views`) or loaded once for
   every target waiting on it (no round trip when this process made the change).
3. `deliver`: each target's `Shown` decides (skip, show the room, show the change that took the
   player out, forget); the frame, rendered once per distinct view, is written synchronously
   when nothing stands in its way (socket writable, no send in progress, no call holding the
   room), else the room is queued.
4. `_drain`: a connection's queue is sent by one task made only while it has something to send;
   it renders the newest version of each queued room and re-decides under the send lock, so a
   push rendered before a reply can never follow it with an older version.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator

from roomsvc.common import logs
from roomsvc.common.metrics import PUSH_LATENCY
from roomsvc.realtime.connection import CLOSE_POLICY, Connection, ConnectionGone
from roomsvc.realtime.feeds import Feeds
from roomsvc.realtime.shown import Show
from roomsvc.realtime.views import Views
from roomsvc.rooms.rules import RoomDoc
from roomsvc.store.connection import UNAVAILABLE_ERRORS

log = logging.getLogger("roomsvc.realtime")
MAX_PENDING_ROOMS = 1024  # a queue past this many rooms: the client is not reading (1008)
_RETRY_S = 0.5  # a queued push whose room could not be read is tried again after this


class Pushes:
    def __init__(self, views: Views, feeds: Feeds) -> None:
        self.views = views
        self.feeds = feeds
        # (app, roomId) -> the connections waiting for its load, with the version each wants
        self._waiting: dict[tuple[str, str], list[tuple[Connection, int]]] = {}
        self._loads: set[asyncio.Task[None]] = set()

    # ---- 1. the pub/sub message ---------------------------------------------------------------

    def on_message(self, conns: list[Connection], data: bytes) -> None:
        """`<roomId> <version>` for the connections of one player."""
        room_id, _, raw_version = data.decode(errors="replace").partition(" ")
        if not raw_version.isdigit():
            return
        version = int(raw_version)
        targets = [
            c for c in conns
            if c.rooms_scope and not c.closed and version > c.shown.version(room_id)
        ]  # fmt: skip
        if not targets:
            return
        app = targets[0].principal.app_id
        doc = self.views.cached(app, room_id, version)
        if doc is not None:
            for conn in targets:
                self.deliver(conn, doc, version)
            return
        key = (app, room_id)
        waiting = self._waiting.get(key)
        if waiting is not None:  # a load is under way: these wait for it too
            waiting.extend((conn, version) for conn in targets)
            return
        self._waiting[key] = [(conn, version) for conn in targets]
        task = asyncio.create_task(self._load_then_deliver(app, room_id, version))
        self._loads.add(task)
        task.add_done_callback(self._loads.discard)

    # ---- 2. the document, loaded once ---------------------------------------------------------

    async def _load_then_deliver(self, app: str, room_id: str, version: int) -> None:
        doc: RoomDoc | None = None
        failed = False
        try:
            doc = await self.views.doc(app, room_id, version)
        except UNAVAILABLE_ERRORS:
            failed = True  # each connection's queue retries (and the resync covers the rest)
        except Exception:
            failed = True
            log.exception("loading a pushed room failed")
        finally:
            waiting = self._waiting.pop((app, room_id), [])
        if doc is None and not failed:
            return  # the room no longer exists
        for conn, wanted in waiting:
            if doc is None or doc.version < wanted:
                self.offer(conn, room_id, wanted)
            else:
                self.deliver(conn, doc, wanted)

    # ---- 3. one connection ----------------------------------------------------------------------

    def deliver(self, conn: Connection, doc: RoomDoc, announced: int) -> None:
        """Show `doc` (at or past the announced version) on `conn`: now, or through its queue."""
        self.feeds.observe(conn, doc, deleted=self.views.deleted(doc))
        if conn.closed:
            return
        if not conn.ready or conn.shown.holds(doc.room_id):
            # The welcome or a reply that shows the room is being built: what this connection
            # has shown is not settled yet, so the queue decides once it is.
            self.offer(conn, doc.room_id, announced)
            return
        in_room = self.views.involved(doc, conn.principal.player_id)
        show = conn.shown.decide(doc.room_id, doc.version, in_room)
        if show is Show.SKIP:
            return
        if show is Show.FORGET:
            conn.shown.forget(doc.room_id)
            return
        text = self.views.frame(doc, conn.principal.player_id, conn.locale, conn.base_url)
        if conn.write_now(text):
            self._record(conn, doc, show)
            PUSH_LATENCY.observe(max(0.0, time.time() - doc.updated_ms / 1000))
        else:
            self.offer(conn, doc.room_id, announced)

    @staticmethod
    def _record(conn: Connection, doc: RoomDoc, show: Show) -> None:
        if show is Show.LAST:  # the player is out of the room for good: stop tracking it
            conn.shown.forget(doc.room_id)
        else:
            conn.shown.record(doc.room_id, doc.version)

    def offer(self, conn: Connection, room_id: str, version: int) -> None:
        """Queue `version` of a room on `conn` (synchronous, never blocks)."""
        if conn.closed or not conn.shown.queue(room_id, version):
            return
        if len(conn.shown.pending) > MAX_PENDING_ROOMS:
            conn.close_soon(CLOSE_POLICY, "push queue overflow: the client is not reading")
            return
        self.kick(conn)

    def kick(self, conn: Connection) -> None:
        """Start sending `conn`'s queue if it has one and nothing is sending it yet."""
        if conn.ready and conn.shown.pending and conn.sender is None and not conn.closed:
            conn.sender = asyncio.create_task(self._drain(conn))

    @contextlib.asynccontextmanager
    async def holding(self, conn: Connection, room_id: str | None) -> AsyncIterator[None]:
        """Serve a rooms call after the connection's earlier ones, holding back the pushes of
        `room_id` (None: of every room) until the call has sent its reply."""
        async with conn.room_calls():
            conn.shown.hold(room_id)
            try:
                yield
            finally:
                conn.shown.release()
                self.kick(conn)

    # ---- 4. a connection's queue --------------------------------------------------------------

    async def _drain(self, conn: Connection) -> None:
        token = logs.bind(conn_id=conn.id)
        try:
            while not conn.closed and (entry := conn.shown.next_pending()) is not None:
                room_id, version = entry
                if version <= conn.shown.version(room_id):
                    continue
                try:
                    doc = await self.views.doc(conn.principal.app_id, room_id, version)
                except UNAVAILABLE_ERRORS:
                    conn.shown.queue(room_id, version)  # retried; the resync covers the rest
                    await asyncio.sleep(_RETRY_S)
                    continue
                if doc is not None:
                    await self._send_queued(conn, doc)
        except ConnectionGone:
            pass
        except Exception:
            log.exception("push failed", extra={"conn_id": conn.id})
        finally:
            conn.sender = None
            logs.unbind(token)

    async def _send_queued(self, conn: Connection, doc: RoomDoc) -> None:
        self.feeds.observe(conn, doc, deleted=self.views.deleted(doc))
        player = conn.principal.player_id
        in_room = self.views.involved(doc, player)
        if conn.shown.decide(doc.room_id, doc.version, in_room) is Show.SKIP:
            return
        text = self.views.frame(doc, player, conn.locale, conn.base_url)
        async with conn.exclusive():
            if conn.shown.holds(doc.room_id):  # a call began meanwhile: after its reply
                conn.shown.queue(doc.room_id, doc.version)
                return
            show = conn.shown.decide(doc.room_id, doc.version, in_room)
            if show is Show.FORGET:
                conn.shown.forget(doc.room_id)
            if show in (Show.SKIP, Show.FORGET):
                return
            self._record(conn, doc, show)
            await conn.write(text)
        PUSH_LATENCY.observe(max(0.0, time.time() - doc.updated_ms / 1000))
