"""Malformed input (docs/spec.md §12 item 7): 100,000 fuzzed frames and request bodies, 0 crashes,
only documented errors (docs/spec.md §3 error shapes and codes, docs/spec.md §6 JSON-RPC codes,
docs/spec.md §8
StatusCodes).

The inputs are mutants of valid JSON-RPC frames and REST bodies (tests/fuzzing.py: wrong types,
missing and extra fields, huge numbers, odd unicode, deep nesting, byte flips, truncation,
invalid UTF-8), from a fixed seed: every run sends the same inputs, and a failure prints the
input that caused it.

The split, and why:

- In process, 100,000 inputs through the pure parsers every transport calls:
  55,000 frames through `realtime.protocol.parse`, then, for a frame that parses, the method's
  own body decoding, room id and paging checks (`realtime.methods`); 45,000 bodies, 5,000 for
  each request type of a POST route, through `web.decode_json` and what follows it without
  I/O (`events_wire.periods_of` and `events.plan_record` for events.record; `analytics`
  `decode_request` and `parse_batch` for AddEventBatch and AddEvent). Each input decodes or
  raises a documented error, and that error renders in every language. This is where the count
  comes from: it takes a few seconds, where the same count over sockets would take minutes.
- Over the wire, against the session's real server: 4,000 frames over WebSockets (112
  sockets, four at a time) and 2,500 bodies across the ten POST routes (eight requests at a
  time), with valid tokens so that bodies reach the services and the store. This is what the
  parsers cannot show: every reply, whatever the input, is a documented error shape (never a
  500, never an internal JSON-RPC error), no socket is dropped, the server logs no internal
  error, and it still answers /healthz. A few thousand each keeps this part to seconds on a
  small machine; the in-process count is what covers the input space. The session server
  allows 20 requests per second per socket with bursts of 40 (docs/spec.md §6 limits): each socket
  carries at most 36 frames, so every frame is served rather than rate limited.
"""

from __future__ import annotations

import asyncio
import base64
import json
import random
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import msgspec
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from roomsvc.analytics import rules as analytics
from roomsvc.analytics.wire import AddEventsRequest, AnonymousSessionRequest, EventItem
from roomsvc.common import paging
from roomsvc.common.errors import InvalidArgument, RoomsvcError
from roomsvc.events import rules as events
from roomsvc.events import wire as events_wire
from roomsvc.http.plumbing import decode_json, error_body
from roomsvc.messages import frames as binary_frames
from roomsvc.realtime import methods, protocol
from roomsvc.rooms import wire
from tests.fuzzing import field_names, mutants, shown
from tests.support import UNIT, ServerProcess, auth, token

SEED = 20260712
FRAMES = 55_000
BODIES_PER_TYPE = 5_000
WIRE_FRAMES = 4_000
WIRE_BODIES = 2_500
FRAMES_PER_SOCKET = 36  # under the session server's burst of 40 requests (docs/spec.md §6 limits)
LOCALES = ("en", "es", "hi")
NOW_MS = 1_800_000_000_000

# docs/spec.md §6: the JSON-RPC codes a client may see, and the HTTP-like codes of application
# errors.
RPC_CODES = {-32700, -32600, -32601, -32602, -32001, -32003, -32004, -32009, -32029, -32053}
RPC_DATA_CODES = {400, 401, 403, 404, 409, 413, 415, 429, 503}
# docs/spec.md §3: Google's error codes and canonical statuses (no 500 among them).
REST_CODES = {400, 401, 403, 404, 409, 413, 415, 429, 503}
# docs/spec.md §8: the analytics envelope's StatusCodes for errors (31, a bug, is not among them).
ANALYTICS_CODES = {10, 11, 12, 13, 14, 15, 20, 21, 29, 30}

# ---- seeds: one valid input per shape ------------------------------------------------------

