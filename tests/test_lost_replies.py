"""Replies lost between roomsvc and its store never make a change apply twice (docs/spec.md §12 item
5; docs/design.md "Retries never double-apply").

A proxy (tests/valkey_proxy.py) lets valkey run a fraction of the server's writes and then
drops their replies with the connection. The server resends such a batch once on a new
connection, where each room write finds its request id already applied; a client whose
requestId'd create got a 503 sends it again. Whatever was lost, every room's history holds
each call at most once (tests/toggle_load.py), and the clients only ever see a success or a
clear 503.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio as aioredis

from roomsvc.store import keys
from tests.support import UNIT, ServerProcess, auth, new_app_id
from tests.toggle_load import BASE, Outcome, Room, check_history, check_unavailable, make_room, work
from tests.valkey_proxy import LossyProxy

ROOMS = 12
CALLS_PER_WORKER = 30
CREATES = 20
LOSS = 0.25  # of the server's writes whose replies are swallowed


@pytest.fixture
def behind_proxy(proxy: LossyProxy) -> Iterator[ServerProcess]:
    # Not waited for here: the proxy runs on the test's event loop, which must keep turning
    # while the server connects through it (the test waits for health).
    server = ServerProcess(proxy.url).start(wait=False)
    yield server
    server.stop()


async def create_until_answered(
    client: httpx.AsyncClient, app: str, maker: str, request_id: str
) -> list[httpx.Response]:
    """rooms.create with a requestId, sent again after every 503 until it succeeds."""
    body = {"invitedPlayerIds": ["guest"], "requestId": request_id}
    replies: list[httpx.Response] = []
    for _ in range(50):
        reply = await client.post(f"{BASE}/create", json=body, headers=auth(maker, app))
        replies.append(reply)
        if reply.status_code == 200:
            return replies
        assert reply.status_code == 503, reply.text
        check_unavailable(reply)
        await asyncio.sleep(UNIT / 2)
    raise AssertionError(f"create {request_id} never succeeded")


@pytest.mark.slow
async def test_lost_replies_never_apply_a_change_twice(
    proxy: LossyProxy, behind_proxy: ServerProcess, store: aioredis.Redis
) -> None:
    for _ in range(400):
        if await asyncio.to_thread(behind_proxy.healthy):
            break
        await asyncio.sleep(UNIT / 2)
    app = new_app_id()
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=behind_proxy.base_url, timeout=60, limits=limits) as http:
        rooms: list[Room] = list(
            await asyncio.gather(*(make_room(http, app) for _ in range(ROOMS)))
        )

        proxy.loss = LOSS
        log: list[Outcome] = []
        stop = asyncio.Event()
        async with asyncio.TaskGroup() as group:  # one failure cancels the rest
            creates = [
                group.create_task(create_until_answered(http, app, f"maker{i}", str(9000 + i)))
                for i in range(CREATES)
            ]
            for i in range(ROOMS):
                for worker in ("creator", "ana"):
                    group.create_task(
                        work(http, app, rooms, i, worker, stop, CALLS_PER_WORKER, log)
                    )
        proxy.loss = 0.0

    assert proxy.swallowed > 0
    assert not [o for o in log if o.status is None]  # the clients' own links are never cut
    totals = await check_history(store, app, rooms, log)
    assert totals["acked"] > 0, totals

    # A create resent after a 503 made its room once: every success names the same room, at
    # version 1, and the maker is in exactly one room.
    for i, task in enumerate(creates):
        replies = task.result()
        made = {r.json()["roomId"] for r in replies if r.status_code == 200}
        assert len(made) == 1, made
        room_id = made.pop()
        assert await store.zrange(keys.player_rooms(app, f"maker{i}"), 0, -1) == [room_id.encode()]
        assert await store.hget(keys.room(app, room_id), "v") == b"1"
    invited = await store.zcard(keys.player_invitations(app, "guest"))
    assert invited == CREATES
    assert "internal error" not in behind_proxy.output()
