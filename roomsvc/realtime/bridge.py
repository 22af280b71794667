"""The process's one Redis pub/sub link (docs/spec.md §6, §12 item 6; docs/design.md "Pushes").

It subscribes to the channel of every player connected to this process (`keys.player_channel`,
published by room_cas.lua), hands each message to the hub, and survives everything a link can
suffer: a dropped connection, a server restart, Valkey cutting a subscriber that fell behind
(output-buffer limit), or a half-open link that delivers nothing. In every case it builds a new
link, resubscribes, and once the server has confirmed the subscriptions calls `on_resync`, so
the hub re-reads the rooms its clients follow: pub/sub is the fast path, resync the guarantee.

A half-open link is detected by a PING after `HEALTH_INTERVAL_S` of silence, and dropped when
nothing at all arrived for two intervals (a watchdog beside the reader, which itself waits
without a deadline). redis-py's PubSub object is not used: its reconnect-and-resubscribe would
hide the gap that makes a resync necessary, and its message decoding cost 19 us a message
against 8 us for a raw read of the same connection. redis-py only makes the connection:
`PubSubLink` then parses what arrives with hiredis, with no coroutine per message
(docs/performance.md "Joins", "Fewer round trips per join").

A subscription is confirmed by the server; `subscribe` waits for that, bounded by
`CONFIRM_TIMEOUT_S`. Under load the confirmation can come later than that (the commands of a
storm of joins and leaves queue on the one link): the caller then gets False, and when the
confirmation does arrive `on_late(channel)` runs, so the caller can read back what was published
before the subscription took effect (docs/realtime.md "Late subscriptions"). Unsubscriptions
asked for in one loop turn go out as one command; subscriptions as one command at a time, what
is asked for while it is unconfirmed going in the next.

A sharded link (`sharded=True`) does the same with SSUBSCRIBE for the rooms' message channels
(docs/messages.md "Across processes"): on a cluster each primary has its own link, since a
shard channel is served only by the node that owns its slot; `own` then names a channel in one
of that node's slots.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import hiredis
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from roomsvc.common import logs
from roomsvc.common.cancellation import raise_if_cancelled
from roomsvc.store.connection import UNAVAILABLE_ERRORS
from roomsvc.store.keys import PREFIX
from roomsvc.store.link import replies_of, reply_reader, take_over

log = logging.getLogger("roomsvc.realtime.bridge")
HEALTH_INTERVAL_S = 2.0
CONFIRM_TIMEOUT_S = 2.0
_CHUNK = 500
_RESYNC = b"resync"
_LINK = "pubsub-link"  # the key of the link-lost warning in logs.OUTAGE


def _client(url: str) -> Any:
    # A node of a cluster serves plain SUBSCRIBE: PUBLISH reaches subscribers on every node.
    url = url.replace("+cluster://", "://", 1)
    # TCP keepalive helps find a half-open link; a unix socket (the embedded store) has none.
    keepalive = {} if url.startswith("unix://") else {"socket_keepalive": True}
    return aioredis.Redis.from_url(
        url,
        socket_connect_timeout=2.0,
        health_check_interval=0,
        retry=Retry(NoBackoff(), 0),
        protocol=3,  # pushes apart from replies: a PING's answer is never taken for a message
        **keepalive,
    )


class _Wire(asyncio.Protocol):
    __slots__ = ("_writer", "link")

    def __init__(self, link: PubSubLink, writer: Any) -> None:
        self.link = link
        self._writer = writer  # kept: a stream writer collected closes its transport

    def data_received(self, data: bytes) -> None:
        self.link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        self.link._fail(RedisConnectionError("the store closed the pub/sub connection"))


class PubSubLink:
    """One pub/sub connection of the server at `url`, made by redis-py (address, TLS, AUTH,
    HELLO 3), its transport then taken over (store/link.py `take_over`). Commands are written
    as they are; each reply and message is parsed by hiredis as it arrives and handed to
    `on_reply` in the same call, as a RESP3 push of bytes, without a coroutine or a deadline
    per message (the bridge's watchdog judges the link). `lost` is set to the error that
    ended the connection."""

    def __init__(self, url: str, on_reply: Callable[[Any], None]) -> None:
        self._client = _client(url)
        self._on_reply = on_reply
        self._parser = reply_reader()
        self._transport: Any = None
        self._closed = False
        self.lost: asyncio.Future[BaseException] = asyncio.get_running_loop().create_future()

    async def open(self) -> None:
        self._transport, _ = await take_over(
            self._client.connection_pool, lambda writer: _Wire(self, writer)
        )

    def send(self, *args: Any) -> None:
        transport = self._transport
        if self._closed or transport is None or transport.is_closing():
            raise ConnectionError("pub/sub link closed")
        transport.write(hiredis.pack_command(args))

    def _received(self, data: bytes) -> None:
        parser = self._parser
        parser.feed(data)
        replies = []
        try:
            for reply in replies_of(parser):
                if isinstance(reply, RedisError):  # a refused (un)subscribe: start over
                    self._fail(reply)
                    break
                replies.append(reply)
        except RedisConnectionError as exc:  # not RESP
            self._fail(exc)
        if replies:
            # Handled on the next loop turn: a change this process made is published before
            # the store answers the write, on another connection; handled in the same turn,
            # its push would miss the written document and read the room back.
            asyncio.get_running_loop().call_soon(self._handle, replies)

    def _handle(self, replies: list[Any]) -> None:
        for reply in replies:
            if self._closed:
                return
            try:
                self._on_reply(reply)
            except Exception:  # one message handled badly must not cost the others
                log.exception("a pub/sub message's handling failed")

    def _fail(self, error: BaseException) -> None:
        if not self.lost.done():
            self.lost.set_result(error)
        if self._transport is not None:
            with contextlib.suppress(Exception):  # its loop may be closed: it is gone then
                self._transport.abort()

    async def close(self) -> None:
        self._closed = True
        self._fail(RedisConnectionError("pub/sub link closed"))
        with contextlib.suppress(Exception):  # closing a broken link may fail in many ways
            await self._client.aclose()


class Bridge:
    def __init__(
        self,
        url: str,
        on_message: Callable[[bytes, bytes], None],
        on_resync: Callable[[], Awaitable[None]],
        *,
        sharded: bool = False,
        own: bytes | None = None,
        on_late: Callable[[bytes], Awaitable[None]] | None = None,
        per_slot: bool = False,
    ) -> None:
        self.url = url
        self.sharded = sharded
        # A cluster node refuses an (un)subscribe naming shard channels of two slots
        # (CROSSSLOT): one command per slot there.
        self._per_slot = per_slot
        self._message = b"smessage" if sharded else b"message"
        self._confirm = b"ssubscribe" if sharded else b"subscribe"
        self._subscribe_command = "SSUBSCRIBE" if sharded else "SUBSCRIBE"
        self._unsubscribe_command = "SUNSUBSCRIBE" if sharded else "UNSUBSCRIBE"
        self.on_message = on_message
        self.on_resync = on_resync
        self.on_late = on_late
        self.wanted: set[bytes] = set()
        self.connected = asyncio.Event()
        self._pubsub: PubSubLink | None = None
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        # asked for, to go in the next SUBSCRIBE together, with the waiters asked meanwhile
        self._unsent: dict[bytes, list[asyncio.Future[None]]] = {}
        self._subscribing: set[bytes] = set()  # in the SUBSCRIBE on the wire, unconfirmed
        self._unwanted: list[bytes] = []  # dropped in this loop turn, to be unsubscribed together
        self._late: set[bytes] = set()  # subscribed, not confirmed in time: on_late when it is
        self._own = own or f"{PREFIX}:ch:bridge:{uuid.uuid4().hex}".encode()
        self._tasks: set[asyncio.Task[None]] = set()
        self._heard = 0.0  # loop time anything last arrived on the link

    async def subscribe(self, channel: bytes) -> bool:
        """Subscribe, and wait until the server confirms (bounded): True, and a message
        published after this returns is delivered. False when the link is down (the resync
        after the reconnect covers the gap) or the confirmation did not come in time (then
        `on_late` runs once it does)."""
        self.wanted.add(channel)
        pubsub = self._pubsub
        if pubsub is None:
            return False
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if not self._unsent and not self._subscribing:  # else sent once those are confirmed
            asyncio.get_running_loop().call_soon(self._send_subscribes)
        # The waiter joins `_waiters` when its SUBSCRIBE is written: a confirmation of an
        # earlier one (the channel unsubscribed since) must not release it.
        self._unsent.setdefault(channel, []).append(waiter)
        confirmed = False
        try:
            async with asyncio.timeout(CONFIRM_TIMEOUT_S):  # (cancels only this waiter)
                await waiter
            confirmed = self._pubsub is pubsub
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():
                # confirmed in the very turn the deadline passed: `_on_reply` has seen it already
                # and would never run `on_late`
                confirmed = self._pubsub is pubsub
            elif self._pubsub is pubsub:
                self._late.add(channel)
        except Exception:  # the link failed under us (redis-py raises many kinds then):
            pass  # the relay starts a new link, which subscribes `wanted` and resyncs
        finally:
            for waiting in (self._unsent.get(channel), self._waiters.get(channel)):
                if waiting is not None and waiter in waiting:
                    waiting.remove(waiter)
            if not self._waiters.get(channel, True):
                del self._waiters[channel]
        return confirmed

    def _send_subscribes(self) -> None:
        """Subscribe to the channels asked for, in one command, on the link up now. One such
        command is on the wire at a time: what is asked for meanwhile waits for its
        confirmations and goes in the next one, so a storm of connections sends a few
        SUBSCRIBEs, not one each (docs/performance.md "Joins"), at the cost of at most one
        more round trip. A failure, or no link, releases their waiters: the link's successor
        subscribes them."""
        if self._subscribing or not self._unsent:
            return
        queued, self._unsent = self._unsent, {}
        pubsub = self._pubsub
        wanted = [channel for channel in queued if channel in self.wanted]  # not dropped since
        with contextlib.suppress(Exception):  # (no link, or a failing one: released below)
            if pubsub is None:
                raise ConnectionError("pub/sub link down")
            self._send_each(pubsub, self._subscribe_command, wanted)
            self._subscribing.update(wanted)
        for channel, waiting in queued.items():
            if channel in self._subscribing:
                self._waiters.setdefault(channel, []).extend(waiting)
            else:
                _release(waiting)

    def unsubscribe(self, channel: bytes) -> None:
        self.wanted.discard(channel)
        self._late.discard(channel)
        if self._pubsub is not None:
            if not self._unwanted:  # the first of this loop turn: one command for them all
                asyncio.get_running_loop().call_soon(self._send_unsubscribes)
            self._unwanted.append(channel)

    def _send_unsubscribes(self) -> None:
        """Unsubscribe the channels dropped in the loop turn that scheduled this and not wanted
        again since (a subscribe queued meanwhile keeps its channel), on the link up now."""
        channels = [c for c in dict.fromkeys(self._unwanted) if c not in self.wanted]
        self._unwanted = []
        pubsub = self._pubsub
        if pubsub is None:
            return  # the link is down: the next one subscribes only what is wanted
        with contextlib.suppress(Exception):  # a failing link: its successor subscribes
            self._send_each(pubsub, self._unsubscribe_command, channels)  # only what is wanted

    def _send_each(self, pubsub: PubSubLink, command: str, channels: list[bytes]) -> None:
        """`command` for `channels`: a few hundred at a time, and one slot at a time when
        `per_slot`."""
        groups: list[list[bytes]] = [channels]
        if self._per_slot:
            by_slot: dict[int, list[bytes]] = {}
            for channel in channels:
                by_slot.setdefault(key_slot(channel), []).append(channel)
            groups = list(by_slot.values())
        for group in groups:
            for start in range(0, len(group), _CHUNK):
                pubsub.send(command, *group[start : start + _CHUNK])

    async def run(self) -> None:
        """Forever: connect, subscribe, resync, relay; on any failure start over."""
        backoff = 0.05
        while True:
            raise_if_cancelled()
            pubsub = PubSubLink(self.url, self._on_reply)
            try:
                await pubsub.open()
                # Written at once, with no wait: a subscribe() queued before this turn and
                # sent after finds the link up (a duplicate SUBSCRIBE is harmless).
                self._pubsub = pubsub
                pubsub.send(self._subscribe_command, self._own)
                self._send_each(pubsub, self._subscribe_command, list(self.wanted))
                pubsub.send("PING", _RESYNC)  # its PONG follows every confirmation
                backoff = 0.05
                if logs.OUTAGE.clear(_LINK):
                    log.info("pub/sub link restored")
                await self._relay(pubsub)
            except asyncio.CancelledError:
                raise
            except (RedisError, *UNAVAILABLE_ERRORS) as exc:
                logs.outage_warning(log, _LINK, "pub/sub link lost; reconnecting", error=repr(exc))
            finally:
                self._pubsub = None
                self.connected.clear()
                await self._close(pubsub)
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 1.0)

    async def _relay(self, pubsub: PubSubLink) -> None:
        """Relay until the link fails. Replies and messages are handled as they are parsed
        (`_on_reply`), with no deadline each (a timed read costs a timer and a retry wrapper
        per message, a third of the bridge's CPU at a thousand pushes a second: docs/spec.md
        §11), and this watchdog judges the link by when anything was last heard: a PING after
        one silent interval, and the link is dropped when the second interval passes without
        a word."""
        loop = asyncio.get_running_loop()
        self._heard = loop.time()
        pinged: float | None = None
        while True:
            raise_if_cancelled()
            done, _ = await asyncio.wait([pubsub.lost], timeout=HEALTH_INTERVAL_S)
            if done:
                raise pubsub.lost.result()
            now = loop.time()
            if pinged is not None and self._heard >= pinged:
                pinged = None  # heard since the PING: the link is alive
            if now - self._heard < HEALTH_INTERVAL_S:
                continue
            if pinged is None:
                pubsub.send("PING")
                pinged = now
            elif now - pinged >= HEALTH_INTERVAL_S:
                raise ConnectionError("pub/sub link silent for two health checks")

    def _on_reply(self, message: Any) -> None:
        # A push [kind, channel, data] for a message, [kind, channel, count] for a
        # confirmation; a PING's answer is its payload (RESP3, `_client`).
        self._heard = asyncio.get_running_loop().time()
        if not isinstance(message, list) or len(message) < 2:
            if message == _RESYNC:
                self.connected.set()
                self._spawn(self._resync())
            return
        kind = message[0]
        if kind == self._message:
            self.on_message(message[1], message[2])
        elif kind == self._confirm:
            channel = message[1]
            _release(self._waiters.get(channel, ()))
            if channel in self._late:
                self._late.discard(channel)
                self._spawn(self._resync(late=channel))
            if channel in self._subscribing:
                self._subscribing.discard(channel)
                if not self._subscribing:
                    self._send_subscribes()

    async def _resync(self, late: bytes | None = None) -> None:
        """`on_resync` (or `on_late(late)` for one channel confirmed late), retried while the
        store is not answering yet (a store that just restarted refuses, or is still loading
        its AOF, while the new link already works): a resync given up would leave clients
        behind until their room next changes (docs/spec.md §12 item 6). A link lost again ends
        the retries; its successor resyncs every channel anew."""
        pause = 0.05
        while self.connected.is_set():
            try:
                if late is None:
                    await self.on_resync()
                elif self.on_late is not None:
                    await self.on_late(late)
                return
            except UNAVAILABLE_ERRORS as exc:
                logs.outage_warning(log, "resync", "resync paused: store unavailable",
                                    error=type(exc).__name__)  # fmt: skip
            except Exception:
                log.exception("resync failed")
                return
            await asyncio.sleep(pause)
            pause = min(pause * 2, 1.0)

    def _spawn(self, coro: Awaitable[None]) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _close(self, pubsub: PubSubLink) -> None:
        self._late.clear()  # the next link's resync covers every channel
        self._unwanted = []  # the next link subscribes only what is wanted
        self._subscribing.clear()
        for waiting in [*self._waiters.values(), *self._unsent.values()]:
            _release(waiting)
        self._unsent = {}  # (wanted: the next link subscribes them)
        await pubsub.close()

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


def _release(waiters: Iterable[asyncio.Future[None]]) -> None:
    for waiter in waiters:
        if not waiter.done():
            waiter.set_result(None)
