"""Liveness on the realtime channel (docs/spec.md §6: ping every 20 s and close a silent peer), with
ROOMSVC_WS_PING_SECONDS=1 so the test need not wait 40 s."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Iterator

import pytest

from roomsvc.client import RoomsvcClient
from roomsvc.realtime.bridge import HEALTH_INTERVAL_S
from tests.support import (
    UNIT,
    ServerProcess,
    ValkeyProcess,
    new_app_id,
    raw_websocket,
    token,
    wait_until,
)


@pytest.fixture(scope="module")
def pinging_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    server = ServerProcess(valkey.url, env={"ROOMSVC_WS_PING_SECONDS": "1"}).start()
    yield server
    server.stop()


def test_a_silent_peer_is_pinged_then_closed(pinging_server: ServerProcess) -> None:
    """The server pings; a peer that never answers is disconnected after the ping timeout."""
    sock = raw_websocket(pinging_server, "mute", new_app_id())
    received = b""
    deadline = time.monotonic() + 200 * UNIT
    with sock:
        while time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break  # the server closed the TCP connection
            received += chunk
        else:
            raise AssertionError("a silent peer was never disconnected")
    assert b"\x89" in received  # a ping frame (FIN + opcode 0x9) reached the peer


async def test_a_live_peer_answering_pings_stays_connected(pinging_server: ServerProcess) -> None:
    """A client that answers pings (every real client library does; here `roomsvc.client`)
    outlives several of them."""
    client = RoomsvcClient(pinging_server.base_url, token("chatty", new_app_id()),
                           reconnect=False)  # fmt: skip
    disconnects: list[int | None] = []
    client.on("disconnected", disconnects.append)
    await client.connect()
    try:
        await asyncio.sleep(30 * UNIT)  # three server pings at 1 s
        assert disconnects == [] and client.close_code is None
        listed = await client.call("rooms.list")  # still open: a call round-trips
        assert listed["kind"] == "games#roomList"
    finally:
        await client.close()


def _pubsub_ids(store: ValkeyProcess) -> set[str]:
    import redis

    admin = redis.Redis(port=store.port, socket_timeout=100 * UNIT)
    try:
        listing = admin.execute_command("CLIENT", "LIST", "TYPE", "pubsub").decode()
    finally:
        admin.close()
    fields = [field for line in listing.splitlines() for field in line.split()]
    return {field[3:] for field in fields if field.startswith("id=")}


def test_a_silent_pubsub_link_is_replaced() -> None:
    """A store that stops answering (SIGSTOP: the TCP link stays up, nothing arrives) makes the
    bridge drop its pub/sub link after two silent health intervals; a new link follows."""
    store = ValkeyProcess().start()
    server = ServerProcess(store.url).start()
    try:
        wait_until(lambda: bool(_pubsub_ids(store)))
        before = _pubsub_ids(store)
        assert store.process is not None
        store.process.send_signal(signal.SIGSTOP)
        time.sleep(3 * HEALTH_INTERVAL_S)  # silence longer than the two intervals allowed
        store.process.send_signal(signal.SIGCONT)
        wait_until(lambda: bool(_pubsub_ids(store) - before), timeout=300 * UNIT)
    finally:
        if store.process is not None:
            store.process.send_signal(signal.SIGCONT)
        server.stop()
        store.stop()