ROOM_ID = "r-0123456789abcdef"
CREATE = {
    "kind": "games#roomCreateRequest",
    "invitedPlayerIds": ["bo", "cy"],
    "autoMatchingCriteria": {
        "minAutoMatchingPlayers": 1,
        "maxAutoMatchingPlayers": 2,
        "exclusiveBitmask": "12",
    },
    "variant": 3,
    "capabilities": ["reliable"],
    "clientAddress": {"xmppAddress": "ana@example.com"},
    "networkDiagnostics": {"androidNetworkType": 1, "registrationLatencyMillis": 20},
    "requestId": "77",
}
JOIN = {
    "capabilities": ["reliable"],
    "clientAddress": {"xmppAddress": "bo@example.com"},
    "networkDiagnostics": {"iosNetworkType": 2, "networkOperatorName": "op"},
}
LEAVE = {
    "reason": "PLAYER_LEFT",
    "leaveDiagnostics": {
        "socketsUsed": True,
        "peerSession": [
            {
                "participantId": "p_1",
                "connectedTimestampMillis": "1700000000000",
                "reliableChannel": {
                    "bytesSent": {"count": "3", "max": 5, "min": "1", "sum": 9},
                    "numMessagesLost": 0,
                },
            }
        ],
    },
}
STATUSES = {
    "updates": [
        {
            "participantId": "p_2",
            "status": "CONNECTION_ESTABLISHED",
            "connectionSetupLatencyMillis": 40,
            "unreliableRoundtripLatencyMillis": 12,
        },
        {
            "participantId": "p_3",
            "status": "CONNECTION_FAILED",
            "error": "P2P_FAILED",
            "error_reason": "timeout",
        },
    ]
}
RECORD = {
    "kind": "games#eventRecordRequest",
    "requestId": "123",
    "currentTimeMillis": str(NOW_MS),
    "timePeriods": [
        {
            "timePeriod": {"periodStartMillis": NOW_MS - 60_000, "periodEndMillis": str(NOW_MS)},
            "updates": [
                {"definitionId": "ev_kills", "updateCount": "2"},
                {"definitionId": "ev_nope", "updateCount": 1},
            ],
        }
    ],
}
ITEM = {
    "Timestamp": "4315435114",
    "Event": "Navigation",
    "Data": [{"screen": "home", "n": 2, "ok": True, "none": None}],
}
MEDIA = base64.b64encode(json.dumps({"device": "phone", "os": "android"}).encode()).decode()
DEEP_MEDIA = base64.b64encode(b"[" * 5000 + b"]" * 5000).decode()


def analytics_seeds(tok: str, *, single: bool) -> list[dict[str, Any]]:
    many = [ITEM, {**ITEM, "Timestamp": 1_700_000_000_000}, {**ITEM, "Data": {"k": "v"}}]
    dated = {**ITEM, "Timestamp": "2024-01-02T03:04:05Z"}
    seeds: list[dict[str, Any]] = [
        {
            "Token": tok,
            "mediaInfo": MEDIA,
            "BatchId": "b-1",
            "eventData": many[: 1 if single else 3],
        },
        {"token": tok, "MediaInfo": DEEP_MEDIA, "EventData": [dated]},
    ]
    if single:
        seeds.append({"Token": tok, **ITEM})
    return seeds


def frame_seeds() -> list[dict[str, Any]]:
    def call(method: str, request_id: Any = 1, **params: Any) -> dict[str, Any]:
        frame: dict[str, Any] = {"jsonrpc": "2.0", "method": method, "params": params}
        if request_id is not None:
            frame["id"] = request_id
        return frame

    return [
        call("rooms.create", 1, body=CREATE, language="es"),
        call("rooms.join", "j", roomId=ROOM_ID, body=JOIN),
        call("rooms.leave", 3, roomId=ROOM_ID, body=LEAVE, language="hi"),
        call("rooms.decline", 4, roomId=ROOM_ID),
        call("rooms.dismiss", None, roomId=ROOM_ID, body={}),
        call("rooms.get", 6, roomId=ROOM_ID),
        call("rooms.list", 7, maxResults=10, pageToken="abc"),
        call("rooms.reportStatus", 8, roomId=ROOM_ID, body=STATUSES),
        call("events.record", 9, body=RECORD),
        call("events.listByPlayer", 10, maxResults="5"),
        call("events.listDefinitions", None, maxResults=100, pageToken=""),
    ]


FRAME_NAMES = [
    *field_names(
        wire.RoomCreateRequest,
        wire.RoomLeaveRequest,
        wire.RoomP2PStatuses,
        events_wire.EventRecordRequest,
        protocol.Params,
    ),
    *("jsonrpc", "method", "id", "params"),
]

