"""The receiving side of in-room messages in one process (docs/messages.md "Across processes").

A room's messages are published once, on the room's own sharded channel. This process listens
to a room (a `Feed`) while it holds a connection of one of the room's JOINED participants: the
hub shows every room document it handles for a connection to `observe`, and the welcome
`follow`s each room it lists. Each publication is decoded once and offered to every following
connection, whose `Cursor` (inbox.py) gives each reliable message exactly once, in order.

Nothing is lost between the publish and the subscribe: a connection that starts following a room
mid-connection starts at seq 0, and once the subscription is confirmed the room's backlog fills
whatever was sent before, however late the confirmation comes (bridge.py `on_late`). The same
fill closes a gap: a publication this process missed (its link was cut, Valkey dropped a slow
subscriber) shows as a seq beyond the next one, or, for a last message that nothing follows,
through the resync each new link runs.

Links: one sharded pub/sub link (bridge.py, `sharded=True`) to a plain server, or one per
primary of a cluster, since a shard channel is served by the node that owns its slot.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from roomsvc.common.metrics import MESSAGES_LOST
from roomsvc.messages import envelope, frames, wire
from roomsvc.messages.envelope import SIGNAL, Envelope
from roomsvc.messages.store import MessageStore
from roomsvc.realtime import protocol
from roomsvc.realtime.bridge import Bridge
from roomsvc.realtime.connection import CLOSE_OVERLOADED, Connection
from roomsvc.realtime.inbox import MAX_WAITING, Cursor, Inbox
from roomsvc.rooms.rules import RoomDoc, has_others, is_live
from roomsvc.store import keys
from roomsvc.store.connection import UNAVAILABLE_ERRORS, is_cluster

log = logging.getLogger("roomsvc.realtime.messages")
RESUME_HOLD_S = 3.0  # a welcome room's live messages wait this long for rooms.resumeMessages
_RETRY_S = 0.5
_CATCH_UP_ATTEMPTS = 4  # a feed's catch-up read, tried this often (every _RETRY_S)
_encode = msgspec.json.Encoder().encode


class Delivery:
    """One received message or signal, rendered at most once per frame format."""

    __slots__ = ("_binary", "_text", "accepted_s", "env", "room_id", "seq")

    def __init__(self, room_id: str, seq: int, env: Envelope, accepted_s: float) -> None:
        self.room_id = room_id
        self.seq = seq
        self.env = env
        self.accepted_s = accepted_s
        self._text: str | None = None
        self._binary: bytes | None = None

    def frame(self, binary: bool) -> str | bytes:
        env = self.env
        if env.kind == SIGNAL:
            if self._text is None:
                signal = wire.Signal(self.room_id, env.sender, msgspec.Raw(env.data))
                self._text = protocol.notification("signal", _encode(signal))
            return self._text
        if binary:
            if self._binary is None:
                head = frames.message_head(env.reliable, self.seq, self.room_id, env.sender)
                self._binary = head + env.data
            return self._binary
        if self._text is None:
            params = wire.Message(self.room_id, env.sender, base64.b64encode(env.data).decode(),
                                  env.reliable, self.seq or None)  # fmt: skip
            self._text = protocol.notification("message", _encode(params))
        return self._text


class Feed:
    __slots__ = ("app", "channel", "conns", "ready", "room_id")

    def __init__(self, app: str, room_id: str, channel: bytes) -> None:
        self.app = app
        self.room_id = room_id
        self.channel = channel
        self.conns: dict[Connection, None] = {}  # an ordered set
        self.ready = False  # the subscription is confirmed


class Feeds:
    def __init__(self, store: Any, messages: MessageStore, url: str) -> None:
        self.redis = store
        self.messages = messages
        self.url = url
        self.feeds: dict[bytes, Feed] = {}
        self.links: dict[str, Bridge] = {}
        self._link_tasks: list[asyncio.Task[None]] = []
        self._tasks: set[asyncio.Task[Any]] = set()

    # ---- who follows which room -----------------------------------------------------------------

    def observe(self, conn: Connection, doc: RoomDoc, *, deleted: bool | None = None) -> None:
        """`doc` is the newest this process knows of a room `conn` is told about: follow the
        room's messages while the player is live in it and has anyone else in it, invited
        included (a signal is not kept for a late subscriber: an invitee's first signals must
        find the creator's process subscribed already; an auto-matching player's own room, a
        room of one deleted when the player is matched, costs no subscription), and stop when
        the player is no longer live (`deleted`: the room's derived status, when the caller
        has it)."""
        if conn.inbox is None:
            return
        player = conn.principal.player_id
        following = doc.room_id in conn.inbox.cursors
        live = is_live(doc, player, deleted=deleted)
        if live and not following and has_others(doc, player):
            self.follow(conn, doc.room_id, seq=0, held=False)
        elif following and not live:
            self.unfollow(conn, doc.room_id)

    def follow(self, conn: Connection, room_id: str, *, seq: int | None, held: bool) -> Cursor:
        inbox: Inbox = conn.inbox
        cursor = inbox.cursors.get(room_id)
        if cursor is not None:
            return cursor
        cursor = inbox.cursors[room_id] = Cursor(seq, held)
        app = conn.principal.app_id
        channel = keys.room_message_channel(app, room_id).encode()
        feed = self.feeds.get(channel)
        if feed is None:
            feed = self.feeds[channel] = Feed(app, room_id, channel)
            feed.conns[conn] = None
            self._spawn(self._subscribe(feed))
        else:
            feed.conns[conn] = None
            if feed.ready and not held:
                self._spawn(self._catch_up(feed, [conn], attempts=_CATCH_UP_ATTEMPTS))
        if held:
            asyncio.get_running_loop().call_later(RESUME_HOLD_S, self.release, conn, room_id,
                                                  cursor)  # fmt: skip
        return cursor

    def unfollow(self, conn: Connection, room_id: str) -> None:
        if conn.inbox.cursors.pop(room_id, None) is None:
            return
        channel = keys.room_message_channel(conn.principal.app_id, room_id).encode()
        feed = self.feeds.get(channel)
        if feed is None:
            return
        feed.conns.pop(conn, None)
        if not feed.conns:
            del self.feeds[channel]
            self._link_for(channel).unsubscribe(channel)

    def forget(self, conn: Connection) -> None:
        if conn.inbox is None:
            return
        for room_id in list(conn.inbox.cursors):
            self.unfollow(conn, room_id)
        conn.inbox.stop()

    # ---- receiving -----------------------------------------------------------------------------

    def on_publication(self, channel: bytes, data: bytes) -> None:
        feed = self.feeds.get(channel)
        if feed is None:
            return
        try:
            seq, env = envelope.split(data)
        except (ValueError, msgspec.DecodeError):
            log.warning("undecodable message publication", extra={"channel": channel[:80]})
            return
        delivery = Delivery(feed.room_id, seq, env, time.time())
        for conn in list(feed.conns):
            self._offer(conn, feed, delivery)

    def _offer(self, conn: Connection, feed: Feed, d: Delivery) -> None:
        inbox: Inbox = conn.inbox
        cursor = inbox.cursors.get(feed.room_id)
        if cursor is None or conn.closed:
            return
        if d.seq == 0:  # not numbered: an unreliable message or a signal, given at once
            if conn.principal.player_id in d.env.recipients:
                inbox.put(d.frame(inbox.binary), reliable=d.env.kind == SIGNAL,
                          accepted_s=d.accepted_s)  # fmt: skip
            return
        if cursor.seq is not None and d.seq <= cursor.seq:
            return  # given already (a backlog read overlapped the live feed)
        if cursor.blocked or cursor.seq is None:
            self._wait(conn, cursor, d)
            if cursor.seq is None and not cursor.blocked:
                cursor.seq = d.seq - 1  # a released welcome room: live from here on
                self.flush(inbox, cursor)
            return
        if d.seq == cursor.seq + 1:
            give(inbox, cursor, d)
            return
        self._wait(conn, cursor, d)
        self.fill(conn, feed.room_id, cursor)

    @staticmethod
    def _wait(conn: Connection, cursor: Cursor, d: Delivery) -> None:
        cursor.waiting[d.seq] = d
        if len(cursor.waiting) > MAX_WAITING:
            conn.close_soon(CLOSE_OVERLOADED, "message queue overflow: the client is not resuming")

    def flush(self, inbox: Inbox, cursor: Cursor) -> None:
        """Give the waiting messages that now follow the cursor, in order; a waiting message
        beyond a gap that nothing can fill any more (trimmed from the backlog) is given too."""
        while cursor.waiting and not cursor.blocked:
            seq = min(cursor.waiting)
            d: Any = cursor.waiting.pop(seq)
            if cursor.seq is not None and seq <= cursor.seq:
                continue
            if cursor.seq is not None and seq > cursor.seq + 1:
                MESSAGES_LOST.inc(seq - cursor.seq - 1)
            give(inbox, cursor, d)

    def release(self, conn: Connection, room_id: str, cursor: Cursor) -> None:
        """The hold of a welcome room ends (resumed, or the client never asked)."""
        if conn.closed or conn.inbox.cursors.get(room_id) is not cursor or not cursor.held:
            return
        cursor.held = False
        if cursor.seq is None and cursor.waiting:
            cursor.seq = min(cursor.waiting) - 1
        self.flush(conn.inbox, cursor)

    def fill(self, conn: Connection, room_id: str, cursor: Cursor) -> None:
        if not cursor.filling and cursor.seq is not None:
            cursor.filling = True
            self._spawn(self._fill(conn, room_id, cursor))

    async def _fill(self, conn: Connection, room_id: str, cursor: Cursor) -> None:
        """Read the backlog past the cursor, give it, then whatever waited behind it."""
        app = conn.principal.app_id
        while True:
            try:
                backlog = await self.messages.backlog(app, room_id, cursor.seq or 0)
                break
            except UNAVAILABLE_ERRORS:
                await asyncio.sleep(_RETRY_S)
            if conn.closed or conn.inbox.cursors.get(room_id) is not cursor:
                return
        cursor.filling = False
        if conn.closed or conn.inbox.cursors.get(room_id) is not cursor:
            return
        if not backlog.complete and backlog.entries:
            MESSAGES_LOST.inc(backlog.entries[0][0] - (cursor.seq or 0) - 1)
        absorb(conn, cursor, room_id, backlog.entries, after=cursor.seq or 0)
        if not cursor.held:
            self.flush(conn.inbox, cursor)

    # ---- subscriptions -------------------------------------------------------------------------

    async def _subscribe(self, feed: Feed) -> None:
        """Follow the room's channel; once the server confirms it, fill what was published
        before (here, or in `_confirmed_late` when the confirmation came after the bridge
        stopped waiting, or in the resync of a link that was down)."""
        if not await self._link_for(feed.channel).subscribe(feed.channel):
            return
        if self.feeds.get(feed.channel) is feed:
            await self._ready(feed)

    async def _confirmed_late(self, channel: bytes) -> None:
        """A subscription confirmed after `subscribe` gave up waiting: messages published
        until then reached no one here; the room's backlog has them (docs/realtime.md)."""
        feed = self.feeds.get(channel)
        if feed is not None:
            await self._ready(feed, attempts=1, raise_last=True)  # the bridge retries it

    async def _ready(self, feed: Feed, *, attempts: int = _CATCH_UP_ATTEMPTS,
                     raise_last: bool = False) -> None:  # fmt: skip
        feed.ready = True
        await self._catch_up(feed, list(feed.conns), attempts=attempts, raise_last=raise_last)

    async def _catch_up(self, feed: Feed, conns: list[Connection], *, attempts: int,
                        raise_last: bool = False) -> None:  # fmt: skip
        """Fill each connection whose cursor is behind the room's newest message. The newest
        seq is read up to `attempts` times while the store does not answer: a last message
        that nothing follows is filled only here or by the link's resync (no later message
        shows its gap). The resync's own failure is raised (`raise_last`): the bridge runs it
        again (bridge.py `_resync`)."""
        for attempt in range(attempts):
            try:
                (last,) = await self.messages.last_seqs([(feed.app, feed.room_id)])
                break
            except UNAVAILABLE_ERRORS:
                if attempt == attempts - 1:
                    if raise_last:
                        raise
                    return
                await asyncio.sleep(_RETRY_S)
            if self.feeds.get(feed.channel) is not feed:
                return
        for conn in conns:
            cursor = conn.inbox.cursors.get(feed.room_id) if conn.inbox else None
            if cursor is not None and cursor.seq is not None and last > cursor.seq:
                self.fill(conn, feed.room_id, cursor)

    async def resync(self, link: Bridge) -> None:
        """A link (re)connected: publications of its rooms may have been missed."""
        for feed in [f for f in self.feeds.values() if self._link_for(f.channel) is link]:
            await self._ready(feed, attempts=1, raise_last=True)

    def _link_for(self, channel: bytes) -> Bridge:
        node = self.redis.get_node_from_key(channel) if is_cluster(self.redis) else None
        url = self._url_of(node)
        link = self.links.get(url)
        if link is None:

            async def resync() -> None:  # after the link's (re)subscribe, for its rooms
                await self.resync(new)

            new = Bridge(url, self.on_publication, resync, sharded=True,
                         own=self._own_channel(node), on_late=self._confirmed_late,
                         per_slot=node is not None)  # fmt: skip
            link = self.links[url] = new
            self._link_tasks.append(asyncio.create_task(link.run(), name=f"message-link {url}"))
        return link

    def _url_of(self, node: Any) -> str:
        """The URL of the node serving a channel: the store's own URL on a plain server."""
        url = self.url.replace("+cluster://", "://", 1)
        if node is None:
            return url
        parts = urlsplit(url)
        auth = parts.netloc.rpartition("@")[0]
        netloc = f"{auth}@{node.host}:{node.port}" if auth else f"{node.host}:{node.port}"
        return urlunsplit((parts.scheme, netloc, parts.path, parts.query, ""))

    def _own_channel(self, node: Any) -> bytes | None:
        """A channel in one of `node`'s slots, for its link to hold while no room is followed
        (a shard channel of another node's slot would be refused with MOVED)."""
        if node is None:
            return None
        for n in range(100_000):
            own = f"{keys.PREFIX}:{{own:{n}}}:ch".encode()
            if self.redis.get_node_from_key(own).name == node.name:
                return own
        return None

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("message feed task failed", exc_info=task.exception())

    async def stop(self) -> None:
        for link in self.links.values():
            await link.stop()
        for task in [*self._link_tasks, *self._tasks]:
            task.cancel()
        await asyncio.gather(*self._link_tasks, *self._tasks, return_exceptions=True)


def give(inbox: Inbox, cursor: Cursor, d: Delivery) -> None:
    cursor.seq = d.seq
    if inbox.conn.principal.player_id in d.env.recipients:
        inbox.put(d.frame(inbox.binary), reliable=True, accepted_s=d.accepted_s)


def absorb(conn: Connection, cursor: Cursor, room_id: str, entries: list[tuple[int, bytes]],
           *, after: int) -> int:  # fmt: skip
    """Give the backlog `entries` numbered above `after`; returns how many reached `conn`."""
    given = 0
    player = conn.principal.player_id
    for seq, raw in entries:
        if seq <= after:
            continue
        d = Delivery(room_id, seq, envelope.decode(raw), 0.0)
        cursor.seq = seq
        if player in d.env.recipients:
            conn.inbox.put(d.frame(conn.inbox.binary), reliable=True)
            given += 1
    return given
