"""One connection's in-room messages (docs/messages.md "Delivery"): what it sends, what it has
been given, and what waits to be written.

Sending: a token counter and a lock, so one connection's sends commit one at a time in the order
they arrived (in order per sender, and the token dedupe of message_send.lua stays valid), and a
token bucket (`ROOMSVC_MESSAGES_PER_SECOND`, bursts of twice that).

Receiving: per room a `Cursor`, the newest reliable `seq` this connection has accounted for
(given, or not addressed to it). A reliable message is given exactly once and in order: one at
or below the cursor is a duplicate; one beyond the next waits while the gap is filled from the
room's backlog (a publication this process missed), and while the room is `held` (a room of the
welcome, until the client resumes it: a resumed backlog must precede newer live messages).

Writing: frames are written at once when the socket can take them, otherwise queued, one FIFO
for messages and the replies of message calls. The queue is bounded: past `DROP_UNRELIABLE_AT`
frames an unreliable message is dropped (counted); past `MAX_QUEUED` the reader is too slow
and is cut with 1013, never unbounded memory and never a stall for anyone else.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time

from roomsvc.common.metrics import MESSAGE_LATENCY, MESSAGES_DELIVERED, MESSAGES_DROPPED
from roomsvc.common.rate import TokenBucket
from roomsvc.realtime.connection import CLOSE_OVERLOADED, Connection, ConnectionGone

log = logging.getLogger("roomsvc.realtime")
MAX_QUEUED = 2048
DROP_UNRELIABLE_AT = 256
MAX_WAITING = 2048  # reliable messages held per room behind a gap or a resume
LATENCY_SAMPLE = 8
_sampled = [0]
_DROPPED_SLOW = MESSAGES_DROPPED.labels("slow-recipient")  # resolved once: a lock per labels()


class Cursor:
    __slots__ = ("filling", "held", "seq", "waiting")

    def __init__(self, seq: int | None, held: bool) -> None:
        # None: start at the first live message (a welcome room whose client never resumed)
        self.seq = seq
        self.held = held
        self.filling = False
        self.waiting: dict[int, object] = {}  # seq -> the message, ahead of the cursor

    @property
    def blocked(self) -> bool:
        return self.held or self.filling


class Inbox:
    # Slots, and the lock and queue made on first use: tens of thousands of connections live
    # in one process and most never send or queue a message (docs/spec.md §11: RSS per socket).
    __slots__ = ("_drainer", "_lock", "binary", "bucket", "conn", "cursors", "queue",
                 "tokens")  # fmt: skip

    def __init__(self, conn: Connection, rate: float, *, binary: bool) -> None:
        self.conn = conn
        self.binary = binary  # MESSAGE frames rather than `message` notifications
        self.bucket = TokenBucket(rate, time.monotonic())
        self.tokens = 0
        self._lock: asyncio.Lock | None = None
        self.cursors: dict[str, Cursor] = {}
        self.queue: collections.deque[tuple[str | bytes, bool, float]] | None = None
        self._drainer: asyncio.Task[None] | None = None

    @property
    def send_lock(self) -> asyncio.Lock:
        if self._lock is None:
            self._lock = asyncio.Lock()
        return self._lock

    def next_token(self) -> int:
        self.tokens += 1
        return self.tokens

    # ---- writing -------------------------------------------------------------------------------

    def put(self, frame: str | bytes, *, reliable: bool, accepted_s: float = 0.0) -> None:
        """Write `frame` now if the socket takes it and nothing queued is ahead, else queue it.
        `accepted_s` (wall clock) is when the store accepted the message: its latency."""
        conn = self.conn
        if conn.closed:
            return
        if not self.queue and conn.write_now(frame):
            self._written(accepted_s)
            return
        if self.queue is None:
            self.queue = collections.deque()
        if not reliable and len(self.queue) >= DROP_UNRELIABLE_AT:
            _DROPPED_SLOW.inc()
            return
        if len(self.queue) >= MAX_QUEUED:
            conn.close_soon(CLOSE_OVERLOADED, "message queue overflow: the client is not reading")
            return
        self.queue.append((frame, reliable, accepted_s))
        self.kick()

    def kick(self) -> None:
        if self.queue and self._drainer is None and self.conn.ready and not self.conn.closed:
            self._drainer = asyncio.create_task(self._drain())

    async def _drain(self) -> None:
        try:
            while self.queue and not self.conn.closed:
                frame, _, accepted_s = self.queue.popleft()
                await self.conn.send(frame)
                self._written(accepted_s)
        except ConnectionGone:
            self.queue = None
        except Exception:
            log.exception("message delivery failed", extra={"conn_id": self.conn.id})
        finally:
            self._drainer = None

    @staticmethod
    def _written(accepted_s: float) -> None:
        if accepted_s:
            MESSAGES_DELIVERED.inc()
            # One delivery in LATENCY_SAMPLE is timed: a histogram observation costs more than
            # the rest of the bookkeeping of a delivery (docs/performance.md, messages).
            _sampled[0] += 1
            if _sampled[0] % LATENCY_SAMPLE == 0:
                MESSAGE_LATENCY.observe(max(0.0, time.time() - accepted_s))

    def stop(self) -> None:
        self.queue = None
        if self._drainer is not None:
            self._drainer.cancel()
