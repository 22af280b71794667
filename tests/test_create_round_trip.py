"""A create that seeks players by auto-match is one round trip on a plain server, its ticket
ahead of the room (docs/store.md "Per-player indexes": the ticket before the room)."""

from __future__ import annotations

import redis.asyncio as aioredis

from roomsvc.auth.tokens import SCOPE_GAMES, Principal
from roomsvc.matching.pools import PoolStore
from roomsvc.rooms import wire
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.service import RoomsService
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import ViewContext
from roomsvc.store import keys
from tests.support import new_app_id
from tests.valkey_proxy import LossyProxy


async def test_the_ticket_and_the_room_share_one_write_the_ticket_first(proxy: LossyProxy) -> None:
    store = aioredis.Redis.from_url(proxy.url)
    try:
        service = service_on(store)
        app = new_app_id()
        principal = Principal(player_id="ana", app_id=app, scopes=frozenset({SCOPE_GAMES}))
        body = wire.RoomCreateRequest(
            auto_matching_criteria=wire.AutoMatchingCriteriaIn(
                min_auto_matching_players=1, max_auto_matching_players=1
            ),
            variant=3,
        )
        # The first create loads the scripts (a fresh store answers NOSCRIPT, and the batch's
        # script calls are sent again): the second is the one watched.
        await service.create(principal, body, ViewContext())
        proxy.writes = []
        room = await service.create(principal, body, ViewContext())
        assert room.room_id is not None
        ticket_key = keys.pool_tickets(keys.pool_id(app, 3)).encode()
        room_key = keys.room(app, room.room_id).encode()
        carrying = [w for w in proxy.writes if ticket_key in w or room_key in w]
        assert len(carrying) == 1, "the ticket and the room went in separate round trips"
        (write,) = carrying
        assert ticket_key in write and room_key in write
        assert write.index(ticket_key) < write.index(room_key)
        assert await store.zscore(keys.pool_tickets(keys.pool_id(app, 3)), room.room_id)
    finally:
        await store.aclose()


def service_on(store: aioredis.Redis) -> RoomsService:
    return RoomsService(RoomStore(store, Limits(), 60_000), Limits(), PoolStore(store))
