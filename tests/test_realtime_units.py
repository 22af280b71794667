"""The realtime channel's parts without a server: the JSON-RPC parser (pure, property-based),
the Origin rule, the coalescing push queue, the order of pushes and replies on one connection,
and presence deadlines on a real valkey with time passed as an argument (docs/spec.md §6)."""

from __future__ import annotations

import asyncio
import itertools
import json
import types
from collections.abc import Iterator
from typing import Any

import msgspec
import pytest
import redis.asyncio as aioredis
from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.auth.tokens import SCOPE_GAMES, Principal
from roomsvc.common.call_guard import CallGuard
from roomsvc.common.errors import NotFound
from roomsvc.matching.pools import PoolStore
from roomsvc.realtime import protocol
from roomsvc.realtime.bridge import Bridge, PubSubLink
from roomsvc.realtime.connection import Connection, PeerTransport
from roomsvc.realtime.endpoint import origin_allowed, take_query
from roomsvc.realtime.hub import Hub
from roomsvc.realtime.messaging import Messaging
from roomsvc.realtime.methods import METHODS
from roomsvc.realtime.presence import Presence
from roomsvc.realtime.pushes import Pushes
from roomsvc.realtime.shown import Show, Shown
from roomsvc.realtime.views import Views
from roomsvc.rooms import rules as rooms
from roomsvc.rooms import wire
from roomsvc.rooms.rules import Limits, RoomDoc
from roomsvc.rooms.service import RoomsService
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import ViewContext
from roomsvc.settings import Settings
from roomsvc.store import keys
from roomsvc.store.keys import presence_member, presence_shard_of
from tests.support import ValkeyProcess, eventually, new_app_id

PROTOCOL_CODES = {-32700, -32600, -32601, -32602}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=10,
)
requests = st.fixed_dictionaries(
    {
        "jsonrpc": st.just("2.0") | json_values,
        "method": st.sampled_from(sorted(METHODS)) | json_values,
    },
    optional={
        "id": json_values,
        "params": json_values
        | st.fixed_dictionaries(
            {},
            optional={
                "roomId": json_values,
                "body": json_values,
                "maxResults": json_values,
                "pageToken": json_values,
                "language": json_values,
            },
        ),
    },
)
frames = st.one_of(st.text(max_size=80), json_values.map(json.dumps), requests.map(json.dumps))


@settings(max_examples=300, deadline=None)
@given(frames)
def test_parser_accepts_or_names_a_documented_error(frame: str) -> None:
    """Every frame is a Call or an RpcError with a protocol code; nothing else escapes."""
    try:
        call = protocol.parse(frame)
    except protocol.RpcError as error:
        assert error.code in PROTOCOL_CODES
        reply = json.loads(protocol.rpc_error(error, "es"))
        assert reply["jsonrpc"] == "2.0" and reply["error"]["message"]
        assert reply["id"] is None or type(reply["id"]) in (int, str)
        return
    decoded = json.loads(frame)
    assert decoded["jsonrpc"] == "2.0" and call.method == decoded["method"]
    assert call.notification == ("id" not in decoded)


def test_parser_keeps_the_request_id_on_params_errors() -> None:
    """An error found after the id was read answers that id."""
    with pytest.raises(protocol.RpcError) as error:
        protocol.parse('{"jsonrpc": "2.0", "id": "a", "method": "rooms.get", "params": 3}')
    assert error.value.code == protocol.INVALID_PARAMS and error.value.request_id == "a"


def test_ids_that_are_not_string_integer_or_null_are_invalid_requests() -> None:
    """true, 1.5, objects and arrays are not JSON-RPC ids."""
    for raw in ("true", "1.5", "{}", "[]"):
        with pytest.raises(protocol.RpcError) as error:
            protocol.parse(f'{{"jsonrpc": "2.0", "id": {raw}, "method": "rooms.get"}}')
        assert error.value.code == protocol.INVALID_REQUEST


def test_application_errors_carry_http_code_status_and_reason() -> None:
    """NotFound becomes code -32004 with data {404, NOT_FOUND, notFound}, message localized."""
    frame = json.loads(protocol.app_error(7, NotFound(), "es"))
    assert frame["id"] == 7 and frame["error"]["code"] == -32004
    assert frame["error"]["data"] == {"code": 404, "status": "NOT_FOUND", "reason": "notFound"}


