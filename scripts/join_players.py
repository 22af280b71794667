"""The players of `scripts/bench_join.py` (its docstring says what each does): one player's
steps and what it saw, and a crowd of them with a bound on how many are joining at once."""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any

import msgspec
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

GROUP = 4
VARIANT = 7
STALL_S = 10.0  # no new room for this long: the players still waiting never will
LIVE = ("ROOM_CONNECTING", "ROOM_ACTIVE")
CREATE = msgspec.json.encode(
    {"jsonrpc": "2.0", "id": 1, "method": "rooms.create", "params": {"body": {
        "autoMatchingCriteria": {"minAutoMatchingPlayers": GROUP - 1,
                                 "maxAutoMatchingPlayers": GROUP - 1},
        "variant": VARIANT}}}
).decode()  # fmt: skip


# Only the fields the client looks at: msgspec skips the rest of each frame without building it.
class PlayerRef(msgspec.Struct):
    playerId: str = ""  # the wire's names


class Part(msgspec.Struct):
    status: str = ""
    player: PlayerRef | None = None


class RoomView(msgspec.Struct):
    roomId: str = ""
    status: str = ""
    participants: list[Part] = []


class Frame(msgspec.Struct):
    method: str | None = None
    id: int | None = None
    params: RoomView | None = None
    result: RoomView | None = None
    error: dict[str, Any] | None = None


_decode = msgspec.json.Decoder(Frame).decode


@dataclass
class Tally:
    seated: list[float] = field(default_factory=list)  # s from the socket's opening
    matched: list[float] = field(default_factory=list)
    full_rooms: dict[str, set[str]] = field(default_factory=dict)  # room -> players pushed it
    rooms_of: dict[str, set[str]] = field(default_factory=dict)  # player -> its full rooms
    pushes: dict[str, int] = field(default_factory=dict)  # player -> roomStatus until matched
    late_pushes: int = 0  # roomStatus pushes after the player's full room
    errors: dict[str, int] = field(default_factory=dict)
    remaining: int = 0
    last_match: float = 0.0  # perf_counter of the latest full-room push
    sockets: list[Any] = field(default_factory=list)
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    all_matched: asyncio.Event = field(default_factory=asyncio.Event)

    def error(self, what: str) -> None:
        self.errors[what[:160]] = self.errors.get(what[:160], 0) + 1

    def done(self) -> None:
        self.remaining -= 1
        if self.remaining <= 0:
            self.all_matched.set()


async def player(name: str, url: str, gate: asyncio.Semaphore, tally: Tally,
                 sockets: list[Any]) -> None:  # fmt: skip
    """One player: open, welcome, create (seated), pushes until its full room (matched); then
    it keeps reading (and counting pushes) until the socket is closed at the end."""
    counted = False
    try:
        async with gate:
            opened = time.perf_counter()
            ws = await connect(url, compression=None, max_queue=None, ping_interval=None,
                               open_timeout=120, close_timeout=5)  # fmt: skip
            sockets.append(ws)
            welcome = _decode(await ws.recv())
            if welcome.method != "welcome":
                raise RuntimeError(f"no welcome: {welcome}")
            await ws.send(CREATE)
            pushes = 0
            while True:
                frame = _decode(await ws.recv())
                if frame.id == 1:
                    if frame.error is not None or frame.result is None:
                        raise RuntimeError(f"rooms.create failed: {frame.error}")
                    tally.seated.append(time.perf_counter() - opened)
                    break
                if frame.method == "roomStatus":
                    pushes += 1
        matched = False
        async for raw in ws:
            frame = _decode(raw)
            if frame.method != "roomStatus" or frame.params is None:
                continue
            if matched:
                tally.late_pushes += 1
                continue
            pushes += 1
            room = frame.params
            if len(room.participants) == GROUP and room.status in LIVE and any(
                p.player is not None and p.player.playerId == name
                and p.status == "PARTICIPANT_JOINED" for p in room.participants
            ):  # fmt: skip
                matched = True
                now = time.perf_counter()
                tally.matched.append(now - opened)
                tally.last_match = now
                tally.pushes[name] = pushes
                tally.full_rooms.setdefault(room.roomId, set()).add(name)
                tally.rooms_of.setdefault(name, set()).add(room.roomId)
                counted = True
                tally.done()
    except ConnectionClosed as exc:
        if not counted:  # closed by the server before the full room (e.g. 1013 overloaded)
            rcvd = exc.rcvd
            tally.error(f"socket closed before matched: {rcvd.code if rcvd else None} "
                        f"{rcvd.reason if rcvd else ''}")  # fmt: skip
    except Exception as exc:
        tally.error(f"{type(exc).__name__}: {exc}")
    finally:
        if not counted:
            tally.done()


async def crowd(urls: list[tuple[str, str]], in_flight: int, give_up_s: float) -> Tally:
    """Every player of `urls` through the four steps; sockets closed once all are matched."""
    tally = Tally(remaining=len(urls))
    gate = asyncio.Semaphore(in_flight)
    sockets: list[Any] = []
    tasks = [asyncio.create_task(player(name, url, gate, tally, sockets)) for name, url in urls]
    started = tally.last_match = time.perf_counter()
    # Until every player is matched or failed; players left waiting (fewer than a room, their
    # partners failed) end it once no room has formed for STALL_S.
    while not tally.all_matched.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(tally.all_matched.wait(), 0.5)
        now = time.perf_counter()
        if now - tally.last_match > STALL_S or now - started > give_up_s:
            tally.error(f"gave up: {tally.remaining} players not matched "
                        f"({now - tally.last_match:.1f} s without a new room)")  # fmt: skip
            break
    tally.sockets, tally.tasks = sockets, tasks
    return tally


async def close_all(tally: Tally) -> None:
    await asyncio.gather(*(ws.close() for ws in tally.sockets), return_exceptions=True)
    await asyncio.gather(*tally.tasks, return_exceptions=True)
