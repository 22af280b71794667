"""Auto-matching through the REST API (docs/spec.md §4, §5): two real server processes on one store,
each running its own matcher, with players spread over both."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.support import ServerProcess, ValkeyProcess, auth, eventually, wait_until

ROOMS = "/games/v1/rooms"
Json = dict[str, Any]


@pytest.fixture(scope="module")
def second(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    """A second `roomsvc serve` on the same store: its matcher competes with the first's."""
    process = ServerProcess(valkey.url).start()
    yield process
    process.stop()


@pytest.fixture
async def http2(second: ServerProcess) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=second.base_url, timeout=30) as client:
        yield client


def criteria(low: int, high: int, mask: int = 0) -> Json:
    return {
        "minAutoMatchingPlayers": low,
        "maxAutoMatchingPlayers": high,
        "exclusiveBitmask": str(mask),
    }


async def create(client: httpx.AsyncClient, player: str, app: str, **body: Any) -> Json:
    reply = await client.post(f"{ROOMS}/create", json=body, headers=auth(player, app))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def get(client: httpx.AsyncClient, player: str, app: str, room_id: str) -> Json:
    reply = await client.get(f"{ROOMS}/{room_id}", headers=auth(player, app))
    assert reply.status_code == 200, reply.text
    return reply.json()


async def matched(client: httpx.AsyncClient, player: str, app: str, room_id: str) -> Json:
    """The room the player ended up in once its own ticket closed."""

    async def closed() -> Json | None:
        room = await get(client, player, app, room_id)
        if room["status"] == "ROOM_AUTO_MATCHING" or room["status"] == "ROOM_INVITING":
            return None
        return room

    room = await eventually(closed)
    if "mergedIntoRoomId" in room:
        return await get(client, player, app, room["mergedIntoRoomId"])
    return room


def by_status(room: Json) -> list[str]:
    return sorted(p["status"] for p in room["participants"])


async def test_invitations_plus_auto_match_slots_the_host_never_moves(
    http: httpx.AsyncClient, http2: httpx.AsyncClient, app_id: str
) -> None:
    """A host with an invitee keeps its room; two seekers move in and are anonymous to all."""
    host = await create(
        http, "alice", app_id, invitedPlayerIds=["bob"], autoMatchingCriteria=criteria(2, 2)
    )
    assert host["status"] == "ROOM_INVITING"
    assert host["autoMatchingStatus"]["kind"] == "games#roomAutoMatchStatus"
    # each seeker meets alice, bob and the other seeker: three others
    carol = await create(http2, "carol", app_id, autoMatchingCriteria=criteria(1, 3))
    dave = await create(http, "dave", app_id, autoMatchingCriteria=criteria(3, 3))
    assert carol["status"] == dave["status"] == "ROOM_AUTO_MATCHING"

    carol_room = await matched(http2, "carol", app_id, carol["roomId"])
    dave_room = await matched(http, "dave", app_id, dave["roomId"])
    assert carol_room["roomId"] == dave_room["roomId"] == host["roomId"]

    tomb = await get(http2, "carol", app_id, carol["roomId"])
    assert tomb["status"] == "ROOM_DELETED" and tomb["mergedIntoRoomId"] == host["roomId"]

    seen_by_alice = await get(http2, "alice", app_id, host["roomId"])
    assert "mergedIntoRoomId" not in seen_by_alice
    assert seen_by_alice["status"] == "ROOM_INVITING"  # bob still has to answer
    assert "autoMatchingStatus" not in seen_by_alice
    people = {p.get("player", {}).get("playerId"): p for p in seen_by_alice["participants"]}
    assert people["alice"]["player"]["playerId"] == "alice"
    assert people["bob"]["status"] == "PARTICIPANT_INVITED" and "autoMatched" not in people["bob"]
    strangers = [p for p in seen_by_alice["participants"] if p.get("autoMatched")]
    assert len(strangers) == 2 and all("player" not in p for p in strangers)
    assert all(p["status"] == "PARTICIPANT_JOINED" for p in strangers)
    names = {p["autoMatchedPlayer"]["displayName"] for p in strangers}
    assert len(names) == 2 and all(n.startswith("Player ") for n in names)
    assert all(p["autoMatchedPlayer"]["kind"] == "games#anonymousPlayer" for p in strangers)

    # to an auto-matched player everyone else is anonymous, under the same stable names
    seen_by_carol = carol_room
    me = [p for p in seen_by_carol["participants"] if "player" in p]
    assert [p["player"]["playerId"] for p in me] == ["carol"]
    others = [p for p in seen_by_carol["participants"] if p.get("autoMatched")]
    assert len(others) == 3
    assert names - {p["autoMatchedPlayer"]["displayName"] for p in others} == {
        next(p["autoMatchedPlayer"]["displayName"] for p in strangers if p["id"] == me[0]["id"])
    }

    # the invitation still works: bob joins the host's room
    joined = await http.post(f"{ROOMS}/{host['roomId']}/join", json={}, headers=auth("bob", app_id))
    assert joined.status_code == 200 and joined.json()["status"] == "ROOM_CONNECTING"
    assert by_status(joined.json()) == ["PARTICIPANT_JOINED"] * 4