def test_results_and_notifications_are_jsonrpc_frames() -> None:
    """A result wraps the REST value; a notification splices pre-encoded params."""
    room = wire.Room(room_id="r1", room_status_version=3)
    assert json.loads(protocol.result("x", room)) == {
        "jsonrpc": "2.0",
        "id": "x",
        "result": json.loads(msgspec.json.encode(room)),
    }
    note = json.loads(protocol.notification("roomStatus", msgspec.json.encode(room)))
    assert note["method"] == "roomStatus" and note["params"]["roomStatusVersion"] == 3
    assert "id" not in note


@pytest.mark.parametrize(
    ("origin", "allowed", "expected"),
    [
        (None, (), True),
        ("https://a.example", (), False),
        ("https://a.example", ("https://a.example",), True),
        ("https://A.example/", ("https://a.example",), True),
        ("http://a.example", ("https://a.example",), False),
        ("null", ("https://a.example",), False),
        ("https://b.example", ("*",), True),
    ],
)
def test_origin_rule(origin: str | None, allowed: tuple[str, ...], expected: bool) -> None:
    """No Origin is a native client; a browser Origin must be listed (or `*`)."""
    assert origin_allowed(origin, allowed) is expected


def test_tokens_are_stripped_from_the_logged_query() -> None:
    """access_token and oauth_token leave the scope's query string; other parameters stay.
    The parameters are read all the same, the last of a repeated name winning."""
    raw = b"access_token=s3cret&language=es&oauth_token=x&language=hi&messageFormat="
    scope: dict[str, Any] = {"query_string": raw}
    query = take_query(scope)
    assert scope["query_string"] == b"language=es&language=hi&messageFormat="
    assert query == {"access_token": "s3cret", "oauth_token": "x", "language": "hi",
                     "messageFormat": ""}  # fmt: skip
    assert take_query({"query_string": b""}) == {}


def _queue_only() -> Connection:
    principal = Principal("ana", "app", frozenset({SCOPE_GAMES}))
    return Connection(
        None,  # type: ignore[arg-type]  # the queue alone: nothing is sent before `ready`
        principal, locale="en", base_url="", rooms_scope=True, peer=PeerTransport(None),
        send_timeout=1.0, rate_per_second=1.0,
    )  # fmt: skip


def test_push_queue_keeps_only_the_newest_version_per_room() -> None:
    """Coalescing: one entry per room, the highest version; nothing at or below what was shown."""
    shown = Shown()
    shown.record("a", 2)
    for room_id, version in [("a", 1), ("a", 2), ("a", 5), ("b", 1), ("a", 4), ("b", 3)]:
        shown.queue(room_id, version)
    assert shown.pending == {"a": 5, "b": 3}


def test_a_reply_showing_the_player_out_ends_the_rooms_pushes() -> None:
    """After a reply showed the player out of a room (leave, decline), no older version is
    shown and a newer one drops the room: the player is not told of it any more."""
    shown = Shown()
    shown.record("r", 4)
    shown.record("r", 6, out=True)
    assert shown.decide("r", 5, in_room=True) is Show.SKIP
    assert shown.decide("r", 7, in_room=False) is Show.FORGET
    assert shown.queue("r", 7) is False and shown.rooms() == [] and shown.version("r") == 0
    assert shown.decide("r", 8, in_room=False) is Show.SKIP  # never shown now: nothing to say


def test_the_push_taking_the_player_out_is_the_last() -> None:
    """The change that took the player out of a room it was shown is pushed; after it, and for
    a room it was never shown, nothing is."""
    shown = Shown()
    assert shown.decide("never", 3, in_room=False) is Show.SKIP
    shown.record("r", 2)
    assert shown.decide("r", 3, in_room=False) is Show.LAST
    assert shown.decide("r", 3, in_room=True) is Show.ROOM


def test_holds_keep_queued_rooms_back() -> None:
    """A call on one room holds back only that room; a call on rooms known only from its
    result holds back every room."""
    shown = Shown()
    shown.queue("r", 2)
    shown.queue("other", 1)
    shown.hold(None)
    assert shown.next_pending() is None
    shown.release()
    shown.hold("r")
    assert shown.next_pending() == ("other", 1)
    assert shown.next_pending() is None
    shown.release()
    assert shown.next_pending() == ("r", 2)


class _Socket:
    """Stands in for Starlette's WebSocket: keeps the text frames sent, in order."""

    def __init__(self) -> None:
        self.frames: list[str] = []

    async def send_text(self, text: str) -> None:
        self.frames.append(text)


