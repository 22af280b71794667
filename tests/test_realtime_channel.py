"""The realtime channel on a real server (docs/spec.md §6): handshake, welcome, JSON-RPC, limits.

Real `roomsvc serve` processes, real valkey; durations are multiples of UNIT and nothing asserts
a timing. What a game sees (a welcome in its language, room calls, events calls) goes through
`roomsvc.client`; the wire itself (frame shapes, malformed frames, JSON-RPC error objects, close
codes, handshakes) through raw `websockets` connections.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from roomsvc.client import RoomsvcClient
from roomsvc.messages import frames
from tests.raw_socket import Feed, open_feed, ws_url
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, eventually, token

ORIGIN = "https://game.example"
RATE = 200


@pytest.fixture(scope="module")
def rt_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    env = {
        "ROOMSVC_ALLOWED_ORIGINS": ORIGIN,
        "ROOMSVC_WS_MAX_CONNECTIONS_PER_PLAYER": "2",
        "ROOMSVC_WS_RATE_PER_SECOND": str(RATE),
    }
    process = ServerProcess(valkey.url, env=env).start()
    yield process
    process.stop()


@pytest.fixture
async def rest(rt_server: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=rt_server.base_url, timeout=30) as client:
        yield client


async def create_room(rest: httpx.AsyncClient, app: str, creator: str, *invited: str) -> dict:
    body = {"invitedPlayerIds": list(invited)}
    reply = await rest.post("/games/v1/rooms/create", json=body, headers=auth(creator, app))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def rest_get(rest: httpx.AsyncClient, app: str, player: str, room_id: str) -> dict:
    reply = await rest.get(f"/games/v1/rooms/{room_id}", headers=auth(player, app))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def test_welcome_lists_joined_rooms_and_pending_invitations(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """welcome: player, app, clock, rooms and invitations exactly as REST shows them."""
    joined = await create_room(rest, app_id, "ana", "bo")
    invited = await create_room(rest, app_id, "cy", "ana")
    left = await create_room(rest, app_id, "ana", "dee")
    await rest.post(f"/games/v1/rooms/{left['roomId']}/leave", json={}, headers=auth("ana", app_id))
    feed = await open_feed(rt_server, "ana", app_id)
    welcome = feed.messages[0]
    assert welcome["jsonrpc"] == "2.0" and welcome["method"] == "welcome" and "id" not in welcome
    params = welcome["params"]
    assert params["playerId"] == "ana" and params["applicationId"] == app_id
    assert int(params["serverTimeMillis"]) > 0
    assert params["rooms"] == [await rest_get(rest, app_id, "ana", joined["roomId"])]
    assert params["invitations"] == [await rest_get(rest, app_id, "ana", invited["roomId"])]
    await feed.ws.close()


async def test_welcome_is_in_the_requested_language(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """language on the handshake picks the words of every room the socket carries."""
    room = await create_room(rest, app_id, "ana", "bo")
    client = RoomsvcClient(rt_server.base_url, token("bo", app_id), language="es")
    invitation = (await client.connect())["invitations"][0]
    reply = await rest.get(
        f"/games/v1/rooms/{room['roomId']}?language=es", headers=auth("bo", app_id)
    )
    assert invitation == reply.json()
    assert (
        invitation["description"]
        != (await rest_get(rest, app_id, "bo", room["roomId"]))["description"]
    )
    await client.close()


async def test_jsonrpc_rooms_methods_equal_rest(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """rooms.create/join/get/list/reportStatus/leave over the socket answer exactly as REST."""
    ana = await open_feed(rt_server, "ana", app_id)
    bo = await open_feed(rt_server, "bo", app_id)
    created = await ana.call("rooms.create", 1, body={"invitedPlayerIds": ["bo"]})
    room = created["result"]
    assert created["jsonrpc"] == "2.0"
    assert room == await rest_get(rest, app_id, "ana", room["roomId"])
    listed = (await bo.call("rooms.list", "l", maxResults=10))["result"]
    rest_list = await rest.get("/games/v1/rooms?maxResults=10", headers=auth("bo", app_id))
    assert listed == rest_list.json()
    joined = (await bo.call("rooms.join", 2, roomId=room["roomId"], body={}))["result"]
    assert joined == await rest_get(rest, app_id, "bo", room["roomId"])
    got = (await ana.call("rooms.get", 3, roomId=room["roomId"]))["result"]
    assert got == await rest_get(rest, app_id, "ana", room["roomId"])
    bo_pid = next(p["id"] for p in got["participants"] if p["player"]["playerId"] == "bo")
    update = {"updates": [{"participantId": bo_pid, "status": "CONNECTION_ESTABLISHED"}]}
    status = await ana.call("rooms.reportStatus", 4, roomId=room["roomId"], body=update)
    assert status["result"]["kind"] == "games#roomStatus"
    assert status["result"]["statusVersion"] == got["roomStatusVersion"] + 1
    left = await bo.call("rooms.leave", 5, roomId=room["roomId"], body={"reason": "PLAYER_LEFT"})
    assert left["result"] == await rest_get(rest, app_id, "bo", room["roomId"])
    for feed in (ana, bo):
        await feed.ws.close()


async def test_jsonrpc_application_errors_carry_http_code_and_reason(
    rt_server: ServerProcess, app_id: str
) -> None:
    """A 404 or 409 over the socket is a JSON-RPC error with code/status/reason in data."""
    feed = await open_feed(rt_server, "ana", app_id, language="es")
    missing = (await feed.call("rooms.get", 1, roomId="nope"))["error"]
    assert missing["code"] == -32004
    assert missing["data"] == {"code": 404, "status": "NOT_FOUND", "reason": "notFound"}
    assert "nope" in missing["message"] and "No se encontró" in missing["message"]
    room = (await feed.call("rooms.create", 2, body={"invitedPlayerIds": ["bo"]}))["result"]
    twice = (await feed.call("rooms.join", 3, roomId=room["roomId"]))["error"]
    assert twice["data"]["code"] == 409 and twice["data"]["reason"] == "conflict"
    bad = (await feed.call("rooms.create", 4, body={"invitedPlayerIds": "bo"}))["error"]
    assert bad["code"] == -32602 and bad["data"]["code"] == 400
    assert "invitedPlayerIds" in bad["message"]
    no_room = (await feed.call("rooms.join", 5))["error"]
    assert no_room["code"] == -32602 and "roomId" in no_room["message"]
    too_many = (await feed.call("rooms.list", 6, maxResults=501))["error"]
    assert too_many["code"] == -32602 and "maxResults" in too_many["message"]
    await feed.ws.close()


async def test_events_methods_are_callable_over_the_socket(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """events.listDefinitions and events.listByPlayer answer as their REST twins."""
    client = RoomsvcClient(rt_server.base_url, token("ana", app_id))
    await client.connect()
    for method, path in (
        ("events.listDefinitions", "/games/v1/eventDefinitions"),
        ("events.listByPlayer", "/games/v1/events"),
    ):
        result = await client.call(method)
        assert result == (await rest.get(path, headers=auth("ana", app_id))).json()
    await client.close()


async def test_bad_frames_get_errors_and_the_connection_lives(
    rt_server: ServerProcess, app_id: str
) -> None:
    """Not JSON, not a request, unknown method, bad params, binary: each an error, then more."""
    feed = await open_feed(rt_server, "ana", app_id)
    cases = [
        ("{oops", -32700, None),
        ("[1, 2]", -32600, None),
        ('{"jsonrpc": "1.0", "id": 7, "method": "rooms.get"}', -32600, 7),
        ('{"jsonrpc": "2.0", "id": 8, "method": "rooms.fly"}', -32601, 8),
        ('{"jsonrpc": "2.0", "id": 9, "method": "rooms.get", "params": [1]}', -32602, 9),
        (
            '{"jsonrpc": "2.0", "id": 10, "method": "rooms.get", "params": {"roomId": 5}}',
            -32602,
            10,
        ),
    ]
    for frame, code, request_id in cases:
        count = len(feed.messages)
        await feed.ws.send(frame)
        reply = await feed.next_after(count)
        assert reply["error"]["code"] == code, frame
        assert reply["id"] == request_id
        assert reply["error"]["message"] and reply["error"]["data"]["code"] == 400
    count = len(feed.messages)
    await feed.ws.send(b"\x00binary")  # binary frames are SEND frames: this is a bad one
    rejected = (await feed.next_after(count))["binary"]
    assert rejected.op == frames.REJECTED and rejected.tag == 0
    error = json.loads(rejected.error_json)
    assert error["data"]["reason"] == "badFrame" and "binary frame" in error["message"]
    assert (await feed.call("rooms.list", "still-alive"))["result"]["kind"] == "games#roomList"
    await feed.ws.close()


async def test_oversize_frame_closes_with_1009(rt_server: ServerProcess, app_id: str) -> None:
    """A frame over 64 KiB closes the socket with 1009."""
    feed = await open_feed(rt_server, "ana", app_id)
    await feed.ws.send("x" * (64 * 1024 + 1))
    closed = await feed.wait_closed()
    assert closed.code == 1009


async def test_foreign_origin_is_refused_before_accept(
    rt_server: ServerProcess, app_id: str
) -> None:
    """A browser Origin not in ROOMSVC_ALLOWED_ORIGINS gets a 403; a listed one or none connects."""
    url = ws_url(rt_server, "ana", app_id)
    for origin in ("https://evil.example", "null", "http://game.example"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, origin=origin, compression=None)  # type: ignore[arg-type]
        assert refused.value.response.status_code == 403
        assert json.loads(refused.value.response.body)["error"]["code"] == 403
    for origin in (ORIGIN, None):
        ws = await connect(url, origin=origin, compression=None)  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["method"] == "welcome"
        await ws.close()


async def test_bad_token_is_refused_and_never_logged(rt_server: ServerProcess, app_id: str) -> None:
    """No token or a bad one: 401 at the handshake; query-string tokens never reach the log."""
    base = f"{rt_server.base_url.replace('http://', 'ws://')}/games/v1/realtime"
    for url in (base, base + "?access_token=not-a-jwt"):
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, compression=None)
        assert refused.value.response.status_code == 401
    secret = token("ana", app_id)
    ws = await connect(f"{base}?oauth_token={secret}&language=hi", compression=None)
    assert json.loads(await ws.recv())["method"] == "welcome"
    await ws.close()
    header_ws = await connect(
        base, additional_headers={"Authorization": f"Bearer {secret}"}, compression=None
    )
    assert json.loads(await header_ws.recv())["method"] == "welcome"
    await header_ws.close()
    assert secret not in rt_server.output() and "not-a-jwt" not in rt_server.output()


async def test_connection_limit_per_player_replaces_the_oldest(
    rt_server: ServerProcess, app_id: str
) -> None:
    """Over ROOMSVC_WS_MAX_CONNECTIONS_PER_PLAYER, the player's oldest socket closes with 1008."""
    first = await open_feed(rt_server, "ana", app_id)
    second = await open_feed(rt_server, "ana", app_id)
    third = await open_feed(rt_server, "ana", app_id)
    closed = await first.wait_closed()
    assert closed.code == 1008
    assert (await third.call("rooms.list", 1))["result"]["kind"] == "games#roomList"
    assert second.closed is None
    for feed in (second, third):
        await feed.ws.close()


