"""One player: a `roomsvc.client.RoomsvcClient` (compression off, docs/spec.md §11; no
reconnect: a lost socket is the run's business) and what the load test counts on it. Every call
is a JSON-RPC request matched to its reply by the client, every room change arrives as a
`roomStatus` push (docs/spec.md §6), and every in-room message as a `message` notification
(docs/messages.md), counted per room and sender."""

from __future__ import annotations

import asyncio
import collections
import random
import struct
import time
from collections.abc import Callable
from typing import Any

from loadgen.stats import Failure, Stats
from roomsvc.client import CallError, Disconnected, Message, RoomsvcClient

LIVE = ("ROOM_CONNECTING", "ROOM_ACTIVE")
STAMP = struct.Struct(">d")  # a message's payload starts with its send time (perf_counter)


def version_of(room: dict[str, Any]) -> int:
    return int(room.get("roomStatusVersion", room.get("statusVersion", 0)) or 0)


class Client:
    """One player's socket: the newest view of each room it saw, and the messages it heard."""

    def __init__(self, url: str, token: str, player: str, stats: Stats, timeout: float) -> None:
        self.player, self.stats = player, stats
        self.rc = RoomsvcClient(url, token, reconnect=False, call_timeout=timeout,
                                compression=None)  # fmt: skip
        self.rooms: dict[str, dict[str, Any]] = {}
        # (roomId, sender participant id) -> reliable messages received, and the last seq
        self.heard: collections.Counter[tuple[str, str]] = collections.Counter()
        self.last_seq: dict[str, int] = {}
        self.finished: set[str] = set()  # rooms of this player's earlier games
        self.changed = asyncio.Event()
        self.closed: str | None = None
        self.dropping = False
        self.doing = "idle"  # what this player waits for now (a stuck game's report says)
        # an invitation is a roomStatus push too (roomsvc.client names it by the player's status)
        self.rc.on("roomStatus", self._pushed)
        self.rc.on("invitation", self._pushed)
        self.rc.on("message", self.on_message)
        self.rc.on("disconnected", self._disconnected)

    @property
    def close_code(self) -> int | None:
        return self.rc.close_code

    async def connect(self) -> dict[str, Any]:
        """The socket and its welcome; Disconnected (with the close code) if it closed first."""
        return await self.rc.connect()

    def _pushed(self, room: dict[str, Any]) -> None:
        at = time.perf_counter()
        self.stats.pushes += 1
        self.stats.arrivals.append((room["roomId"], version_of(room), at))
        self.observe(room)

    def _disconnected(self, code: int | None) -> None:
        self.closed = f"closed {code if code is not None else 'without a close frame'}"
        self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def on_message(self, message: Message) -> None:
        at = time.perf_counter()
        room_id, seq = message.room_id, message.seq or 0
        if seq and seq <= self.last_seq.get(room_id, 0):
            self.stats.error(Failure("message out of order", f"{room_id} seq {seq}"))
        self.last_seq[room_id] = max(seq, self.last_seq.get(room_id, 0))
        self.heard[(room_id, message.sender_participant_id)] += 1
        (sent,) = STAMP.unpack_from(message.data)
        self.stats.lat["message"].append(at - sent)
        self._wake()

    def observe(self, room: dict[str, Any]) -> None:
        """Keep the newest version of each room (pushes, replies and RoomStatus alike)."""
        room_id = room.get("roomId")
        if not room_id:
            return
        known = self.rooms.get(room_id)
        if known is None or version_of(room) > version_of(known):
            self.rooms[room_id] = {**known, **room} if known else room
            self._wake()

    async def call(self, op: str | None, method: str, within: float,
                   confirm: Callable[[dict[str, Any]], bool] | None = None,
                   **params: Any) -> Any:  # fmt: skip
        """One call, as a well-behaved client makes it (docs/store.md "Deadlines"):
        - refused as overloaded (503 `overloaded`: nothing was done), it is sent again after
          its Retry-After, counted as shed;
        - answered "outcome unknown" (503 `outcomeUnknown`: the store did not confirm it in
          time; it may have been applied), it is read back with `confirm` when given (a join or
          a leave, which the rules refuse twice) and returns that room if it took effect, else
          it is sent again (a create and an events.record carry a requestId; a report is
          idempotent); counted as unknown. A message is never resent: it would be a new one.
        Latencies are those of accepted calls."""
        give_up = time.perf_counter() + within
        self.doing = f"calling {method} {params.get('roomId', '')}"
        while True:
            error, result, sent = await self._send(method, give_up - time.perf_counter(), params)
            data = error.data if error is not None else {}
            reason = data.get("reason") if data.get("code") == 503 else None
            if reason not in ("overloaded", "outcomeUnknown", "backendError") or (
                reason == "outcomeUnknown" and method == "rooms.sendMessage"
            ):
                break
            (self.stats.shed if reason == "overloaded" else self.stats.unknown)[op or method] += 1
            pause = min(float(data.get("retryAfter", 1)), 1.0) * random.uniform(0.5, 1.5)
            if time.perf_counter() + pause >= give_up:
                raise Failure("timeout", f"{method} for {self.player}: {reason} until the "
                              "timeout")  # fmt: skip
            await asyncio.sleep(pause)
            if reason == "outcomeUnknown" and confirm is not None:
                room = await self.call(None, "rooms.get", give_up - time.perf_counter(),
                                       roomId=params["roomId"])  # fmt: skip
                if confirm(room):
                    return room
        if op is not None:
            self.stats.lat[op].append(time.perf_counter() - sent)
        self.stats.requests += 1
        if error is not None:
            raise Failure(f"{method} error {data.get('code', error.code)}", str(error))
        if isinstance(result, dict) and result.get("roomId"):
            self.stats.sent_at.setdefault((result["roomId"], version_of(result)), sent)
            self.observe(result)
        return result

    async def _send(self, method: str, within: float,
                    params: dict[str, Any]) -> tuple[CallError | None, Any, float]:  # fmt: skip
        if self.closed:
            raise Failure("socket closed", f"{self.player} before {method}: {self.closed}")
        sent = time.perf_counter()
        try:
            return None, await self.rc.call(method, params, within=max(0.0, within)), sent
        except CallError as error:
            return error, None, sent
        except TimeoutError:
            raise Failure("timeout", f"{method} for {self.player}") from None
        except Disconnected:
            raise Failure("socket closed", f"{self.player} during {method}") from None

    async def wait(self, what: str, check: Callable[[], Any], within: float) -> Any:
        self.doing = f"waiting for {what}"
        try:
            async with asyncio.timeout(within):
                while not (found := check()):
                    if self.closed:
                        raise Failure("socket closed", f"{self.player} waiting for {what}")
                    await self.changed.wait()
        except TimeoutError:
            raise Failure("timeout", f"{self.player} waiting for {what}") from None
        return found

    def me(self, room: dict[str, Any]) -> dict[str, Any] | None:
        for p in room.get("participants") or ():
            if (p.get("player") or {}).get("playerId") == self.player:
                return p
        return None

    def joined(self, room: dict[str, Any]) -> bool:
        """A join took effect: this player is JOINED in `room`."""
        return (self.me(room) or {}).get("status") == "PARTICIPANT_JOINED"

    def left(self, room: dict[str, Any]) -> bool:
        """A leave took effect: this player is no longer JOINED (or the room ended)."""
        return room.get("status") == "ROOM_DELETED" or not self.joined(room)

    def drop(self) -> None:
        """Cut the socket without a close frame, as a lost network would."""
        self.dropping = True
        self.rc.drop()

    async def close(self) -> None:
        await self.rc.close()