def _sending(app: str = "app") -> tuple[Connection, _Socket]:
    socket = _Socket()
    principal = Principal("ana", app, frozenset({SCOPE_GAMES}))
    conn = Connection(
        socket,  # type: ignore[arg-type]
        principal, locale="en", base_url="", rooms_scope=True, peer=PeerTransport(None),
        send_timeout=1.0, rate_per_second=1.0,
    )  # fmt: skip
    conn.ready = True
    return conn, socket


def _room_of_ana(room_id: str, app: str, version: int) -> RoomDoc:
    """A room ana created, at `version` (the pure core makes it; only the version is set)."""
    doc = rooms.create(
        room_id=room_id, app_id=app, player_id="ana", name=None, avatar=None, invited=["bo"],
        criteria=None, variant=None, capabilities=[], xmpp_address=None,
        ids=(f"p{n}" for n in itertools.count()), now_ms=1_000, limits=Limits(),
    )  # fmt: skip
    return msgspec.structs.replace(doc, version=version)


def _versions(frames: list[str]) -> list[tuple[str, int] | str]:
    """Each frame as (roomId, version) for a push, or the frame itself for anything else."""
    out: list[tuple[str, int] | str] = []
    for frame in frames:
        if frame.startswith("{"):
            room = json.loads(frame)["params"]
            out.append((room["roomId"], room["roomStatusVersion"]))
        else:
            out.append(frame)
    return out


class _SlowViews(Views):
    """The real shared documents, whose store reads wait for `released` (the room is being
    read while something else happens on the connection)."""

    def __init__(self, room_store: RoomStore) -> None:
        super().__init__(room_store, lambda: None)
        self.released = asyncio.Event()

    async def doc(self, app: str, room_id: str, version: int) -> RoomDoc | None:
        await self.released.wait()
        return await super().doc(app, room_id, version)


def _pushes(store: Any, views: Views | None = None) -> Pushes:
    room_store = RoomStore(store, Limits(), 60_000)
    views = views or Views(room_store, lambda: None)
    settings = Settings(redis_url="redis://127.0.0.1:1")
    state = types.SimpleNamespace(store=store, room_store=room_store, guard=CallGuard(settings))
    return Pushes(views, Messaging(state, settings).feeds)


async def _settle() -> None:
    for _ in range(10):
        await asyncio.sleep(0)


async def test_a_call_holds_back_pushes_of_its_room_until_its_reply(store: Any) -> None:
    """A push of a version newer than the call's own, announced while the call runs, goes out
    after the call's reply, never before it (docs/spec.md §6: versions only increase)."""
    app = new_app_id()
    pushes = _pushes(store)
    conn, socket = _sending(app)
    for doc in (_room_of_ana("r", app, 7), _room_of_ana("other", app, 3)):
        pushes.views.put(doc)
    async with pushes.holding(conn, "r"):
        pushes.offer(conn, "r", 7)  # committed by someone else just after the call's own change
        pushes.offer(conn, "other", 3)  # another room is not held
        await _settle()
        await conn.reply("reply r v6", [("r", 6, False)])
    await _settle()
    assert _versions(socket.frames) == [("other", 3), "reply r v6", ("r", 7)]


async def test_a_push_rendered_before_a_reply_never_follows_it_with_an_older_version(
    store: Any,
) -> None:
    """A push whose room was being read when a reply showed a newer version is dropped, not
    sent after the reply: the check and the record happen with the send, under the send lock."""
    app = new_app_id()
    views = _SlowViews(RoomStore(store, Limits(), 60_000))
    pushes = _pushes(store, views)
    conn, socket = _sending(app)
    views.put(_room_of_ana("r", app, 5))
    pushes.offer(conn, "r", 5)
    await _settle()  # the queue's sender is reading the room
    await conn.reply("reply r v6", [("r", 6, False)])
    views.released.set()
    await _settle()
    assert socket.frames == ["reply r v6"]
    assert conn.shown.version("r") == 6


def test_rate_limit_refuses_then_flags_abuse() -> None:
    """A burst of twice the rate passes; beyond it requests are refused, then abusive."""
    conn = _queue_only()
    assert [conn.allow_request() for _ in range(2)] == [True, True]
    assert conn.allow_request() is False and not conn.abusive
    for _ in range(2):
        conn.allow_request()
    assert conn.abusive