async def test_request_rate_is_limited_then_abusers_are_closed(
    rt_server: ServerProcess, app_id: str
) -> None:
    """Requests beyond the rate get a 429-like error; a client that keeps going gets 1008."""
    feed = await open_feed(rt_server, "ana", app_id)
    for n in range(8 * RATE):
        try:
            await feed.ws.send(json.dumps({"jsonrpc": "2.0", "id": n, "method": "rooms.fly"}))
        except ConnectionClosed:
            break
    closed = await feed.wait_closed()
    assert closed.code == 1008
    limited = [m["error"] for m in feed.messages if m.get("error", {}).get("code") == -32029]
    assert limited and limited[0]["data"]["code"] == 429 and limited[0]["data"]["retryAfter"] >= 1
    assert any(m.get("error", {}).get("code") == -32601 for m in feed.messages)


DOCUMENTED_CODES = {-32700, -32600, -32601, -32602, -32003, -32004, -32009, -32029, -32053}


def test_fuzzed_frames_never_crash_and_get_documented_errors(
    rt_server: ServerProcess, app_id: str
) -> None:
    """Hundreds of fuzzed frames on one socket: each answered with a result or a documented
    error (never an internal one), and the socket stays open throughout."""
    from hypothesis import HealthCheck, given, settings
    from websockets.sync.client import connect as sync_connect

    from tests.test_realtime_units import frames

    with sync_connect(ws_url(rt_server, "fuzz", app_id), compression=None) as ws:
        assert json.loads(ws.recv(timeout=10))["method"] == "welcome"
        counter = iter(range(1_000_000))

        @settings(max_examples=300, deadline=None, database=None,
                  suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
        @given(frames)
        def exchange(frame: str) -> None:
            sync_id = f"sync-{next(counter)}"
            ws.send(frame)
            ws.send(json.dumps({"jsonrpc": "2.0", "id": sync_id, "method": "rooms.list"}))
            while True:
                message = json.loads(ws.recv(timeout=10))
                assert message["jsonrpc"] == "2.0"
                if message.get("method") == "roomStatus":
                    continue
                assert ("result" in message) != ("error" in message), message
                if "error" in message:
                    error = message["error"]
                    assert error["code"] in DOCUMENTED_CODES, message
                    assert isinstance(error["message"], str) and error["message"]
                    assert error["data"]["code"] in (400, 403, 404, 409, 429, 503)
                if message.get("id") == sync_id:
                    return

        exchange()


async def test_jsonrpc_decline_and_dismiss_equal_rest(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """rooms.decline answers the Room as REST does; rooms.dismiss answers null and hides it."""
    declined = await create_room(rest, app_id, "ana", "bo", "cy")
    dismissed = await create_room(rest, app_id, "ana", "bo")
    bo = RoomsvcClient(rt_server.base_url, token("bo", app_id))
    await bo.connect()
    room = await bo.decline_invitation(declined["roomId"])
    assert room == await rest_get(rest, app_id, "bo", declined["roomId"])
    # an error reply raises CallError: reaching the assert means a result, and it is null
    assert await bo.call("rooms.dismiss", {"roomId": dismissed["roomId"]}) is None
    listed = await bo.list_invitations()
    assert dismissed["roomId"] not in [room["roomId"] for room in listed]
    await bo.close()


async def test_socket_closes_with_1008_when_its_token_expires(
    rt_server: ServerProcess, app_id: str
) -> None:
    """A socket lives as long as the token that opened it: at its `exp` (plus the verifier's
    leeway) the server closes it with 1008 and a reason naming the expired token."""
    url = f"{rt_server.base_url.replace('http://', 'ws://')}/games/v1/realtime"
    short = {"Authorization": f"Bearer {token('ana', app_id, ttl=1)}"}
    ws = await connect(url, additional_headers=short, compression=None)
    feed = Feed(ws)
    await feed.until(lambda m: m.get("method") == "welcome")
    assert (await feed.call("rooms.list", "before"))["result"]["kind"] == "games#roomList"
    closed = await feed.wait_closed(within=300 * UNIT)
    assert closed.code == 1008
    rcvd = ws.protocol.close_rcvd
    assert rcvd is not None and "token expired" in rcvd.reason


async def test_the_python_client_reads_on_after_a_listener_raises(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """A game's listener that raises on one push does not leave the client deaf: the next
    push still arrives (docs/clients.md "Python")."""
    client = RoomsvcClient(rt_server.base_url, token("bo", app_id))
    seen: list[str] = []

    def listener(room: dict[str, Any]) -> None:
        seen.append(room["roomId"])
        if len(seen) == 1:
            raise RuntimeError("a bug in the game's first handler")

    client.on("invitation", listener)
    await client.connect()
    first = await create_room(rest, app_id, "ana", "bo")
    second = await create_room(rest, app_id, "cy", "bo")
    await eventually(lambda: _true(second["roomId"] in seen), "the second invitation heard")
    assert seen[0] == first["roomId"]
    await client.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_socket_links_to_the_server_as_rest_does(
    rest: httpx.AsyncClient, rt_server: ServerProcess, app_id: str
) -> None:
    """Links in a room (an auto-matched stranger's avatar) name the server's HTTP address as
    the socket reached it, exactly as REST's view of the same room does."""
    body = {"autoMatchingCriteria": {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 1}}
    created = []
    for player in ("ana", "bo"):
        reply = await rest.post("/games/v1/rooms/create", json=body, headers=auth(player, app_id))
        assert reply.status_code == 200, reply.text
        created.append(reply.json()["roomId"])

    async def matched() -> dict | None:  # ana's room, or the one it was merged into
        room = await rest_get(rest, app_id, "ana", created[0])
        if room.get("mergedIntoRoomId"):
            room = await rest_get(rest, app_id, "ana", room["mergedIntoRoomId"])
        return room if len(room["participants"]) == 2 else None

    room = await eventually(matched, "the two players matched")
    feed = await open_feed(rt_server, "ana", app_id)
    shown = feed.messages[0]["params"]["rooms"]
    assert shown == [await rest_get(rest, app_id, "ana", room["roomId"])]
    (stranger,) = [p for p in shown[0]["participants"] if p.get("autoMatched")]
    avatar = stranger["autoMatchedPlayer"]["avatarImageUrl"]
    assert avatar.startswith(f"{rt_server.base_url}/games/v1/avatars/anonymous/"), avatar
    await feed.ws.close()