# ---- oracles: decode, or raise a documented error that renders -----------------------------


class Undocumented(AssertionError):
    """An input answered with something other than a result or a documented error."""


def rendered_rpc(error: protocol.RpcError, index: int) -> None:
    """The error frame the socket would send, in one of the languages."""
    if error.code not in (protocol.PARSE_ERROR, protocol.INVALID_REQUEST, protocol.INVALID_PARAMS):
        raise Undocumented(f"parse raised JSON-RPC code {error.code}")
    reply = msgspec.json.decode(protocol.rpc_error(error, LOCALES[index % 3]))
    if reply["error"]["code"] != error.code or not reply["error"]["message"]:
        raise Undocumented(f"error frame {reply}")


def rendered_rest(error: RoomsvcError, index: int, statuses: tuple[int, ...] = (400,)) -> None:
    """Google's JSON error the route would send, in one of the languages."""
    if not isinstance(error, InvalidArgument) or error.http_status not in statuses:
        raise Undocumented(f"{type(error).__name__} ({error.http_status})")
    body = msgspec.json.decode(msgspec.json.encode(error_body(error, LOCALES[index % 3])))
    if body["error"]["code"] != error.http_status or not body["error"]["message"]:
        raise Undocumented(f"error body {body}")


METHOD_BODIES: dict[str, type[Any]] = {
    "rooms.create": wire.RoomCreateRequest,
    "rooms.join": wire.RoomJoinRequest,
    "rooms.leave": wire.RoomLeaveRequest,
    "rooms.decline": wire.NoBody,
    "rooms.dismiss": wire.NoBody,
    "rooms.reportStatus": wire.RoomP2PStatuses,
    "events.record": events_wire.EventRecordRequest,
}
ROOM_METHODS = {
    "rooms.join",
    "rooms.leave",
    "rooms.decline",
    "rooms.dismiss",
    "rooms.get",
    "rooms.reportStatus",
}


def check_frame(data: bytes, index: int) -> bool:
    """True: the frame is a call whose params pass; False: a documented error."""
    try:
        call = protocol.parse(data)
    except protocol.RpcError as error:
        rendered_rpc(error, index)
        return False
    msgspec.json.decode(protocol.result(call.id, None))  # the request id always encodes back
    try:
        if call.method in METHOD_BODIES:
            methods.body_of(call.params, METHOD_BODIES[call.method])
        if call.method in ROOM_METHODS:
            methods.room_id_of(call.params)
        paging.page_size(call.params.max_results, high=500, default=100)
        events.decode_page_token("byPlayer", call.params.page_token)
    except InvalidArgument as error:
        rendered_rest(error, index)
        return False
    return True


def check_body(typ: type[Any]) -> Callable[[bytes, int], bool]:
    def check(data: bytes, index: int) -> bool:
        try:
            decode_json(data, typ)
        except InvalidArgument as error:
            rendered_rest(error, index)
            return False
        return True

    return check


def check_record(data: bytes, index: int) -> bool:
    try:
        request = decode_json(data, events_wire.EventRecordRequest)
        periods = events_wire.periods_of(request)
    except InvalidArgument as error:
        rendered_rest(error, index)
        return False
    plan = events.plan_record(periods, {"ev_kills"}, NOW_MS, 200)
    msgspec.json.encode([events_wire.batch_failure_out(f) for f in plan.batch_failures])
    msgspec.json.encode([events_wire.update_failure_out(f) for f in plan.update_failures])
    return True


def check_analytics(single: bool) -> Callable[[bytes, int], bool]:
    def check(data: bytes, index: int) -> bool:
        try:
            request = analytics.decode_request(data)
            batch = analytics.parse_batch(request, data, single=single, max_items=1000)
        except RoomsvcError as error:
            if analytics.status_code_of(error) not in ANALYTICS_CODES:
                raise Undocumented(f"{type(error).__name__}: StatusCode 31") from error
            rendered_rest(error, index, (400, 413))
            return False
        analytics.records(batch, analytics.Source("app-1", player_id="p1"), NOW_MS)
        return True

    return check