async def test_four_seekers_with_clashing_roles(
    http: httpx.AsyncClient, http2: httpx.AsyncClient, app_id: str
) -> None:
    """Roles AND to zero: the second player of role 1 is left for a later room."""
    roles = [("p1", 1, http), ("p2", 2, http2), ("q1", 1, http), ("p4", 4, http2)]
    rooms = {}
    for player, mask, client in roles:
        rooms[player] = await create(
            client, player, app_id, autoMatchingCriteria=criteria(2, 2, mask), variant=7
        )
    game = await matched(http, "p1", app_id, rooms["p1"]["roomId"])
    assert game["variant"] == 7 and by_status(game) == ["PARTICIPANT_JOINED"] * 3
    assert game["roomId"] == rooms["p1"]["roomId"]  # the oldest seeker's room
    for player in ("p2", "p4"):
        tomb = await get(http, player, app_id, rooms[player]["roomId"])
        assert tomb["mergedIntoRoomId"] == game["roomId"]
    waiting = await get(http2, "q1", app_id, rooms["q1"]["roomId"])
    assert waiting["status"] == "ROOM_AUTO_MATCHING"
    q1_in_game = await http.get(f"{ROOMS}/{game['roomId']}", headers=auth("q1", app_id))
    assert q1_in_game.status_code == 404

    # a player of role 2 arriving in another variant does not complete q1's room...
    other_variant = await create(
        http2, "r2", app_id, autoMatchingCriteria=criteria(1, 1, 2), variant=8
    )
    # ...but one in q1's variant, with a compatible criteria, does
    s2 = await create(http2, "s2", app_id, autoMatchingCriteria=criteria(1, 2, 2), variant=7)
    s4 = await create(http, "s4", app_id, autoMatchingCriteria=criteria(2, 2, 4), variant=7)
    second_game = await matched(http2, "q1", app_id, rooms["q1"]["roomId"])
    assert second_game["roomId"] == rooms["q1"]["roomId"]
    assert by_status(second_game) == ["PARTICIPANT_JOINED"] * 3
    for player, room in (("s2", s2), ("s4", s4)):
        tomb = await get(http, player, app_id, room["roomId"])
        assert tomb["mergedIntoRoomId"] == second_game["roomId"]
    assert (await get(http, "r2", app_id, other_variant["roomId"]))["status"] == (
        "ROOM_AUTO_MATCHING"
    )


async def test_a_withdrawn_ticket_is_never_matched(
    http: httpx.AsyncClient, http2: httpx.AsyncClient, app_id: str
) -> None:
    """A seeker who left is skipped: the next two seekers match each other, not it."""
    gone = await create(http, "gone", app_id, autoMatchingCriteria=criteria(1, 1))
    left = await http.post(f"{ROOMS}/{gone['roomId']}/leave", json={}, headers=auth("gone", app_id))
    assert left.status_code == 200 and left.json()["status"] == "ROOM_DELETED"
    first = await create(http2, "first", app_id, autoMatchingCriteria=criteria(1, 1))
    later = await create(http, "later", app_id, autoMatchingCriteria=criteria(1, 1))
    game = await matched(http2, "first", app_id, first["roomId"])
    assert game["roomId"] == first["roomId"]
    assert (await get(http, "later", app_id, later["roomId"]))["mergedIntoRoomId"] == first[
        "roomId"
    ]
    tomb = await get(http2, "gone", app_id, gone["roomId"])
    assert "mergedIntoRoomId" not in tomb
    assert [p["leaveReason"] for p in tomb["participants"]] == ["PLAYER_LEFT"]
    refused = await http.get(f"{ROOMS}/{first['roomId']}", headers=auth("gone", app_id))
    assert refused.status_code == 404


async def test_wait_estimate_comes_from_the_pool(
    http: httpx.AsyncClient, http2: httpx.AsyncClient, app_id: str
) -> None:
    """After matches in a pool, a waiting room shows the pool's waitEstimateSeconds."""
    fresh = await create(http, "lonely", app_id, autoMatchingCriteria=criteria(5, 5), variant=3)
    assert "waitEstimateSeconds" not in fresh["autoMatchingStatus"]  # no waits known yet
    for n in range(2):
        a = await create(http, f"a{n}", app_id, autoMatchingCriteria=criteria(1, 1), variant=3)
        await create(http2, f"b{n}", app_id, autoMatchingCriteria=criteria(1, 1), variant=3)
        await matched(http, f"a{n}", app_id, a["roomId"])

    async def estimated() -> Json | None:
        room = await get(http, "lonely", app_id, fresh["roomId"])
        return room if "waitEstimateSeconds" in room["autoMatchingStatus"] else None

    room = await eventually(estimated)
    assert room["status"] == "ROOM_AUTO_MATCHING"
    assert room["autoMatchingStatus"]["waitEstimateSeconds"] >= 0


def test_an_unmatched_ticket_ends_with_timeout(valkey: ValkeyProcess, app_id: str) -> None:
    """With a 1 s auto-match timeout, a lone seeker's room ends with leaveReason TIMEOUT, and
    its expired ticket is never matched with a later seeker."""
    server = ServerProcess(valkey.url, env={"ROOMSVC_AUTOMATCH_TIMEOUT_SECONDS": "1"}).start()
    try:
        with httpx.Client(base_url=server.base_url, timeout=30) as client:
            body = {"autoMatchingCriteria": criteria(1, 1)}
            lone = client.post(f"{ROOMS}/create", json=body, headers=auth("lone", app_id)).json()

            def ended(player: str, room_id: str) -> Json | None:
                room = client.get(f"{ROOMS}/{room_id}", headers=auth(player, app_id)).json()
                return room if room["status"] == "ROOM_DELETED" else None

            room = wait_until(lambda: ended("lone", lone["roomId"]))
            assert "mergedIntoRoomId" not in room
            (owner,) = room["participants"]
            assert owner["status"] == "PARTICIPANT_LEFT" and owner["leaveReason"] == "TIMEOUT"

            late = client.post(f"{ROOMS}/create", json=body, headers=auth("late", app_id)).json()
            late_room = wait_until(lambda: ended("late", late["roomId"]))
            assert "mergedIntoRoomId" not in late_room
            assert [p["leaveReason"] for p in late_room["participants"]] == ["TIMEOUT"]
    finally:
        server.stop()
