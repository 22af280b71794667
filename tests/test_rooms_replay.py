"""Lost replies and retries never double-apply a room mutation (docs/spec.md §4, §12 item 5;
docs/design.md "Retries never double-apply").

redis-py re-sends a script whose reply was lost with the very same arguments, another process
may re-drive a step it did not see finish, and a client may resend a create with its
`requestId`. Each replay must find the request id already applied and report the room as it
is, with the version unchanged.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import Callable

import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from roomsvc.common.clock import now_ms
from roomsvc.common.errors import Conflict
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Limits, PStatus, RoomDoc
from roomsvc.rooms.store import RoomStore
from roomsvc.store import keys
from roomsvc.store.scripts import register
from tests.support import auth

LIMITS = Limits()


@pytest.fixture
def stores(store: aioredis.Redis) -> list[RoomStore]:
    """Two RoomStores on one store: two processes, each with its own cache and lock."""
    return [RoomStore(store, LIMITS, 3_600_000) for _ in range(2)]


async def new_room(room_store: RoomStore, app: str, invited: list[str]) -> RoomDoc:
    counter = itertools.count()
    doc = rooms.create(
        room_id="r" + uuid.uuid4().hex[:12],
        app_id=app,
        player_id="creator",
        name=None,
        avatar=None,
        invited=invited,
        criteria=None,
        variant=None,
        capabilities=[],
        xmpp_address=None,
        ids=(f"p{next(counter)}" for _ in itertools.repeat(None)),
        now_ms=now_ms(),
        limits=LIMITS,
    )
    applied = await room_store.create(doc, request_id=f"create:{doc.room_id}")
    assert applied.changed
    return doc


def joining(player: str, tag: str = "c") -> Callable[[RoomDoc], RoomDoc]:
    return lambda doc: rooms.join(
        doc, player, capabilities=[tag], xmpp_address=None, now_ms=now_ms(), limits=LIMITS
    )


async def test_a_script_resent_after_a_lost_reply_is_applied_once(
    store: aioredis.Redis, stores: list[RoomStore], app_id: str
) -> None:
    """The CAS script run twice with identical arguments applies once and says so."""
    doc = await new_room(stores[0], app_id, ["ana"])
    new = rooms.join(doc, "ana", capabilities=[], xmpp_address=None, now_ms=now_ms(), limits=LIMITS)
    cas = register(store, "room_cas")
    script_keys = [keys.room(app_id, doc.room_id), keys.room_applied(app_id, doc.room_id)]
    encoded = msgspec.msgpack.encode(new)
    args = [1, 2, encoded, "req-1", 60_000, f"{doc.room_id} 2"]
    first, second = await cas(keys=script_keys, args=args), await cas(keys=script_keys, args=args)
    assert int(first[0]) == 1
    assert int(second[0]) == 2 and int(second[1]) == 2 and second[2] == encoded
    assert await store.hget(script_keys[0], "v") == b"2"
    assert await stores[1].load(app_id, doc.room_id, fresh=True) == new


@pytest.mark.parametrize("processes", [1, 2])
async def test_concurrent_replays_of_one_request_apply_once(
    stores: list[RoomStore], app_id: str, processes: int
) -> None:
    """The same join, by request id, sent concurrently to one or two processes: one change."""
    doc = await new_room(stores[0], app_id, ["ana", "ben"])
    for room_store in stores:
        assert await room_store.load(app_id, doc.room_id) is not None  # both caches at v1
    request_id = uuid.uuid4().hex
    calls = [
        stores[i % processes].mutate(app_id, doc.room_id, joining("ana", f"c{i}"), request_id)
        for i in range(6)
    ]
    results = await asyncio.gather(*calls)
    assert sum(r.changed for r in results) == 1
    winner = next(r for r in results if r.changed)
    assert winner.room.version == 2
    for result in results:
        assert result.room.version == 2
        ana = result.room.of_player("ana")
        assert ana is not None and ana.status is PStatus.JOINED
        assert ana.capabilities == winner.room.participants[1].capabilities
    stored = await stores[0].load(app_id, doc.room_id, fresh=True)
    assert stored == winner.room


async def test_a_late_replay_reports_the_room_without_changing_it(
    stores: list[RoomStore], app_id: str
) -> None:
    """A replay after later changes returns the current room; the version does not move."""
    doc = await new_room(stores[0], app_id, ["ana", "ben"])
    request_id = uuid.uuid4().hex
    first = await stores[0].mutate(app_id, doc.room_id, joining("ana"), request_id)
    assert first.changed and first.room.version == 2
    later = await stores[1].mutate(app_id, doc.room_id, joining("ben"), uuid.uuid4().hex)
    assert later.changed and later.room.version == 3
    for room_store in stores:
        replay = await room_store.mutate(app_id, doc.room_id, joining("ana"), request_id)
        assert not replay.changed
        assert replay.room.version == 3
    stored = await stores[0].load(app_id, doc.room_id, fresh=True)
    assert stored is not None and stored.version == 3


async def test_the_same_change_under_a_new_request_id_is_refused(
    stores: list[RoomStore], app_id: str
) -> None:
    """Without the request id a second join is a new request, and an illegal one (409)."""
    doc = await new_room(stores[0], app_id, ["ana"])
    await stores[0].mutate(app_id, doc.room_id, joining("ana"), uuid.uuid4().hex)
    for room_store in stores:
        with pytest.raises(Conflict):
            await room_store.mutate(app_id, doc.room_id, joining("ana"), uuid.uuid4().hex)


async def test_a_create_replayed_twenty_times_concurrently_makes_one_room(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """rooms.create with one requestId, 20 times at once: every reply is the same room."""
    body = {"invitedPlayerIds": ["ana", "ben"], "requestId": "8842"}
    headers = auth("creator", app_id)
    replies = await asyncio.gather(
        *(http.post("/games/v1/rooms/create", json=body, headers=headers) for _ in range(20))
    )
    assert [r.status_code for r in replies] == [200] * 20, [r.text for r in replies]
    rooms_made = {r.json()["roomId"] for r in replies}
    assert len(rooms_made) == 1
    assert {r.json()["roomStatusVersion"] for r in replies} == {1}
    ids = {tuple(p["id"] for p in r.json()["participants"]) for r in replies}
    assert len(ids) == 1
    inbox = await http.get("/games/v1/rooms", headers=auth("ana", app_id))
    assert [room["roomId"] for room in inbox.json().get("items", [])] == list(rooms_made)
    assert await store.zcard(keys.player_rooms(app_id, "creator")) == 1
