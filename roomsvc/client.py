"""`roomsvc.client`: the asyncio client of the realtime channel (docs/clients.md).

The surface of GPGS's RealTimeMultiplayerClient in snake_case, as the JavaScript client has it
in camelCase: rooms (create, join, leave, decline, dismiss, list, get, report_status), in-room
messages (reliable, unreliable, to others; docs/spec.md rules in docs/messages.md), signaling and
ICE servers. Listeners: `on("roomStatus" | "invitation" | "message" | "signal" |
"disconnected" | "reconnected", fn)`; `fn` may be a plain function or a coroutine function.

It reconnects by itself (exponential backoff with full jitter) unless `reconnect=False`, and
after each reconnect resumes every room of the welcome from the last reliable `seq` it saw, so a
reconnect within the presence grace loses no reliable message and shows none twice.

    client = RoomsvcClient("ws://127.0.0.1:8080", token)
    welcome = await client.connect()
    client.on("message", lambda m: print(m.sender_participant_id, m.data))
    room = await client.create_room(auto_matching_criteria={"minAutoMatchingPlayers": 1,
                                                            "maxAutoMatchingPlayers": 1})
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import inspect
import itertools
import json
import logging
import random
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

import msgspec
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from roomsvc.messages import frames

log = logging.getLogger("roomsvc.client")

PATH = "/games/v1/realtime"
# msgspec parses ~3x faster than the stdlib (docs/spec.md §11): a load generator's CPU competes
# with the server it measures (docs/performance.md)
_decode = msgspec.json.Decoder().decode
_encode = msgspec.json.Encoder().encode


class CallError(Exception):
    """A JSON-RPC error: `code`, and `data` as the server sent it (code, status, reason,
    gpgsStatus where GPGS had one)."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(error.get("message", "error"))
        self.code = error.get("code")
        self.data: dict[str, Any] = error.get("data") or {}

    @property
    def reason(self) -> str | None:
        return self.data.get("reason")


class Disconnected(Exception):
    """The socket closed while a call waited for its reply; `code` is the close code."""

    def __init__(self, code: int | None) -> None:
        super().__init__(f"disconnected (close code {code})")
        self.code = code


@dataclasses.dataclass(frozen=True, slots=True)
class Message:
    room_id: str
    sender_participant_id: str
    data: bytes
    is_reliable: bool
    seq: int | None