# ---- presence on a real valkey, time as an argument ---------------------------------------


@pytest.fixture(scope="module")
def own_valkey() -> Iterator[ValkeyProcess]:
    """conftest's own store, one per module here (conftest's `redis_client` uses it)."""
    store = ValkeyProcess().start()
    yield store
    store.stop()


async def _joined_room(service: RoomsService, app: str) -> str:
    ctx = ViewContext()
    creator = Principal("olga", app, frozenset({SCOPE_GAMES}))
    guest = Principal("ray", app, frozenset({SCOPE_GAMES}))
    room = await service.create(creator, wire.RoomCreateRequest(invited_player_ids=["ray"]), ctx)
    assert room.room_id is not None
    await service.join(guest, room.room_id, wire.RoomJoinRequest(), ctx)
    return room.room_id


async def test_presence_releases_a_lapsed_seat_once(redis_client: aioredis.Redis) -> None:
    """Before the deadline nothing happens; after it the seat is released once and retired."""
    limits = Limits()
    room_store = RoomStore(redis_client, limits, 3_600_000)
    service = RoomsService(room_store, limits, PoolStore(redis_client))
    app = new_app_id()
    room_id = await _joined_room(service, app)
    presence = Presence(room_store, grace_seconds=20)
    t0 = 10_000_000_000_000
    await presence.touch([(app, "ray")], t0)
    assert await presence.sweep_once(t0 + 20_000, lambda a, p: False) == 0  # within the grace
    assert await presence.sweep_once(presence.deadline(t0) + 1, lambda a, p: True) == 0  # local
    deadline = presence.deadline(presence.deadline(t0) + 1)
    assert await presence.sweep_once(deadline + 1, lambda a, p: False) == 1
    doc = await room_store.load(app, room_id, fresh=True)
    assert doc is not None
    ray = doc.of_player("ray")
    assert ray is not None and ray.leave_reason == "PRESENCE_FAILURE"
    member = presence_member(app, "ray")
    assert await redis_client.zscore(presence_shard_of(member), member) is None  # retired
    assert await presence.release(app, "ray") == 0  # a replayed claim releases nothing twice
    assert (await room_store.load(app, room_id, fresh=True)).version == doc.version  # type: ignore[union-attr]
    assert await redis_client.zrange(keys.player_rooms(app, "ray"), 0, -1) == []


async def test_presence_claim_survives_a_reconnect(redis_client: aioredis.Redis) -> None:
    """A player that reconnects after its claim keeps its fresh deadline when the claim retires."""
    limits = Limits()
    room_store = RoomStore(redis_client, limits, 3_600_000)
    presence = Presence(room_store, grace_seconds=20)
    app = new_app_id()
    t0 = 20_000_000_000_000
    await presence.touch([(app, "zed")], t0)
    member = presence_member(app, "zed")
    shard = presence_shard_of(member)
    claim = await presence.claims.claim(shard, presence.deadline(t0) + 1, 10)
    assert member in claim.members
    await presence.touch([(app, "zed")], presence.deadline(t0) + 2)  # reconnected meanwhile
    assert await presence.claims.retire(shard, claim.lease_until, [(member, None)]) == 0
    assert await redis_client.zscore(shard, member) is not None


