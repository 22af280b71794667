"""On one socket the versions of a room only ever increase, across replies and pushes (docs/spec.md
§6).

A socket that calls methods on a room while other sockets change that same room sees the room
both in its replies and in `roomStatus` pushes. A push must never show a version older than,
or equal to, one this socket has already been shown (by a reply or a push), and a reply never
shows one older than what was already pushed. Real server, real `websockets` clients.
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.raw_socket import Feed, open_feed
from tests.support import ServerProcess, ValkeyProcess, auth

ESTABLISHED, FAILED = "CONNECTION_ESTABLISHED", "CONNECTION_FAILED"
ROUNDS = 40  # calls per socket; many pushes and replies interleave on the observed socket


@pytest.fixture(scope="module")
def busy_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    # The default request rate (20/s) would refuse the calls this test makes back to back.
    process = ServerProcess(valkey.url, env={"ROOMSVC_WS_RATE_PER_SECOND": "10000"}).start()
    yield process
    process.stop()


def shown_versions(feed: Feed, room_id: str) -> list[tuple[str, int]]:
    """("push"|"reply", version) of `room_id`, in the order the socket received them."""
    seen: list[tuple[str, int]] = []
    for message in feed.messages:
        if message.get("method") == "roomStatus" and message["params"]["roomId"] == room_id:
            seen.append(("push", message["params"]["roomStatusVersion"]))
        result = message.get("result")
        if "method" not in message and isinstance(result, dict) and result.get("roomId") == room_id:
            version = result.get("roomStatusVersion", result.get("statusVersion"))
            seen.append(("reply", version))
    return seen


def order_violations(seen: list[tuple[str, int]]) -> list[str]:
    """A push must show a newer version than anything shown before; a reply not an older one."""
    violations = []
    newest = 0
    for index, (kind, version) in enumerate(seen):
        if (kind == "push" and version <= newest) or (kind == "reply" and version < newest):
            violations.append(f"#{index} {kind} v{version} after v{newest}")
        newest = max(newest, version)
    return violations


async def call(feed: Feed, request_id: str, method: str, **params: Any) -> dict[str, Any]:
    reply = await feed.call(method, request_id, **params)
    assert "result" in reply, reply
    return dict(reply["result"])


async def hammer(feed: Feed, name: str, room_id: str, peer: str, rounds: int) -> None:
    """`rounds` reportStatus changes, two in flight at a time, as fast as the server answers."""
    for n in range(0, rounds, 2):
        await asyncio.gather(*(
            call(feed, f"{name}-{k}", "rooms.reportStatus", roomId=room_id,
                 body={"updates": [{"participantId": peer,
                                    "status": ESTABLISHED if k % 4 < 2 else FAILED}]})
            for k in (n, n + 1)
        ))  # fmt: skip


async def test_versions_only_increase_across_replies_and_pushes(
    busy_server: ServerProcess, app_id: str
) -> None:
    """One socket mutates and reads a room while three others mutate it concurrently: every
    version that socket is shown (reply or push) is newer than the last, a read's reply aside,
    which may repeat the newest."""
    players = ["ana", "bo", "cy", "dee"]
    async with httpx.AsyncClient(base_url=busy_server.base_url, timeout=30) as rest:
        created = await rest.post("/games/v1/rooms/create", headers=auth("ana", app_id),
                                  json={"invitedPlayerIds": players[1:]})  # fmt: skip
        assert created.status_code == 200, created.text
        room_id = created.json()["roomId"]
        for player in players[1:]:
            joined = await rest.post(f"/games/v1/rooms/{room_id}/join", json={},
                                     headers=auth(player, app_id))  # fmt: skip
            assert joined.status_code == 200, joined.text
        pids = {p["player"]["playerId"]: p["id"] for p in joined.json()["participants"]}
        feeds = {player: await open_feed(busy_server, player, app_id) for player in players}
        ana = feeds["ana"]

        async def observe() -> None:
            for n in range(ROUNDS):
                status = ESTABLISHED if n % 4 < 2 else FAILED
                body = {"updates": [{"participantId": pids["bo"], "status": status}]}
                await call(ana, f"ana-r{n}", "rooms.reportStatus", roomId=room_id, body=body)
                await call(ana, f"ana-g{n}", "rooms.get", roomId=room_id)

        await asyncio.gather(
            observe(),
            *(hammer(feeds[p], p, room_id, pids["ana"], ROUNDS) for p in players[1:]),
        )
        # A last change made over REST, so no socket was shown it by a reply: once a socket
        # has its push, every earlier push has arrived (pushes of one room go out in order).
        body = {"updates": [{"participantId": pids["ana"], "status": FAILED}]}
        last = await rest.post(f"/games/v1/rooms/{room_id}/reportstatus", json=body,
                               headers=auth("bo", app_id))  # fmt: skip
        assert last.status_code == 200, last.text
        final = last.json()["statusVersion"]
    for feed in feeds.values():
        await feed.until(
            lambda m: m.get("method") == "roomStatus" and m["params"]["roomStatusVersion"] >= final
        )
    seen = shown_versions(ana, room_id)
    kinds = [kind for kind, _ in seen]
    assert ("push", "reply") in itertools.pairwise(kinds)  # pushes and replies did interleave
    assert ("reply", "push") in itertools.pairwise(kinds)
    assert order_violations(seen) == [], json.dumps(seen)
    for feed in feeds.values():
        await feed.ws.close()