def run(check: Callable[[bytes, int], bool], inputs: list[tuple[int, bytes]]) -> None:
    """Every input through `check`; fail listing the inputs that crashed it or got an
    undocumented error. Both outcomes must occur, or the fuzzer tests nothing."""
    failures: list[str] = []
    accepted = 0
    for index, data in inputs:
        try:
            accepted += check(data, index)
        except Exception as exc:  # the point: any other exception is a finding
            failures.append(f"#{index} {type(exc).__name__}: {exc}\n    input: {shown(data)}")
    assert not failures, f"{len(failures)} of {len(inputs)} inputs failed:\n" + "\n".join(
        failures[:15]
    )
    assert len(inputs) // 20 < accepted < len(inputs) - len(inputs) // 20, accepted


def test_fuzzed_frames_parse_or_get_a_documented_error() -> None:
    """55,000 mutated frames: each is a call whose params pass the method's checks, or a
    documented JSON-RPC error (-32700, -32600, -32602, or a 400 from the params)."""
    run(check_frame, mutants(SEED, frame_seeds(), FRAME_NAMES, FRAMES))


TOKEN = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
BODY_TARGETS: dict[str, tuple[list[Any], tuple[type[Any], ...], Callable[[bytes, int], bool]]] = {
    "rooms.create": (
        [CREATE, {"invitedPlayerIds": ["x"]}],
        (wire.RoomCreateRequest,),
        check_body(wire.RoomCreateRequest),
    ),
    "rooms.join": ([JOIN, {}], (wire.RoomJoinRequest,), check_body(wire.RoomJoinRequest)),
    "rooms.leave": ([LEAVE], (wire.RoomLeaveRequest,), check_body(wire.RoomLeaveRequest)),
    "rooms.decline": ([{}, {"kind": "x"}], (wire.NoBody,), check_body(wire.NoBody)),
    "rooms.reportStatus": ([STATUSES], (wire.RoomP2PStatuses,), check_body(wire.RoomP2PStatuses)),
    "events.record": ([RECORD], (events_wire.EventRecordRequest,), check_record),
    "AddEventBatch": (
        analytics_seeds(TOKEN, single=False),
        (AddEventsRequest, EventItem),
        check_analytics(single=False),
    ),
    "AddEvent": (
        analytics_seeds(TOKEN, single=True),
        (AddEventsRequest, EventItem),
        check_analytics(single=True),
    ),
    "AnonymousSession": (
        [{"ApplicationId": "app-1"}, {"applicationId": "app-2"}],
        (AnonymousSessionRequest,),
        check_body(AnonymousSessionRequest),
    ),
}


@pytest.mark.parametrize("target", sorted(BODY_TARGETS))
def test_fuzzed_bodies_decode_or_get_a_documented_error(target: str) -> None:
    """5,000 mutated bodies per request type: each decodes, or is a documented 400 (413 for
    too many analytics items) whose Google JSON error renders in every language."""
    seeds, types, check = BODY_TARGETS[target]
    seed = SEED + sorted(BODY_TARGETS).index(target)
    run(check, mutants(seed, seeds, field_names(*types), BODIES_PER_TYPE))


# ---- over the wire -------------------------------------------------------------------------


def expected_replies(frame: str | bytes) -> int:
    """How many replies a frame gets: none for a valid notification, else one (docs/spec.md §6)."""
    if isinstance(frame, bytes):
        return 1  # binary frames are answered -32600
    try:
        return 0 if protocol.parse(frame).notification else 1
    except Exception:  # an error, documented or not: the server must still answer it
        return 1


def wire_frames() -> Iterator[str | bytes]:
    """Mutated frames as a client can send them: valid UTF-8 as text, the rest as binary;
    each under the 64 KiB frame limit (a bigger one closes the socket with 1009,
    docs/spec.md §6)."""
    for _, data in mutants(SEED + 100, frame_seeds(), FRAME_NAMES, WIRE_FRAMES * 2):
        if len(data) > 60_000:
            continue
        try:
            yield data.decode()
        except UnicodeDecodeError:
            yield data