async def test_a_resync_the_store_refuses_is_retried_until_it_runs(valkey: ValkeyProcess) -> None:
    """Right after a store restart the new pub/sub link can work while reads still fail (the
    store loading its AOF, pooled connections dead): the resync is retried, not given up,
    so no client stays behind until its room next changes (docs/spec.md §12 item 6)."""
    attempts: list[int] = []
    done = asyncio.Event()

    async def resync() -> None:
        attempts.append(len(attempts))
        if len(attempts) < 3:
            raise ConnectionError("the store is not answering yet")
        done.set()

    bridge = Bridge(valkey.url, lambda channel, data: None, resync)
    running = asyncio.create_task(bridge.run())
    try:
        async with asyncio.timeout(10):
            await done.wait()
        assert attempts == [0, 1, 2]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_push_taking_the_player_out_waits_for_the_welcome(
    store: Any, valkey: ValkeyProcess
) -> None:
    """A push that takes the player out of a room, landing while the connection's welcome (which
    shows the room) is being built, is queued and sent once the welcome is out: dropped as "never
    shown", it would leave the client on the room's old version."""
    settings = Settings(redis_url=valkey.url)
    state = types.SimpleNamespace(store=store, room_store=RoomStore(store, Limits(), 60_000),
                                  guard=CallGuard(settings), wait_estimate=None)  # fmt: skip
    hub = Hub(state, settings)
    app = new_app_id()
    shown = rooms.create(
        room_id="r-merge", app_id=app, player_id="ana", name=None, avatar=None, invited=["bo"],
        criteria=None, variant=None, capabilities=[], xmpp_address=None,
        ids=(f"p{n}" for n in itertools.count()), now_ms=1_000, limits=Limits(),
    )  # fmt: skip
    gone = rooms.leave(shown, "ana", reason=None, now_ms=2_000, limits=Limits())
    conn, socket = _sending(app)
    conn.ready = False  # the welcome is being built
    hub.views.put(gone)
    hub.pushes.deliver(conn, gone, gone.version)
    assert conn.shown.pending == {"r-merge": gone.version}  # queued, not dropped
    conn.shown.record("r-merge", shown.version)  # what the welcome showed
    conn.ready = True
    hub.pushes.kick(conn)
    await _settle()
    assert len(socket.frames) == 1
    pushed = json.loads(socket.frames[0])["params"]
    assert pushed["roomStatusVersion"] == gone.version and pushed["status"] == "ROOM_DELETED"


async def test_unsubscribes_of_one_loop_turn_go_together_and_spare_a_channel_wanted_again(
    own_valkey: ValkeyProcess, redis_client: aioredis.Redis
) -> None:
    """(Un)subscriptions of one loop turn are one command each way (bridge.py); a channel
    dropped and wanted again in that turn stays subscribed, the others are gone."""
    heard: list[tuple[bytes, bytes]] = []
    bridge = Bridge(own_valkey.url, lambda channel, data: heard.append((channel, data)),
                    asyncio.sleep, sharded=True)  # fmt: skip
    running = asyncio.create_task(bridge.run())
    kept, dropped, other = b"rs:{t:kept}:ch", b"rs:{t:dropped}:ch", b"rs:{t:other}:ch"
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        assert await asyncio.gather(*(bridge.subscribe(c) for c in (kept, dropped, other)))
        for channel in (kept, dropped, other):
            bridge.unsubscribe(channel)
        assert await bridge.subscribe(kept)  # wanted again in the same turn

        async def settled() -> bool:
            counts = await redis_client.execute_command(
                "PUBSUB", "SHARDNUMSUB", kept, dropped, other
            )
            subscribers = dict(zip(counts[::2], counts[1::2], strict=True))
            return subscribers == {kept: 1, dropped: 0, other: 0}

        await eventually(settled, "only the channel wanted again subscribed")
        await redis_client.execute_command("SPUBLISH", kept, b"still here")

        async def delivered() -> bool:
            return bool(heard)

        await eventually(delivered, "the publication on the kept channel")
        assert heard == [(kept, b"still here")]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _subscribe_calls(client: aioredis.Redis) -> int:
    stats = await client.info("commandstats")
    return int(stats.get("cmdstat_subscribe", {}).get("calls", 0))


