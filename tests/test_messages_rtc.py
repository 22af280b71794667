"""Peer to peer through roomsvc (docs/messages.md "Peer to peer", "NAT traversal"): two aiortc
peers signal through `rooms.signal`, open a data channel and exchange data, report
CONNECTION_ESTABLISHED and see ROOM_ACTIVE; once over host candidates (in a network namespace
the test makes, where loopback has a second address), once relay-only through a real coturn
using the credentials roomsvc issued."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.messaging import players
from tests.rtc_peers import connect_pair
from tests.support import ServerProcess, ValkeyProcess
from tests.turn import TURN_SECRET, TurnServer

ROOT = Path(__file__).resolve().parent.parent


def _namespaces_work() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(["unshare", "-rn", "ip", "link", "set", "lo", "up"],
                           capture_output=True, check=False)  # fmt: skip
    return probe.returncode == 0


def assert_played(result: dict[str, Any]) -> None:
    assert result["pong"], "no data came back over the data channel"
    assert result["states"] == ["connected", "connected"]
    statuses = [report["status"] for report in result["reports"]]
    assert statuses[-1] == "ROOM_ACTIVE", statuses
    room = result["room"]
    assert room["status"] == "ROOM_ACTIVE"
    assert all(p["status"] == "PARTICIPANT_JOINED" and p["connected"]
               for p in room["participants"])  # fmt: skip


@pytest.mark.skipif(not _namespaces_work(), reason="needs unprivileged network namespaces: "
                    "`unshare -rn` from util-linux and `ip` from iproute2 (apt-get install "
                    "util-linux iproute2), with user namespaces enabled")  # fmt: skip
def test_two_aiortc_peers_connect_over_host_candidates() -> None:
    run = subprocess.run(["unshare", "-rn", sys.executable, "-m", "tests.rtc_namespace"],
                         cwd=ROOT, capture_output=True, text=True, timeout=300,
                         check=False)  # fmt: skip
    assert run.returncode == 0, run.stderr[-4000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert_played(result)
    assert result["offer_candidates"] and all(" typ host" in c for c in result["offer_candidates"])
    metrics = result["metrics"]
    # reportStatus diagnostics kept as metrics: both peers reported their setup and round trip
    assert "roomsvc_p2p_setup_milliseconds_count 2.0" in metrics
    assert "roomsvc_p2p_roundtrip_milliseconds_count 2.0" in metrics


@pytest.fixture(scope="module")
def turn() -> Iterator[TurnServer]:
    if shutil.which("turnserver") is None:
        pytest.skip("needs coturn's turnserver: apt-get install coturn")
    server = TurnServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def turn_roomsvc(valkey: ValkeyProcess, turn: TurnServer) -> Iterator[ServerProcess]:
    env = {
        "ROOMSVC_STUN_URIS": f"stun:127.0.0.1:{turn.port}",
        "ROOMSVC_TURN_URIS": f"turn:127.0.0.1:{turn.port}?transport=udp,"
                             f"turn:127.0.0.1:{turn.port}?transport=tcp",
        "ROOMSVC_TURN_SECRET": TURN_SECRET,
        "ROOMSVC_TURN_TTL_SECONDS": "600",
    }  # fmt: skip
    server = ServerProcess(valkey.url, env=env).start()
    yield server
    server.stop()


async def test_ice_servers_carry_turn_rest_credentials(
    turn_roomsvc: ServerProcess, turn: TurnServer, app_id: str
) -> None:
    async with players(turn_roomsvc, app_id, "zoe") as (zoe,):
        welcome = zoe.client.welcome["iceServers"]
        fresh = await zoe.client.ice_servers()
    assert fresh["ttlSeconds"] == 600
    for servers in (welcome, fresh["iceServers"]):
        stun, relay = servers
        assert stun == {"urls": [f"stun:127.0.0.1:{turn.port}"]}
        assert relay["urls"] == [f"turn:127.0.0.1:{turn.port}?transport=udp",
                                 f"turn:127.0.0.1:{turn.port}?transport=tcp"]  # fmt: skip
        expiry, _, player = relay["username"].partition(":")
        assert player == "zoe" and 590 <= int(expiry) - time.time() <= 610
        digest = hmac.new(TURN_SECRET.encode(), relay["username"].encode(), hashlib.sha1)
        assert relay["credential"] == base64.b64encode(digest.digest()).decode()


async def test_two_aiortc_peers_relay_only_over_coturn(turn_roomsvc: ServerProcess,
                                                       app_id: str) -> None:  # fmt: skip
    result = await connect_pair(turn_roomsvc, app_id, relay_only=True)
    assert_played(result)
    candidates = result["offer_candidates"]
    assert candidates and all(" typ relay" in c for c in candidates), candidates