def check_rpc_reply(message: dict[str, Any]) -> str:
    """The reply's outcome, "result" or its JSON-RPC error code, if documented (docs/spec.md §6)."""
    if message.get("jsonrpc") != "2.0" or ("result" in message) == ("error" in message):
        raise Undocumented(f"not a JSON-RPC reply: {message}")
    if "error" in message:
        error = message["error"]
        code, data = error.get("code"), error.get("data") or {}
        if code not in RPC_CODES or not error.get("message"):
            raise Undocumented(f"error code {code}: {error}")
        if code not in (-32700, -32600, -32601, -32602) and data.get("code") not in RPC_DATA_CODES:
            raise Undocumented(f"application error {error}")
        return str(code)
    return "result"


async def fuzz_socket(
    server: ServerProcess, app: str, player: str, frames: list[str | bytes], seen: Counter[str]
) -> list[str]:
    """Send `frames` on one new socket and check every reply (counted in `seen`); the
    problems found."""
    url = f"{server.base_url.replace('http://', 'ws://')}/games/v1/realtime"
    due = sum(expected_replies(frame) for frame in frames)
    sent = [shown(f if isinstance(f, bytes) else f.encode(), 200) for f in frames]
    problems: list[str] = []
    async with connect(
        url, additional_headers=auth(player, app), compression=None, max_size=None
    ) as ws:
        welcome = json.loads(await ws.recv())
        assert welcome["method"] == "welcome", welcome
        for frame in frames:
            await ws.send(frame)
        try:
            while due:
                raw = await asyncio.wait_for(ws.recv(), 100 * UNIT)
                if isinstance(raw, bytes):  # a binary frame is a SEND: REJECTED is its error
                    rejected = binary_frames.decode_server(raw)
                    assert rejected.op == binary_frames.REJECTED, rejected
                    message = {
                        "jsonrpc": "2.0",
                        "id": None,
                        "error": json.loads(rejected.error_json),
                    }
                else:
                    message = json.loads(raw)
                if "method" in message:
                    continue  # a push (roomStatus) of a room a fuzzed call touched
                due -= 1
                try:
                    seen[check_rpc_reply(message)] += 1
                except Undocumented as exc:
                    problems.append(f"{exc}\n    frames: {sent}")
        except (ConnectionClosed, TimeoutError) as exc:
            problems.append(f"socket lost with {due} replies due: {exc!r}\n    frames: {sent}")
    return problems


def new_log(server: ServerProcess, since: int) -> str:
    return server.output()[since:]


async def test_fuzzed_frames_over_websockets_get_documented_errors(
    server: ServerProcess, app_id: str
) -> None:
    """4,000 mutated frames over real sockets, 36 per socket: every reply a result or a
    documented JSON-RPC error, no socket lost, no internal error logged."""
    since = len(server.output())
    frames = list(wire_frames())[:WIRE_FRAMES]
    chunks = [frames[i : i + FRAMES_PER_SOCKET] for i in range(0, len(frames), FRAMES_PER_SOCKET)]
    problems: list[str] = []
    seen: Counter[str] = Counter()

    async def worker(lane: int) -> None:
        for number in range(lane, len(chunks), 4):
            player = f"fz{number}"
            problems.extend(await fuzz_socket(server, app_id, player, chunks[number], seen))

    await asyncio.gather(*(worker(lane) for lane in range(4)))
    assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:10])
    assert len(frames) == WIRE_FRAMES
    # The inputs reach the services: some calls succeed, some fail past the parser.
    assert seen["result"] and seen["-32602"] and seen["-32700"] and seen["-32004"], seen
    log = new_log(server, since)
    assert "internal error" not in log and "Traceback" not in log, log[-4000:]
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        assert (await http.get("/healthz")).status_code == 200


CONTENT_TYPES = ("application/json",) * 12 + (
    "application/json; charset=UTF-8",
    "text/plain",
    "application/x-www-form-urlencoded",
    "application/merge-patch+json",
    "",
)