async def test_subscriptions_asked_for_while_one_is_unconfirmed_go_in_the_next_command(
    own_valkey: ValkeyProcess, redis_client: aioredis.Redis
) -> None:
    """(bridge.py `_send_subscribes`) One SUBSCRIBE is on the wire at a time: channels asked
    for meanwhile, over several loop turns, go together once it is confirmed. A link lost
    with a SUBSCRIBE unconfirmed and more queued leaves nothing stuck: the next link has every
    channel, and later subscriptions are confirmed as usual."""
    heard: list[tuple[bytes, bytes]] = []

    async def resync() -> None:
        pass

    bridge = Bridge(own_valkey.url, lambda channel, data: heard.append((channel, data)), resync)
    running = asyncio.create_task(bridge.run())
    first, *later = [f"roomsvc-test:batch:{n}".encode() for n in range(4)]
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        await redis_client.config_resetstat()
        await redis_client.execute_command("CLIENT", "PAUSE", 300, "ALL")
        waits = [asyncio.create_task(bridge.subscribe(first))]
        for channel in later:  # one per loop turn, and more: a turn apart each
            await asyncio.sleep(0.01)
            waits.append(asyncio.create_task(bridge.subscribe(channel)))
        assert await asyncio.gather(*waits) == [True] * 4
        assert await _subscribe_calls(redis_client) == 2  # the first, then the three together

        await redis_client.execute_command("CLIENT", "PAUSE", 300, "ALL")
        cut_at, queued = b"roomsvc-test:cut:0", b"roomsvc-test:cut:1"
        waits = [asyncio.create_task(bridge.subscribe(cut_at))]
        await asyncio.sleep(0.01)
        waits.append(asyncio.create_task(bridge.subscribe(queued)))
        await asyncio.sleep(0.01)
        cut = bridge._pubsub
        assert cut is not None
        cut._transport.abort()  # the socket dies with `cut_at` unconfirmed, `queued` waiting
        await asyncio.gather(*waits)

        async def relinked() -> bool:
            return bridge._pubsub not in (None, cut) and bridge.connected.is_set()

        await eventually(relinked, "a new link, subscribed")
        assert await bridge.subscribe(b"roomsvc-test:after-cut")
        for channel in (cut_at, queued, b"roomsvc-test:after-cut"):
            await redis_client.publish(channel, b"hi")

        async def delivered() -> bool:
            return len(heard) == 3

        await eventually(delivered, "a publication on each channel, the cut ones included")
        assert sorted(channel for channel, _ in heard) == sorted(
            [cut_at, queued, b"roomsvc-test:after-cut"]
        )
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_channel_dropped_while_queued_is_not_subscribed_and_a_resubscribe_waits(
    own_valkey: ValkeyProcess, redis_client: aioredis.Redis
) -> None:
    """(bridge.py `_send_subscribes`) A channel unsubscribed while it waits behind an
    unconfirmed SUBSCRIBE is not sent at all. One unsubscribed and asked for again while its
    first SUBSCRIBE is unconfirmed is confirmed by the SUBSCRIBE sent after the UNSUBSCRIBE,
    never by the first one's confirmation: when `subscribe` says True it is in effect."""

    async def resync() -> None:
        pass

    heard: list[bytes] = []
    bridge = Bridge(own_valkey.url, lambda channel, data: heard.append(data), resync)
    running = asyncio.create_task(bridge.run())
    first, dropped, again = b"roomsvc-test:q:a", b"roomsvc-test:q:b", b"roomsvc-test:q:x"
    many = [f"roomsvc-test:q:o:{n}".encode() for n in range(5000)]  # confirmed over many reads
    try:
        async with asyncio.timeout(10):
            await bridge.connected.wait()
        await redis_client.execute_command("CLIENT", "PAUSE", 300, "ALL")
        waits = [asyncio.create_task(bridge.subscribe(c)) for c in (again, first, *many)]
        await asyncio.sleep(0.01)  # that SUBSCRIBE is on the wire, unconfirmed
        queued = asyncio.create_task(bridge.subscribe(dropped))
        bridge.unsubscribe(again)
        await asyncio.sleep(0.01)  # the UNSUBSCRIBE is written; `dropped` waits in the queue
        bridge.unsubscribe(dropped)
        assert await bridge.subscribe(again)
        assert await redis_client.pubsub_numsub(again) == [(again, 1)]  # in effect already
        await asyncio.gather(queued, *waits)
        await redis_client.publish(again, b"after True")

        async def delivered() -> bool:
            return heard == [b"after True"]

        await eventually(delivered, "the publication after the resubscribe")
        assert await redis_client.pubsub_numsub(dropped) == [(dropped, 0)]
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def test_a_closed_pubsub_link_sends_nothing(valkey: ValkeyProcess, store: Any) -> None:
    """A subscription sent on a link already closed (a reconnect raced it) fails: redis-py would
    open a new connection for it, subscribed, that nothing reads or closes; the channel would
    look subscribed on the server and never be confirmed on the live link."""
    replies: list[Any] = []
    link = PubSubLink(valkey.url, replies.append)
    await link.open()
    link.send("SUBSCRIBE", b"roomsvc-test:open")

    async def confirmed() -> bool:
        return bool(replies)

    await eventually(confirmed, "the subscription's confirmation")
    assert replies[0][:2] == [b"subscribe", b"roomsvc-test:open"]
    await link.close()
    with pytest.raises(ConnectionError):
        link.send("SUBSCRIBE", b"roomsvc-test:after-close")
    await asyncio.sleep(0.1)
    assert await store.pubsub_numsub(b"roomsvc-test:after-close") == [
        (b"roomsvc-test:after-close", 0)
    ]
