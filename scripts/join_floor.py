"""The floor under the join figure (docs/spec.md §11; docs/performance.md "Joins"): uvicorn with
`roomsvc serve`'s flags (its WebSocket protocol too, unless `--floor-ws websockets-sansio`) serving
a bare ASGI app that sends exactly the frames a join costs
roomsvc, and does nothing else. No token check, no store, no rules: players are grouped in
memory, four at a time, in arrival order.

Per player, as `scripts/bench_join.py` sees roomsvc do it: accept the socket, send the welcome
(165 bytes for a player with no rooms), read `rooms.create`, answer with the player's seated room
(825 bytes), and once four have asked, push each the full room of four (1,590 bytes) and three of
them the tombstone of the room they left (781 bytes). The sizes are roomsvc's frames measured for
the same players. The same client drives both, so roomsvc's CPU per join over this one's is the
share of a join that is roomsvc's own work.

The player's id comes from a `player` query parameter (the floor reads no token).
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any
from urllib.parse import parse_qs

import msgspec
from wsbench_support import FLOOR_WS, free_port, port_open, serves_websocket, wait_for

GROUP = 4
WELCOME_BYTES, SEATED_BYTES, FULL_BYTES, TOMBSTONE_BYTES = 165, 825, 1590, 781


def _sized(frame: dict[str, Any], size: int, into: dict[str, Any]) -> str:
    """`frame` as JSON, padded with a description in `into` to `size` bytes (ASCII)."""
    into["description"] = ""
    bare = len(msgspec.json.encode(frame))
    into["description"] = "x" * max(0, size - bare)
    return msgspec.json.encode(frame).decode()


def _participant(player: str) -> dict[str, Any]:
    return {"kind": "games#roomParticipant", "id": f"p_{player}", "status": "PARTICIPANT_JOINED",
            "connected": True, "player": {"kind": "games#player", "playerId": player}}  # fmt: skip


def welcome(player: str) -> str:
    params = {"playerId": player, "rooms": [], "invitations": [], "iceServers": []}
    return _sized({"jsonrpc": "2.0", "method": "welcome", "params": params}, WELCOME_BYTES, params)


def seated(player: str, room: str) -> str:
    result = {"kind": "games#room", "roomId": room, "status": "ROOM_AUTO_MATCHING",
              "participants": [_participant(player)]}  # fmt: skip
    return _sized({"jsonrpc": "2.0", "id": 1, "result": result}, SEATED_BYTES, result)


def pushed(room: str, status: str, players: list[str], size: int) -> str:
    params = {"kind": "games#roomStatus", "roomId": room, "status": status,
              "participants": [_participant(p) for p in players]}  # fmt: skip
    return _sized({"jsonrpc": "2.0", "method": "roomStatus", "params": params}, size, params)


class BareJoins:
    """An ASGI app: the frames of a join (module doc), players grouped four by four."""

    def __init__(self) -> None:
        self.waiting: list[tuple[str, str, Any]] = []  # (player, its room, its send)
        self.rooms = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if not await serves_websocket(scope, receive, send):
            return
        player = parse_qs(scope["query_string"].decode()).get("player", ["?"])[0]
        await receive()  # websocket.connect
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": welcome(player)})
        while (message := await receive())["type"] != "websocket.disconnect":
            if "rooms.create" in (message.get("text") or ""):
                await self._seat(player, send)

    async def _seat(self, player: str, send: Any) -> None:
        self.rooms += 1
        room = f"r{self.rooms}"
        await send({"type": "websocket.send", "text": seated(player, room)})
        self.waiting.append((player, room, send))
        if len(self.waiting) < GROUP:
            return
        group, self.waiting = self.waiting[:GROUP], self.waiting[GROUP:]
        players = [p for p, _, _ in group]
        target = group[0][1]
        full = pushed(target, "ROOM_ACTIVE", players, FULL_BYTES)
        for n, (_, own, each) in enumerate(group):
            await each({"type": "websocket.send", "text": full})
            if n:  # the others left a room of their own for the target
                gone = pushed(own, "ROOM_DELETED", [], TOMBSTONE_BYTES)
                await each({"type": "websocket.send", "text": gone})


def serve(port: int, ws: str) -> None:
    import uvicorn

    # `roomsvc serve`'s flags (roomsvc/cli.py), its default ping interval included
    uvicorn.run(BareJoins(), host="127.0.0.1", port=port, ws=FLOOR_WS[ws],
                ws_per_message_deflate=False, ws_max_size=65_536, ws_ping_interval=20,
                ws_ping_timeout=20, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, proxy_headers=True, lifespan="on")  # fmt: skip


def start(ws: str = "roomsvc") -> tuple[subprocess.Popen[bytes], str]:
    """The floor server in its own process (served with `ws`, FLOOR_WS), and its base URL."""
    port = free_port()
    argv = [sys.executable, __file__, "--port", str(port), "--ws", ws]
    server = subprocess.Popen(argv, stdin=subprocess.DEVNULL)
    wait_for(lambda: port_open(port))
    return server, f"http://127.0.0.1:{port}"


if __name__ == "__main__":
    serve(int(sys.argv[sys.argv.index("--port") + 1]), sys.argv[sys.argv.index("--ws") + 1])
