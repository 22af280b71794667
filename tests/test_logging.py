"""Logs (docs/spec.md §10, §2; docs/style.md habit 11): one JSON object per line, a request id on
every request (the caller's X-Request-ID when it sends one), the room id bound on room routes, and
never a token, whether it came in a query string, an Authorization header or a WebSocket handshake.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from roomsvc.common.logs import Repeats
from tests.support import ServerProcess, ValkeyProcess, token

ROOMS = "/games/v1/rooms"


@pytest.fixture(scope="module")
def logged(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    process = ServerProcess(valkey.url, env={"ROOMSVC_LOG_LEVEL": "DEBUG"}).start()
    yield process
    process.stop()


def records(server: ServerProcess) -> list[dict[str, Any]]:
    lines = [line for line in server.output().splitlines() if line.strip()]
    parsed = [json.loads(line) for line in lines]  # a line that is not JSON fails here
    assert all({"ts", "level", "logger", "event"} <= set(r) for r in parsed)
    return parsed


async def test_requests_carry_their_id_and_room(logged: ServerProcess, app_id: str) -> None:
    """The access record names the request id (echoed in X-Request-ID) and, on rooms, the room."""
    secret = token("al", app_id)
    async with httpx.AsyncClient(base_url=logged.base_url, timeout=30) as http:
        created = await http.post(
            f"{ROOMS}/create",
            json={"invitedPlayerIds": ["bo"]},
            headers={"Authorization": f"Bearer {secret}", "X-Request-ID": "trace-123"},
        )
        assert created.headers["x-request-id"] == "trace-123"
        room_id = created.json()["roomId"]
        joined = await http.post(
            f"{ROOMS}/{room_id}/join", json={}, params={"access_token": token("bo", app_id)}
        )
        assert joined.status_code == 200
    minted = joined.headers["x-request-id"]
    access = [r for r in records(logged) if r["logger"] == "roomsvc.access"]
    create_line = next(r for r in access if r.get("request_id") == "trace-123")
    assert create_line["path"] == f"{ROOMS}/create" and create_line["status"] == 200
    assert "room_id" not in create_line
    join_line = next(r for r in access if r.get("request_id") == minted)
    assert join_line["room_id"] == room_id and join_line["path"] == f"{ROOMS}/{room_id}/join"


async def test_no_token_ever_reaches_the_log(logged: ServerProcess, app_id: str) -> None:
    """Query tokens, bearer headers, refused and accepted handshakes: none in any record."""
    good = token("cy", app_id)
    other = token("dee", app_id)
    forged = good[:-6] + "AAAAAA"
    async with httpx.AsyncClient(base_url=logged.base_url, timeout=30) as http:
        assert (await http.get(ROOMS, params={"access_token": good})).status_code == 200
        assert (await http.get(ROOMS, params={"oauth_token": other})).status_code == 200
        bad = await http.get(ROOMS, params={"access_token": forged})
        assert bad.status_code == 401
        bearer = await http.get(ROOMS, headers={"Authorization": f"Bearer {forged}"})
        assert bearer.status_code == 401
        await http.get(f"{ROOMS}/no-such-room", params={"access_token": good, "x": "y"})
    ws_base = logged.base_url.replace("http://", "ws://") + "/games/v1/realtime"
    async with connect(f"{ws_base}?access_token={good}", compression=None) as ws:
        assert json.loads(await ws.recv())["method"] == "welcome"
    with pytest.raises(InvalidStatus):
        await connect(f"{ws_base}?access_token={forged}", compression=None)
    logged.stop()  # flush every record, shutdown lines included
    text = logged.output()
    assert text, "the server logged nothing"
    records(logged)
    for secret in (good, other, forged):
        signature = secret.rsplit(".", 1)[-1]
        assert secret not in text and signature not in text


def test_a_repeating_warning_is_written_once_per_interval_with_a_count() -> None:
    now = [100.0]
    repeats = Repeats(interval_s=30.0, clock=lambda: now[0])
    assert repeats.due("store") == 0  # the first is written
    assert [repeats.due("store") for _ in range(3)] == [None, None, None]
    assert repeats.due("link") == 0  # another key has its own interval
    now[0] += 30.0
    assert repeats.due("store") == 3  # written again, saying how many were held back
    assert repeats.due("store") is None
    assert repeats.clear("store") and not repeats.clear("store")
    assert repeats.due("store") == 0  # after the condition ended, the next is written at once


def test_a_store_outage_is_logged_once_per_loop_not_every_retry() -> None:
    """With the store gone, every background loop retries about once a second; the log gets
    one warning per loop (and one every 30 s after that), not one per retry."""
    store = ValkeyProcess().start()
    server = ServerProcess(store.url).start()
    try:
        store.stop()
        time.sleep(4.5)  # about four retries of each loop
        warnings = [r for r in records(server) if r.get("level") == "warning"]
        events = [(r["event"], r.get("duty")) for r in warnings]
        assert events, "the outage was not logged at all"
        assert len(events) == len(set(events)), events
        assert ("background duty paused: store unavailable", "timers_duty") in events
    finally:
        server.stop()
        store.stop()
