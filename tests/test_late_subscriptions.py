"""A subscription the store confirms late loses nothing (docs/realtime.md "Late subscriptions").

Under load the (un)subscribe commands of one pub/sub link queue, and a subscription can be
confirmed after the bridge stopped waiting for it (`CONFIRM_TIMEOUT_S`). Whatever was
published before it took effect reached no one here, so the confirmation itself triggers the
read-back: the room's message backlog for a room's channel, the player's rooms for a player's
channel. A proxy (tests/valkey_proxy.py) holds the SUBSCRIBE or SSUBSCRIBE back past that
timeout; a real server and real clients do the rest.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest

from roomsvc.realtime.bridge import CONFIRM_TIMEOUT_S
from tests.messaging import Player, players, room_of
from tests.support import ServerProcess, eventually
from tests.valkey_proxy import LossyProxy

HOLD_S = CONFIRM_TIMEOUT_S + 2.0  # the command reaches valkey this long after it was written
PAST_TIMEOUT_S = CONFIRM_TIMEOUT_S + 0.5  # the bridge has given up waiting, valkey not seen it


@pytest.fixture
async def server(proxy: LossyProxy) -> AsyncIterator[ServerProcess]:
    # Not waited for in start(): the proxy runs on this loop, which must turn meanwhile.
    # A store deadline past the bridge's timeout: with the default (1 s) a socket whose channel
    # is not confirmed by then is closed with 1013 instead (docs/store.md "Deadlines"), and its
    # client reconnects; past it, the welcome goes out and the late confirmation covers the gap.
    deadline = {"ROOMSVC_STORE_DEADLINE_MS": str(int((CONFIRM_TIMEOUT_S + 2) * 1000))}
    server = ServerProcess(proxy.url, env=deadline).start(wait=False)
    await eventually(lambda: asyncio.to_thread(server.healthy), "the server behind the proxy")
    yield server
    server.stop()


async def held_past_the_timeout(proxy: LossyProxy, *, count: int) -> None:
    """Until the `count`th held command has waited past the bridge's timeout, still unsent."""

    async def held() -> bool:
        return len(proxy.held) >= count

    await eventually(held, "the subscription held by the proxy")
    # Only the writes held so far are held. The link is silent meanwhile, so its watchdog may drop
    # it after two health intervals (bridge.py HEALTH_INTERVAL_S, 2 s). Its successor's
    # subscriptions must then go through, or every new link would be held and dropped in turn.
    proxy.hold.clear()
    await asyncio.sleep(max(0.0, proxy.held[count - 1] + PAST_TIMEOUT_S - time.monotonic()))
    assert proxy.released < count, "the held subscription reached valkey too soon to test"


def payloads(player: Player, room_id: str) -> list[bytes]:
    return [m.data for m in player.messages if m.room_id == room_id]


async def test_a_message_sent_before_a_late_room_subscription_is_delivered(
    proxy: LossyProxy, server: ServerProcess, app_id: str
) -> None:
    async with players(server, app_id, "ann", "bob") as (ann, bob):
        warm = await room_of(ann, bob)  # the message link is up and its own channel confirmed
        await bob.client.send_message(warm, b"warm")
        await ann.until(lambda: payloads(ann, warm) == [b"warm"])
        proxy.hold[b"SSUBSCRIBE"] = HOLD_S
        room_id = await room_of(ann, bob)  # a new room: its channel's SSUBSCRIBE is held
        await held_past_the_timeout(proxy, count=1)
        await bob.client.send_message(room_id, b"before the subscription took effect")
        await ann.until(lambda: payloads(ann, room_id) == [b"before the subscription took effect"],
                        within=HOLD_S + 10)  # fmt: skip
        assert [m.seq for m in ann.messages if m.room_id == room_id] == [1]


async def test_a_change_committed_before_a_late_player_subscription_is_pushed(
    proxy: LossyProxy, server: ServerProcess, app_id: str
) -> None:
    async with players(server, app_id, "cid") as (cid,):
        proxy.hold[b"SUBSCRIBE"] = HOLD_S
        dee = Player(server, "dee", app_id)
        try:
            # dee's welcome goes out once the bridge stops waiting for its channel
            welcome = await dee.client.connect()
            assert welcome["invitations"] == []
            await held_past_the_timeout(proxy, count=1)
            room = await cid.client.create_room(invited_player_ids=["dee"])
            push = await dee.pushed(lambda p: p["roomId"] == room["roomId"], within=HOLD_S + 10)
            assert push["roomStatusVersion"] == room["roomStatusVersion"]
        finally:
            await dee.client.close()