def rest_targets(app: str, room_id: str) -> list[tuple[str, list[Any], tuple[type[Any], ...]]]:
    tok = token("fzguest", app)
    rooms = f"/games/v1/rooms/{room_id}"
    return [
        (
            "/games/v1/rooms/create",
            [CREATE, {"invitedPlayerIds": ["fzhost"]}],
            (wire.RoomCreateRequest,),
        ),
        (f"{rooms}/join", [JOIN, {}], (wire.RoomJoinRequest,)),
        (f"{rooms}/leave", [LEAVE], (wire.RoomLeaveRequest,)),
        (f"{rooms}/decline", [{}], (wire.NoBody,)),
        (f"{rooms}/dismiss", [{}], (wire.NoBody,)),
        (f"{rooms}/reportstatus", [STATUSES], (wire.RoomP2PStatuses,)),
        ("/games/v1/events", [RECORD], (events_wire.EventRecordRequest,)),
        (
            "/analytics/v1/AddEventBatch",
            analytics_seeds(tok, single=False),
            (AddEventsRequest, EventItem),
        ),
        (
            "/analytics/v1/AddEvent",
            analytics_seeds(tok, single=True),
            (AddEventsRequest, EventItem),
        ),
        ("/analytics/v1/AnonymousSession", [{"ApplicationId": app}], (AnonymousSessionRequest,)),
    ]


def check_rest_reply(path: str, reply: httpx.Response) -> int:
    """A documented answer: success, Google's JSON error (docs/spec.md §3), or the analytics
    envelope with a documented StatusCode (docs/spec.md §8)."""
    status = reply.status_code
    if path.startswith("/analytics/"):
        envelope = reply.json()
        code = envelope["StatusCode"]
        ok = (status == 200 and code == 0) or (status in REST_CODES and code in ANALYTICS_CODES)
        if not ok or not envelope["StatusMessage"]:
            raise Undocumented(f"{status} {envelope}")
        return status
    if status in (200, 204):
        return status
    error = reply.json()["error"]
    if status not in REST_CODES or error["code"] != status or not error["message"]:
        raise Undocumented(f"{status} {error}")
    if error["errors"][0]["domain"] != "global" or not error["errors"][0]["reason"]:
        raise Undocumented(f"{status} {error}")
    return status


async def test_fuzzed_bodies_over_http_get_documented_errors(
    server: ServerProcess, app_id: str
) -> None:
    """2,500 mutated bodies across every POST route, with valid tokens and mostly JSON content
    types (some not, some over the size limit): every answer a success or a documented error
    shape, never a 500; the server logs no internal error and still answers /healthz."""
    since = len(server.output())
    rng = random.Random(SEED + 200)
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        created = await http.post(
            "/games/v1/rooms/create",
            headers=auth("fzhost", app_id),
            json={"invitedPlayerIds": ["fzguest"]},
        )
        assert created.status_code == 200, created.text
        targets = rest_targets(app_id, created.json()["roomId"])
        share = WIRE_BODIES // len(targets)
        jobs: list[tuple[str, bytes, str]] = []
        for number, (path, seeds, types) in enumerate(targets):
            for _, data in mutants(SEED + 300 + number, seeds, field_names(*types), share):
                jobs.append((path, data, rng.choice(CONTENT_TYPES)))
        for number in range(0, len(jobs), 400):  # a few bodies over the 1 MiB limit: 413
            path, data, _ = jobs[number]
            jobs[number] = (path, data + b" " * (1 << 20), "application/json")
        rng.shuffle(jobs)
        problems: list[str] = []
        seen: Counter[int] = Counter()
        headers = auth("fzguest", app_id)

        async def worker(lane: int) -> None:
            for path, data, content_type in jobs[lane::8]:
                sent = {**headers, "Content-Type": content_type} if content_type else headers
                reply = await http.post(path, content=data, headers=sent)
                try:
                    seen[check_rest_reply(path, reply)] += 1
                except (Undocumented, ValueError, KeyError, IndexError, TypeError) as exc:
                    problems.append(
                        f"POST {path} ({content_type}): {exc!r}\n    body: {shown(data)}\n"
                        f"    reply: {reply.text[:300]}"
                    )

        await asyncio.gather(*(worker(lane) for lane in range(8)))
        assert not problems, f"{len(problems)} problems:\n" + "\n".join(problems[:10])
        assert len(jobs) == WIRE_BODIES
        assert seen[200] and seen[400] and seen[413] and seen[415], seen
        assert (await http.get("/healthz")).status_code == 200
    log = new_log(server, since)
    assert "internal error" not in log and "Traceback" not in log, log[-4000:]
