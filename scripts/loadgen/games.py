"""What each kind of game does, from the first request to the last (docs/spec.md §3-§6):

- invite: the host creates a room inviting the others; each learns of it from the push, joins;
- auto: one player creates a room with autoMatchingCriteria and waits for the push showing the
  room it was matched into;
- drop: an invitation game in which one invitee cuts its socket during play; the others wait
  for the push showing it LEFT (presence, docs/spec.md §6).

Then every participant reports its peers connected, waits for ROOM_ACTIVE, plays (sends
`--messages` reliable in-room messages to the others and waits for every one of theirs, in
order; a short random sleep; sometimes an events.record) and leaves. Every unexpected reply,
state, close or timeout raises `Failure`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import random
import time
from typing import Any

from loadgen.client import LIVE, STAMP, Client, version_of
from loadgen.players import Players
from loadgen.stats import Failure, Stats


class Games:
    def __init__(self, args: argparse.Namespace, stats: Stats, rng: random.Random,
                 players: Players) -> None:  # fmt: skip
        self.args, self.stats, self.rng, self.players = args, stats, rng, players
        self.presence_timeout = 3 * args.presence_grace + 10

    async def game(self, kind: str, players: list[Client]) -> None:
        """Play one game, count what failed, and give the players back."""
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
            self.players.release(*players)

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

        room = await self.wait_room(me, room_id, "CONNECTING", connecting)
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

            await self.wait_room(me, room_id, "ACTIVE", active)
        await self.exchange(me, room_id, peers)
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
        left = await me.call("leave", "rooms.leave", t, confirm=me.left, roomId=room_id,
                             body={"reason": "PLAYER_LEFT"})  # fmt: skip
        if left.get("status") == "ROOM_DELETED":
            self.stats.games[kind] += 1

    async def exchange(self, me: Client, room_id: str, peers: list[str]) -> None:
        """The game's traffic: `--messages` reliable messages to the others, then every one of
        theirs (each arrives once and in order: the client checks the seq)."""
        count, t = self.args.messages, self.args.timeout
        for n in range(count):
            data = STAMP.pack(time.perf_counter()) + n.to_bytes(4, "big")
            body = {"messageData": base64.b64encode(data).decode(), "reliable": True}
            await me.call("send", "rooms.sendMessage", t, roomId=room_id, body=body)

        def heard_all() -> bool:
            return all(me.heard[(room_id, peer)] >= count for peer in peers)

        await self.wait_room(me, room_id, "messages", heard_all)

    async def wait_room(self, me: Client, room_id: str, what: str, check: Any) -> Any:
        """`me.wait` for a state of one room. A timeout says what the store holds beside what
        the pushes showed and what the room's other players are doing, so a lost push (the
        store ahead of the socket) is told apart from a game stalled by one player's call."""
        try:
            return await me.wait(f"{room_id} {what}", check, self.args.timeout)
        except Failure as failure:
            if failure.kind != "timeout" or me.closed:
                raise
            raise Failure("timeout", await self.stalled(me, room_id, what)) from None

    async def stalled(self, me: Client, room_id: str, what: str) -> str:
        try:
            room = await me.call(None, "rooms.get", 5.0, roomId=room_id)
        except Failure as failure:
            room = {"status": f"unread ({failure})"}
        heard = {peer: n for (r, peer), n in me.heard.items() if r == room_id}
        by_player = {c.player: c for c in self.players.clients}
        others = []
        for p in room.get("participants") or ():
            other = by_player.get(str((p.get("player") or {}).get("playerId")))
            if other is not None and other is not me:
                others.append(f"{other.player[-4:]} {other.doing}")
        return (
            f"{me.player} waiting for {room_id} {what}: store {describe(room)}; pushed "
            f"{describe(me.rooms.get(room_id) or {})}; heard {heard}; others {others}"
        )

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

    async def gather_all(self, *aws: Any) -> None:
        """Like gather, but every participant finishes (or fails) first; each failure is
        counted (the first one is raised, and `game` counts it), so a game that stalls because
        one player's call failed shows that failure, not only the others' timeouts."""
        failures = [r for r in await asyncio.gather(*aws, return_exceptions=True)
                    if isinstance(r, BaseException)]  # fmt: skip
        for failure in failures[1:]:
            self.stats.error(failure if isinstance(failure, Failure)
                             else Failure("client exception", repr(failure)))  # fmt: skip
        if failures:
            raise failures[0]

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
            await me.call("join", "rooms.join", t, confirm=me.joined, roomId=room_id, body={})
            await self.play_room(me, room_id, kind, dropper, me is drops)

        await self.gather_all(self.play_room(host, room_id, kind, dropper, False),
                              *(guest(g) for g in guests))  # fmt: skip

    async def auto_game(self, me: Client) -> None:
        t = self.args.timeout
        most = self.rng.randint(1, 3)
        criteria = {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": most}
        body = {"autoMatchingCriteria": criteria, "requestId": str(self.rng.getrandbits(62))}
        room = await me.call("create", "rooms.create", t, body=body)
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
                if self.players.stopping and await self.withdraw(me, own):
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
            await me.call(None, "rooms.leave", self.args.timeout, confirm=me.left, roomId=own,
                          body={})  # fmt: skip
        except Failure as failure:
            if failure.kind.endswith("error 409"):
                return False  # merged meanwhile: the push shows where, play it out
            raise
        # Left either way: the ticket alone (the room ended), or, when a match had just filled
        # the room, the game too: the others keep it (docs/spec.md §4).
        self.stats.withdrawn += 1
        return True


def describe(room: dict[str, Any]) -> str:
    """A room in one line: status, version, and each participant (+: connected)."""
    parts = ",".join(
        f"{str(p.get('id'))[-4:]}={str(p.get('status', '')).removeprefix('PARTICIPANT_')}"
        f"{'+' if p.get('connected') else ''}"
        for p in room.get("participants") or ()
    )
    return f"{room.get('status')} v{version_of(room)} [{parts}]"
