"""The connections of one process and everything they share (docs/spec.md §6).

- registry: connections by player channel, oldest first; a player over
  `ROOMSVC_WS_MAX_CONNECTIONS_PER_PLAYER` loses its oldest connection (1008), so a client that
  reconnects from a new network is never locked out by its own half-dead socket;
- pushes: the bridge's messages go to `Pushes` (pushes.py) with the player's connections;
- the welcome snapshot (every non-deleted room the player is in, and its pending invitations)
  and the resync after the bridge reconnects, both read from the per-player indexes verified
  against each room (docs/design.md "indexes as hints").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import msgspec

from roomsvc.common.clock import now_ms
from roomsvc.common.metrics import WS_CONNECTIONS
from roomsvc.messages.wire import IceServer
from roomsvc.realtime import protocol
from roomsvc.realtime.bridge import Bridge
from roomsvc.realtime.connection import CLOSE_POLICY, CLOSE_RESTART, Connection
from roomsvc.realtime.messaging import Messaging
from roomsvc.realtime.presence import Presence
from roomsvc.realtime.pushes import Pushes
from roomsvc.realtime.views import Views
from roomsvc.rooms import rules as rooms
from roomsvc.rooms import wire
from roomsvc.rooms.view import ViewContext, render_room
from roomsvc.settings import Settings
from roomsvc.store import keys

log = logging.getLogger("roomsvc.realtime")

_encode = msgspec.json.Encoder().encode
_RESYNC_BATCH = 200
ADMISSIONS = 64
_LIST_PAGE = 500


class Welcome(msgspec.Struct, rename="camel"):
    player_id: str
    application_id: str
    server_time_millis: str  # int64 travels as a string, like every *Millis field (docs/spec.md §3)
    rooms: list[wire.Room]
    invitations: list[wire.Room]
    ice_servers: list[IceServer]  # RTCPeerConnection's shape (docs/messages.md)


class Hub:
    def __init__(self, state: Any, settings: Settings) -> None:
        self.state = state
        self.settings = settings
        self.room_store = state.room_store
        self.views = Views(self.room_store, self.wait_estimate)
        self.presence = Presence(self.room_store, settings.presence_grace_seconds)
        self.bridge = Bridge(settings.redis_url or "", self.on_message, self.resync,
                             on_late=self._subscribed_late)  # fmt: skip
        self.messaging = Messaging(state, settings)
        self.feeds = self.messaging.feeds
        self.pushes = Pushes(self.views, self.feeds)
        self.players: dict[bytes, list[Connection]] = {}
        self.count = 0
        self.draining = False
        # Handshake work (subscribe, presence, snapshot) at most this many at once: a storm of
        # reconnects queues here instead of exhausting the store's connection pool.
        self.admission = asyncio.Semaphore(ADMISSIONS)

    def wait_estimate(self) -> Callable[[str, int | None], int | None] | None:
        """The matcher's (applicationId, variant) -> seconds, when matching runs here."""
        return self.state.wait_estimate

    @property
    def full(self) -> bool:
        return self.count >= self.settings.ws_max_connections

    @staticmethod
    def channel_of(conn: Connection) -> bytes:
        return keys.player_channel(conn.principal.app_id, conn.principal.player_id).encode()

    # ---- registry ------------------------------------------------------------------------------

    async def register(self, conn: Connection) -> None:
        channel = self.channel_of(conn)
        conns = self.players.setdefault(channel, [])
        conns.append(conn)
        self.count += 1
        WS_CONNECTIONS.inc()
        live = [c for c in conns if not c.closed]
        for old in live[: max(0, len(live) - self.settings.ws_max_connections_per_player)]:
            old.close_soon(CLOSE_POLICY, "replaced by a newer connection of this player")
        # Subscribed (and confirmed) before the snapshot is read: no change falls between.
        await self.bridge.subscribe(channel)
        if conn.rooms_scope:
            await self.presence.touch([(conn.principal.app_id, conn.principal.player_id)], now_ms())

    def unregister(self, conn: Connection) -> None:
        conn.stop()
        self.feeds.forget(conn)
        channel = self.channel_of(conn)
        conns = self.players.get(channel, [])
        if conn in conns:
            conns.remove(conn)
            self.count -= 1
            WS_CONNECTIONS.dec()
            if conn.rooms_scope and not any(c.rooms_scope and not c.closed for c in conns):
                # The player's last socket here closed: its grace starts now, not at the
                # deadline its last heartbeat set (docs/spec.md §6; presence.py `gone`).
                self.presence.gone(conn.principal.app_id, conn.principal.player_id)
        if not conns:
            self.players.pop(channel, None)
            self.bridge.unsubscribe(channel)

    def connections(self) -> list[Connection]:
        return [c for conns in self.players.values() for c in conns]

    def present_players(self) -> set[tuple[str, str]]:
        return {
            (c.principal.app_id, c.principal.player_id)
            for conns in self.players.values()
            for c in conns
            if c.rooms_scope and not c.closed
        }

    def is_local(self, app: str, player: str) -> bool:
        conns = self.players.get(keys.player_channel(app, player).encode(), ())
        return any(c.rooms_scope and not c.closed for c in conns)

    # ---- pushes --------------------------------------------------------------------------------

    def on_message(self, channel: bytes, data: bytes) -> None:
        conns = self.players.get(channel)
        if conns:
            self.pushes.on_message(conns, data)

    # ---- snapshots -----------------------------------------------------------------------------

    def view_context(self, conn: Connection, locale: str | None = None) -> ViewContext:
        return ViewContext(locale=locale or conn.locale, base_url=conn.base_url,
                           wait_estimate=self.wait_estimate())  # fmt: skip

    async def welcome(self, conn: Connection) -> str:
        """The `welcome` notification; the connection remembers every version it shows."""
        principal = conn.principal
        joined: list[wire.Room] = []
        invitations: list[wire.Room] = []
        if conn.rooms_scope:
            ctx = self.view_context(conn)
            room_ids, invited = await self.room_store.indexes.at_connect(
                principal.app_id, principal.player_id
            )
            docs = await self.room_store.load_many(principal.app_id, room_ids) if room_ids else ()
            for doc in docs:
                if doc is None or not rooms.is_live(doc, principal.player_id):
                    continue
                self.views.put(doc)
                joined.append(render_room(doc, principal.player_id, ctx))
                # held until the client resumes the room's messages (docs/messages.md)
                self.feeds.follow(conn, doc.room_id, seq=None, held=True)
            page_token: str | None = None
            while invited:
                page = await self.state.rooms.list_invitations(
                    principal, _LIST_PAGE, page_token, ctx
                )
                invitations += page.items
                page_token = page.next_page_token
                if not page_token:
                    break
            for room in (*joined, *invitations):
                if room.room_id and room.room_status_version is not None:
                    conn.shown.record(room.room_id, room.room_status_version)
        message = Welcome(
            player_id=principal.player_id,
            application_id=principal.app_id,
            server_time_millis=str(now_ms()),
            rooms=joined,
            invitations=invitations,
            ice_servers=self.messaging.ice_for(principal.player_id).ice_servers,
        )
        return protocol.notification("welcome", _encode(message))

    def observe_reply(self, conn: Connection, value: Any) -> None:
        """A rooms call's reply showed a room: follow or stop following its messages by the
        one live rule, on the document the call just read or wrote (in the store's cache;
        without it, the pushes of the room tell)."""
        if isinstance(value, wire.Room) and value.room_id and conn.inbox is not None:
            doc = self.room_store.cached(conn.principal.app_id, value.room_id)
            if doc is not None:
                self.feeds.observe(conn, doc)

    async def resync(self) -> None:
        """After a (re)subscribe: re-read every room this process's clients follow and queue
        whatever is newer than what each connection has shown (docs/spec.md §6, §12 item 6)."""
        await self._resync_players([conns for conns in self.players.values() if conns])

    async def _subscribed_late(self, channel: bytes) -> None:
        """A player's channel was confirmed after its welcome went out without waiting any
        longer: a change committed in between was published to no one here, so that
        player's rooms are read again (docs/realtime.md "Late subscriptions"; the bridge
        retries this like its resync)."""
        await self._resync_players([list(self.players.get(channel, ()))])

    async def _resync_players(self, groups: list[list[Connection]]) -> None:
        """Re-read the rooms of these players (each group: one player's connections)."""
        for start in range(0, len(groups), _RESYNC_BATCH):
            batch = [[c for c in conns if c.rooms_scope and not c.closed]
                     for conns in groups[start : start + _RESYNC_BATCH]]  # fmt: skip
            batch = [conns for conns in batch if conns]
            if not batch:
                continue
            indexed = await self.room_store.indexes.rooms_and_invitations(
                [(conns[0].principal.app_id, conns[0].principal.player_id) for conns in batch]
            )
            wanted: dict[str, set[str]] = {}
            for ids, conns in zip(indexed, batch, strict=True):
                ids = set(ids)
                for conn in conns:
                    ids.update(conn.shown.rooms())
                wanted.setdefault(conns[0].principal.app_id, set()).update(ids)
            versions: dict[tuple[str, str], int] = {}
            for app, ids in wanted.items():
                ordered = sorted(ids)
                for doc in await self.room_store.load_many(app, ordered):
                    if doc is not None:
                        self.views.put(doc)
                        versions[(app, doc.room_id)] = doc.version
            for ids, conns in zip(indexed, batch, strict=True):
                for conn in conns:
                    app = conn.principal.app_id
                    for room_id in ids.union(conn.shown.rooms()):
                        version = versions.get((app, room_id))
                        if version is not None:
                            self.pushes.offer(conn, room_id, version)

    # ---- shutdown ------------------------------------------------------------------------------

    async def drain(self, calls_timeout: float) -> None:
        """SIGTERM (docs/spec.md §6, §12 item 11): let in-flight calls finish, then close with
        1012."""
        self.draining = True
        conns = self.connections()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + calls_timeout
        # Again until none is left: a request read before the drain began may still be waiting
        # for a free slot, and starts only when an earlier call of its connection finishes.
        while calls := [task for conn in conns for task in conn.inflight]:
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            await asyncio.wait(calls, timeout=remaining)
        await asyncio.gather(
            *(conn.close(CLOSE_RESTART, "server restarting; reconnect") for conn in conns),
            return_exceptions=True,
        )
