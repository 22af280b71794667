"""One pipelined connection per process and store for every batch sent to a plain server
(docs/store.md "Round trips": "The store link").

redis-py's pooled path costs the client ~130 us of CPU per round trip beyond the write and
the read themselves (a pool checkout and release, a deadline per send, a coroutine per reply;
`scripts/bench_rooms.py`). Here a batch is one `transport.write` of commands packed by
hiredis, and its replies are parsed by hiredis as they arrive and handed to the batch's
callback in the same call: no task, no coroutine, no pool. Batches are answered in the order
written, as the server runs one connection's commands in order, so every batch of the process
is ordered after the ones sent before it (a stronger form of docs/store.md's "in the order
queued").

The connection is made by redis-py (`make_connection` and `connect`: the URL's address, TLS,
AUTH and SELECT), then its transport is taken over; redis-py keeps no reference to it.

Failure, as on the pooled path (docs/store.md "Deadlines"): each batch has a deadline, the
opening of the connection included. A batch past its deadline, or a lost connection, gives up
the connection: every batch on it, or waiting for it, that a caller still waits for is sent once
more on a new one, and fails with the error (TimeoutError or redis-py's ConnectionError) the
second time; a batch whose callers are gone (cancelled by their call's deadline) fails at once.
Everything batched is idempotent (docs/design.md "Retries never double-apply").
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import hiredis
from redis._parsers.base import BaseParser
from redis.exceptions import ConnectionError as RedisConnectionError

Replies = list[Any]
P = TypeVar("P", bound=asyncio.Protocol)
OnDone = Callable[[Replies | BaseException], None]
log = logging.getLogger("roomsvc.store")
# What the reader returns while a reply is incomplete: not False, which RESP3 can send.
NOT_YET = object()


def reply_reader() -> Any:
    return hiredis.Reader(notEnoughData=NOT_YET)


def replies_of(parser: Any) -> Iterator[Any]:
    """Each whole reply `parser` holds, in order (an error reply as redis-py's exception for
    it, in place); raises ConnectionError when the stream is not RESP."""
    while True:
        try:
            reply = parser.gets()
        except hiredis.ProtocolError as exc:
            raise RedisConnectionError(f"the store's reply is not RESP: {exc}") from None
        if reply is NOT_YET:
            return
        yield BaseParser.parse_error(str(reply)) if isinstance(reply, hiredis.ReplyError) else reply


class _Sent:
    __slots__ = ("attempt", "count", "deadline_s", "on_done", "packed", "replies", "timer",
                 "waited")  # fmt: skip

    def __init__(self, packed: bytes, count: int, on_done: OnDone, deadline_s: float,
                 waited: Callable[[], bool] | None) -> None:  # fmt: skip
        self.packed = packed
        self.count = count
        self.on_done = on_done
        self.deadline_s = deadline_s
        self.waited = waited  # False once no caller waits for the replies any more
        self.attempt = 1
        self.replies: Replies = []
        self.timer: asyncio.TimerHandle | None = None


class _Wire(asyncio.Protocol):
    """The protocol of one connection of a link: what a connection given up still reports
    (its loss, a late reply) is not taken for the link's current one."""

    __slots__ = ("_writer", "link")

    def __init__(self, link: StoreLink, writer: Any) -> None:
        self.link = link
        self._writer = writer  # kept: a stream writer collected closes its transport

    def data_received(self, data: bytes) -> None:
        if self.link._wire is self:
            self.link._received(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.link._wire is self:
            self.link._lost(RedisConnectionError("the store closed the connection"))


class StoreLink:
    """The process's pipelined connection to one plain store (module doc)."""

    def __init__(self, store: Any) -> None:
        self._store = weakref.ref(store)  # the link must not keep its store alive
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._wire: _Wire | None = None
        self._parser = reply_reader()
        self._opening: asyncio.Task[None] | None = None
        self._written: deque[_Sent] = deque()  # on the connection, awaiting replies in order
        self._waiting: list[_Sent] = []  # for the connection to open
        self._closed = False

    # ---- sending -----------------------------------------------------------------------------

    def submit(self, commands: Sequence[tuple[Any, ...]], on_done: OnDone, deadline_s: float,
               waited: Callable[[], bool] | None = None) -> None:  # fmt: skip
        """Send `commands` as one batch; `on_done` gets its replies in order (error replies in
        place, as exceptions) or the exception that failed the whole batch. `waited` says
        whether a caller still waits for them: a batch nobody waits for is not sent again
        after a lost connection (a store slow enough to lose its connections is not given
        the work of callers gone already a second time)."""
        packed = b"".join(map(hiredis.pack_command, commands))
        self._send(_Sent(packed, len(commands), on_done, deadline_s, waited))

    async def request(self, commands: Sequence[tuple[Any, ...]], deadline_s: float) -> Replies:
        """`submit`, awaited."""
        future: asyncio.Future[Replies] = asyncio.get_running_loop().create_future()

        def done(outcome: Replies | BaseException) -> None:
            if future.done():
                return
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

        self.submit(commands, done, deadline_s, lambda: not future.done())
        return await future

    def _send(self, sent: _Sent) -> None:
        if self._closed:
            sent.on_done(RedisConnectionError("the store link is closed"))
            return
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a store used from a new loop: the old one's link is dead
            self._forget()
            self._loop = loop
        sent.timer = loop.call_later(sent.deadline_s, self._expired, sent)
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._written.append(sent)
            transport.write(sent.packed)
            return
        self._waiting.append(sent)
        if self._opening is None:
            self._opening = loop.create_task(self._open())

    async def _open(self) -> None:
        try:
            store = self._store()
            if store is None:
                raise RedisConnectionError("the store is gone")
            transport, self._wire = await take_over(
                store.connection_pool, lambda writer: _Wire(self, writer)
            )
            self._parser = reply_reader()
            self._transport = transport
        except asyncio.CancelledError:  # given up by `_lost`, which handled the batches
            raise
        except Exception as exc:
            self._opening = None
            self._lost(exc)
            return
        self._opening = None
        waiting, self._waiting = self._waiting, []
        for sent in waiting:
            self._written.append(sent)
        transport.write(b"".join(sent.packed for sent in waiting))

    # ---- receiving ---------------------------------------------------------------------------

    def _received(self, data: bytes) -> None:
        parser, wire = self._parser, self._wire
        parser.feed(data)
        written = self._written
        try:
            for reply in replies_of(parser):
                if self._wire is not wire:  # a callback gave this connection up
                    return
                if isinstance(reply, hiredis.PushNotification):
                    continue  # RESP3 out-of-band data (maintenance, tracking): no batch's reply
                if not written:  # a reply to nothing: the stream is not what it should be
                    self._lost(RedisConnectionError("the store sent an unexpected reply"))
                    return
                sent = written[0]
                sent.replies.append(reply)
                if len(sent.replies) == sent.count:
                    written.popleft()
                    self._finish(sent, sent.replies)
        except RedisConnectionError as exc:  # not RESP (callbacks raise nothing: `_call`)
            self._lost(exc)

    # ---- failure -------------------------------------------------------------------------------

    def _expired(self, sent: _Sent) -> None:
        sent.timer = None
        self._lost(TimeoutError(f"the store did not answer within {sent.deadline_s:g} s"))

    def _lost(self, error: BaseException) -> None:
        """Give the connection up; every batch on it or waiting for it is sent once more, or
        fails with `error` if it already was or nobody waits for it."""
        pending = self._forget()
        for sent in pending:
            if sent.timer is not None:
                sent.timer.cancel()
                sent.timer = None
            if sent.attempt == 1 and not self._closed and (sent.waited is None or sent.waited()):
                sent.attempt, sent.replies = 2, []
                self._send(sent)
            else:
                _call(sent.on_done, error)

    def _forget(self) -> list[_Sent]:
        """Drop the connection, its parser and its batches (returned, in the order sent)."""
        transport, self._transport, self._wire = self._transport, None, None
        opening, self._opening = self._opening, None
        pending = [*self._written, *self._waiting]
        self._written, self._waiting = deque(), []
        self._parser = reply_reader()
        with contextlib.suppress(Exception):  # its loop may be closed: the socket is gone then
            if transport is not None:
                transport.abort()
            if opening is not None:
                opening.cancel()
        return pending

    def _finish(self, sent: _Sent, outcome: Replies | BaseException) -> None:
        if sent.timer is not None:
            sent.timer.cancel()
            sent.timer = None
        _call(sent.on_done, outcome)

    def close(self) -> None:
        self._closed = True
        self._lost(RedisConnectionError("the store link is closed"))


async def take_over(pool: Any, protocol: Callable[[Any], P]) -> tuple[Any, P]:
    """A connection made by redis-py's `pool` (the URL's address, TLS, AUTH, HELLO, SELECT):
    its transport, handed to `protocol(writer)`, and that protocol; redis-py keeps no reference
    to it. The handshake's replies are all read by then: nothing else is sent before the first
    command."""
    conn = pool.make_connection()
    try:
        await conn.connect()
    except BaseException:  # (cancelled too): the half-made connection is closed
        with contextlib.suppress(Exception):
            await conn.disconnect()
        raise
    writer = conn._writer
    transport = writer.transport
    conn._writer = conn._reader = None  # redis-py forgets it: no close, no warning
    made = protocol(writer)  # it keeps the writer: a stream writer collected closes its transport
    transport.set_protocol(made)
    return transport, made


def _call(on_done: OnDone, outcome: Replies | BaseException) -> None:
    """A batch's callback; one that fails must not stop the replies of the batches after it."""
    try:
        on_done(outcome)
    except Exception:
        log.exception("a store batch's callback failed")


_links: weakref.WeakKeyDictionary[Any, StoreLink] = weakref.WeakKeyDictionary()


def link_of(store: Any) -> StoreLink:
    """The link of `store` in this process, made on first use."""
    link = _links.get(store)
    if link is None:
        link = _links[store] = StoreLink(store)
    return link


def close_link(store: Any) -> None:
    """Close `store`'s link, if it has one (before the store itself closes)."""
    link = _links.pop(store, None)
    if link is not None:
        link.close()