class RoomsvcClient:
    def __init__(self, url: str, token: str, *, binary: bool = False, reconnect: bool = True,
                 language: str | None = None, call_timeout: float = 30.0,
                 compression: str | None = None) -> None:  # fmt: skip
        self.base = url.rstrip("/").replace("http://", "ws://", 1).replace("https://", "wss://", 1)
        self.token = token
        self.binary = binary
        self.reconnect = reconnect
        self.language = language
        self.call_timeout = call_timeout
        # None: no per-message deflate, as a load generator wants (docs/performance.md)
        self.compression = compression
        self.welcome: dict[str, Any] = {}
        self.last_seq: dict[str, int] = {}  # roomId -> newest reliable seq received
        self.close_code: int | None = None
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._pending: dict[Any, asyncio.Future[Any]] = {}
        self._listeners: dict[str, list[Callable[[Any], Any]]] = {}
        self._welcomed: asyncio.Future[dict[str, Any]] | None = None
        self._reader: asyncio.Task[None] | None = None
        self._closing = False

    # ---- connection ----------------------------------------------------------------------------

    def on(self, event: str, fn: Callable[[Any], Any]) -> None:
        self._listeners.setdefault(event, []).append(fn)

    @property
    def url(self) -> str:
        query: dict[str, str] = {"access_token": self.token}
        if self.binary:
            query["messageFormat"] = "binary"
        if self.language:
            query["language"] = self.language
        return f"{self.base}{PATH}?{urlencode(query)}"

    async def connect(self) -> dict[str, Any]:
        """Open the socket; resolves with the welcome's params."""
        self._closing = False
        self._welcomed = asyncio.get_running_loop().create_future()
        self._ws = await connect(self.url, max_size=None, open_timeout=self.call_timeout,
                                 compression=self.compression)  # fmt: skip
        self._reader = asyncio.create_task(self._read(self._ws))
        self.welcome = await asyncio.wait_for(asyncio.shield(self._welcomed), self.call_timeout)
        return self.welcome

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    def drop(self) -> None:
        """Cut the socket without a close frame, as a lost network would: the server sees the
        player go silent (presence, docs/spec.md §6), and this client reconnects unless
        `reconnect=False`. For tests and the load test's drop games."""
        transport = self._ws.transport if self._ws is not None else None
        if transport is not None:
            transport.abort()

    async def _read(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                await self._dispatch(raw)
        except ConnectionClosed:
            pass
        rcvd = ws.protocol.close_rcvd
        self.close_code = rcvd.code if rcvd is not None else None
        for future in self._pending.values():
            if not future.done():
                future.set_exception(Disconnected(self.close_code))
        self._pending.clear()
        if self._welcomed is not None and not self._welcomed.done():
            self._welcomed.set_exception(Disconnected(self.close_code))
        if self._closing:
            return
        await self._emit("disconnected", self.close_code)
        if self.reconnect:
            asyncio.get_running_loop().create_task(self._reconnect())

    async def _reconnect(self) -> None:
        for attempt in itertools.count():
            if self._closing:
                return
            # full jitter: a fleet of clients cut at once does not come back at once
            await asyncio.sleep(random.uniform(0, min(10.0, 0.2 * 2**attempt)))
            try:
                welcome = await self.connect()
            except (OSError, Disconnected, TimeoutError, ConnectionClosed):
                continue
            except Exception as exc:  # the handshake was refused (e.g. 401): not retried
                if getattr(exc, "response", None) is not None:
                    await self._emit("disconnected", None)
                    return
                continue
            for room in welcome.get("rooms", []):
                room_id = room.get("roomId")
                if room_id:
                    with contextlib.suppress(CallError):  # the room ended meanwhile
                        await self.resume_messages(room_id, self.last_seq.get(room_id, 0))
            await self._emit("reconnected", welcome)
            return

    # ---- frames --------------------------------------------------------------------------------

    async def _dispatch(self, raw: str | bytes) -> None:
        if isinstance(raw, bytes):
            frame = frames.decode_server(raw)
            if frame.op == frames.MESSAGE:
                await self._message(Message(frame.room_id, frame.sender, frame.payload,
                                            frame.reliable, frame.seq or None))  # fmt: skip
            elif frame.op in (frames.SENT, frames.REJECTED):
                future = self._pending.pop(("tag", frame.tag), None)
                if future is not None and not future.done():
                    if frame.op == frames.SENT:
                        future.set_result({"tokenId": frame.token_id})
                    else:
                        future.set_exception(CallError(json.loads(frame.error_json)))
            return
        frame_json = _decode(raw)
        if "method" not in frame_json:
            future = self._pending.pop(frame_json.get("id"), None)
            if future is not None and not future.done():
                if "error" in frame_json:
                    future.set_exception(CallError(frame_json["error"]))
                else:
                    future.set_result(frame_json.get("result"))
            return
        method, params = frame_json["method"], frame_json.get("params") or {}
        if method == "welcome":
            if self._welcomed is not None and not self._welcomed.done():
                self._welcomed.set_result(params)
        elif method == "message":
            data = base64.b64decode(params["messageData"])
            await self._message(Message(params["roomId"], params["senderParticipantId"], data,
                                        params["isReliable"], params.get("seq")))  # fmt: skip
        elif method == "roomStatus":
            mine = self._mine(params)
            await self._emit("invitation" if mine == "PARTICIPANT_INVITED" else "roomStatus",
                             params)  # fmt: skip
        else:
            await self._emit(method, params)

    def _mine(self, room: dict[str, Any]) -> str | None:
        me = self.welcome.get("playerId")
        for p in room.get("participants") or []:
            if (p.get("player") or {}).get("playerId") == me:
                return p.get("status")
        return None

    async def _message(self, message: Message) -> None:
        if message.seq:
            last = self.last_seq.get(message.room_id, 0)
            if message.seq <= last:
                return  # a reliable message already delivered (exactly once, docs/messages.md)
            self.last_seq[message.room_id] = message.seq
        await self._emit("message", message)

    async def _emit(self, event: str, value: Any) -> None:
        """Call the listeners of `event`; one that raises is logged, and the socket is still
        read (a game's bug in one handler must not leave the client deaf)."""
        for fn in self._listeners.get(event, ()):
            try:
                result = fn(value)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("a %s listener raised", event)

    # ---- calls ---------------------------------------------------------------------------------

    async def call(self, method: str, params: dict[str, Any] | None = None, *,
                   within: float | None = None) -> Any:  # fmt: skip
        """One JSON-RPC request; its result, or CallError / Disconnected / TimeoutError (no
        reply `within` seconds, default `call_timeout`)."""
        ws = self._ws
        if ws is None:
            raise Disconnected(None)
        request_id = next(self._ids)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        frame = {"jsonrpc": "2.0", "id": request_id, "method": method, "params": params or {}}
        try:
            await ws.send(_encode(frame).decode())
        except ConnectionClosed:
            self._pending.pop(request_id, None)
            raise Disconnected(self.close_code) from None
        try:
            return await asyncio.wait_for(future, self.call_timeout if within is None else within)
        finally:
            self._pending.pop(request_id, None)  # a timed-out call's late reply is dropped

    def _room(self, method: str, room_id: str | None, body: Any = None) -> Any:
        params: dict[str, Any] = {}
        if room_id is not None:
            params["roomId"] = room_id
        if body is not None:
            params["body"] = body
        return self.call(method, params)

    async def create_room(self, *, invited_player_ids: list[str] | None = None,
                          auto_matching_criteria: dict[str, Any] | None = None,
                          variant: int | None = None,
                          request_id: int | None = None) -> dict[str, Any]:  # fmt: skip
        body: dict[str, Any] = {"kind": "games#roomCreateRequest"}
        if invited_player_ids:
            body["invitedPlayerIds"] = invited_player_ids
        if auto_matching_criteria:
            body["autoMatchingCriteria"] = auto_matching_criteria
        if variant is not None:
            body["variant"] = variant
        body["requestId"] = str(request_id if request_id is not None else random.getrandbits(62))
        return await self._room("rooms.create", None, body)

    async def join_room(self, room_id: str) -> dict[str, Any]:
        return await self._room("rooms.join", room_id, {"kind": "games#roomJoinRequest"})

    async def leave_room(self, room_id: str, reason: str | None = None) -> dict[str, Any]:
        body = {"kind": "games#roomLeaveRequest", **({"reason": reason} if reason else {})}
        return await self._room("rooms.leave", room_id, body)

    async def decline_invitation(self, room_id: str) -> dict[str, Any]:
        return await self._room("rooms.decline", room_id)

    async def dismiss_invitation(self, room_id: str) -> None:
        await self._room("rooms.dismiss", room_id)

    async def list_invitations(self) -> list[dict[str, Any]]:
        result = await self._room("rooms.list", None)
        return result.get("items") or []

    async def get_room(self, room_id: str) -> dict[str, Any]:
        return await self._room("rooms.get", room_id)

    async def report_status(self, room_id: str, updates: list[dict[str, Any]]) -> dict[str, Any]:
        body = {"kind": "games#roomP2PStatuses", "updates": updates}
        return await self._room("rooms.reportStatus", room_id, body)

    # ---- messages ------------------------------------------------------------------------------

    async def send_message(self, room_id: str, data: bytes, *, reliable: bool = True,
                           recipients: list[str] | None = None) -> int:  # fmt: skip
        """Send one message; its tokenId (0: an unreliable message dropped by the rate)."""
        if self.binary:
            return await self._send_frame(room_id, data, reliable, recipients)
        body: dict[str, Any] = {"messageData": base64.b64encode(data).decode(),
                                "reliable": reliable}  # fmt: skip
        if recipients is not None:
            body["recipientParticipantIds"] = recipients
        result = await self._room("rooms.sendMessage", room_id, body)
        return int(result["tokenId"])

    async def _send_frame(self, room_id: str, data: bytes, reliable: bool,
                          recipients: list[str] | None) -> int:  # fmt: skip
        ws = self._ws
        if ws is None:
            raise Disconnected(None)
        tag = next(self._tags) & 0xFFFFFFFF or 1
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[("tag", tag)] = future
        await ws.send(frames.encode_send(frames.SendFrame(reliable, tag, room_id, recipients,
                                                          data)))  # fmt: skip
        return int((await asyncio.wait_for(future, self.call_timeout))["tokenId"])

    async def send_reliable_message(self, room_id: str, participant_id: str, data: bytes) -> int:
        return await self.send_message(room_id, data, reliable=True, recipients=[participant_id])

    async def send_unreliable_message(self, room_id: str, participant_ids: list[str],
                                      data: bytes) -> int:  # fmt: skip
        return await self.send_message(room_id, data, reliable=False, recipients=participant_ids)

    async def send_unreliable_message_to_others(self, room_id: str, data: bytes) -> int:
        return await self.send_message(room_id, data, reliable=False)

    async def signal(self, room_id: str, participant_id: str, data: dict[str, Any]) -> None:
        body = {"recipientParticipantId": participant_id, "data": data}
        await self._room("rooms.signal", room_id, body)

    async def resume_messages(self, room_id: str, after_seq: int) -> dict[str, Any]:
        return await self.call("rooms.resumeMessages", {"roomId": room_id,
                                                        "afterSeq": after_seq})  # fmt: skip

    async def ice_servers(self) -> dict[str, Any]:
        return await self.call("rtc.iceServers")
