"""A create that seeks players by auto-match is one round trip on a plain server, its ticket
ahead of the room (docs/store.md "Per-player indexes": the ticket before the room), and the
ticket runs first even when the store has lost its script."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import redis.asyncio as aioredis

from roomsvc.auth.tokens import SCOPE_GAMES, Principal
from roomsvc.matching.pools import PoolStore
from roomsvc.rooms import wire
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.service import RoomsService
from roomsvc.rooms.store import RoomStore
from roomsvc.rooms.view import ViewContext
from roomsvc.store import keys
from tests.support import ValkeyProcess, eventually, new_app_id
from tests.valkey_proxy import LossyProxy

SEEKING = wire.RoomCreateRequest(
    auto_matching_criteria=wire.AutoMatchingCriteriaIn(
        min_auto_matching_players=1, max_auto_matching_players=1
    ),
    variant=3,
)


async def test_the_ticket_and_the_room_share_one_write_the_ticket_first(proxy: LossyProxy) -> None:
    store = aioredis.Redis.from_url(proxy.url)
    try:
        service = service_on(store)
        app = new_app_id()
        principal = Principal(player_id="ana", app_id=app, scopes=frozenset({SCOPE_GAMES}))
        body = SEEKING
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


@pytest.fixture
def fresh_valkey(request: pytest.FixtureRequest) -> Iterator[ValkeyProcess]:
    if request.config.getoption("--cluster"):
        pytest.skip("a cluster awaits the ticket before it sends the room")
    server = ValkeyProcess().start()  # its script cache starts empty
    yield server
    server.stop()


async def test_the_ticket_runs_before_the_room_when_the_store_lost_its_script(
    fresh_valkey: ValkeyProcess,
) -> None:
    """The state after a restart or a SCRIPT FLUSH, once any write has loaded the room's
    script again: the ticket's script is missing. Sent by SHA, the ticket would be refused
    (NOSCRIPT) and sent again after the batch, behind the room it must precede."""
    store = aioredis.Redis.from_url(fresh_valkey.url)
    watcher = aioredis.Redis.from_url(fresh_valkey.url)
    try:
        service = service_on(store)
        app = new_app_id()
        principal = Principal(player_id="ana", app_id=app, scopes=frozenset({SCOPE_GAMES}))
        inviting = wire.RoomCreateRequest(invited_player_ids=["bo"])
        await service.create(principal, inviting, ViewContext())  # loads room_cas alone
        ticket_key = keys.pool_tickets(keys.pool_id(app, 3))
        ran: list[str] = []
        async with watcher.monitor() as monitor:

            async def watch() -> None:
                async for command in monitor.listen():
                    ran.append(str(command.get("command", "")))

            watching = asyncio.create_task(watch())
            room = await service.create(principal, SEEKING, ViewContext())
            room_key = keys.room(app, str(room.room_id))

            async def both_ran() -> bool:
                return any(ticket_key in c for c in ran) and any(room_key in c for c in ran)

            await eventually(both_ran, "the ticket's and the room's writes in MONITOR")
            watching.cancel()
            await asyncio.gather(watching, return_exceptions=True)
        first_ticket = next(n for n, c in enumerate(ran) if ticket_key in c and "ZADD" in c)
        first_room = next(n for n, c in enumerate(ran) if room_key in c and "HSET" in c)
        assert first_ticket < first_room, ran
    finally:
        await store.aclose()
        await watcher.aclose()
