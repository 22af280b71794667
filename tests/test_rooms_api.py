"""The rooms API over real HTTP against a real server and store (docs/spec.md §2, §3, §4), driven by
Google's own API client where it can be, and by raw HTTP for what that client never sends."""

from __future__ import annotations

import json
import time

import httpx
import pytest
from googleapiclient.errors import HttpError

from roomsvc.auth.tokens import SCOPE_GAMES_LITE
from roomsvc.client import CallError
from tests.messaging import players
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, token, wait_until

ROOMS = "/games/v1/rooms"


def as_error(exc: HttpError) -> dict:  # type: ignore[type-arg]
    return json.loads(exc.content)["error"]


def test_whole_invitation_game_through_google_client(google, app_id: str) -> None:  # type: ignore[no-untyped-def]
    """create -> list (paged) -> join/decline/dismiss -> reportStatus to ACTIVE -> get -> leave."""
    alice = google("alice", app_id, name="Alice")
    bob = google("bob", app_id, name="Bob")
    carol = google("carol", app_id, name="Carol")

    before = int(time.time() * 1000)
    room = alice.rooms().create(
        body={"kind": "games#roomCreateRequest", "invitedPlayerIds": ["bob", "carol"],
              "variant": 3, "requestId": "9007199254740993", "capabilities": ["voice"],
              "clientAddress": {"kind": "games#roomClientAddress", "xmppAddress": "a@x"}},
    ).execute()  # fmt: skip
    assert room["kind"] == "games#room" and room["applicationId"] == app_id
    assert room["status"] == "ROOM_INVITING" and room["roomStatusVersion"] == 1
    assert room["variant"] == 3 and room["description"] == "Your game room"
    assert "inviterId" not in room
    created = room["creationDetails"]
    assert created["kind"] == "games#roomModification"
    assert isinstance(created["modifiedTimestampMillis"], str)
    assert int(created["modifiedTimestampMillis"]) >= before
    by_status = {p["status"] for p in room["participants"]}
    assert by_status == {"PARTICIPANT_JOINED", "PARTICIPANT_INVITED"}
    me = next(p for p in room["participants"] if p["status"] == "PARTICIPANT_JOINED")
    assert created["participantId"] == me["id"]
    assert me["kind"] == "games#roomParticipant"
    assert me["player"] == {"kind": "games#player", "playerId": "alice", "displayName": "Alice"}
    assert me["capabilities"] == ["voice"]
    assert me["clientAddress"] == {"kind": "games#roomClientAddress", "xmppAddress": "a@x"}
    room_id = room["roomId"]

    # a second invitation to bob, to page through the inbox one item at a time
    other = alice.rooms().create(body={"invitedPlayerIds": ["bob"]}).execute()
    listing = bob.rooms().list(maxResults=1, language="es").execute()
    assert listing["kind"] == "games#roomList" and len(listing["items"]) == 1
    first = listing["items"][0]
    assert first["roomId"] == room_id
    assert first["description"] == "Alice te invitó a jugar"
    assert first["inviterId"] == me["id"]
    page2 = bob.rooms().list_next(bob.rooms().list(maxResults=1), listing).execute()
    assert [r["roomId"] for r in page2["items"]] == [other["roomId"]]
    assert "nextPageToken" not in page2

    assert bob.rooms().dismiss(roomId=other["roomId"]).execute() == ""
    remaining = bob.rooms().list().execute()
    assert [r["roomId"] for r in remaining["items"]] == [room_id]

    joined = bob.rooms().join(roomId=room_id, body={"kind": "games#roomJoinRequest"}).execute()
    assert joined["roomStatusVersion"] == 2 and joined["status"] == "ROOM_INVITING"
    declined = carol.rooms().decline(roomId=room_id).execute()
    assert declined["roomStatusVersion"] == 3 and declined["status"] == "ROOM_CONNECTING"
    ids = {p["player"]["playerId"]: p["id"] for p in declined["participants"]}

    status = alice.rooms().reportStatus(
        roomId=room_id,
        body={"kind": "games#roomP2PStatuses", "updates": [
            {"kind": "games#roomP2PStatus", "participantId": ids["bob"],
             "status": "CONNECTION_ESTABLISHED", "connectionSetupLatencyMillis": 12}]},
    ).execute()  # fmt: skip
    assert status["kind"] == "games#roomStatus"
    assert status["statusVersion"] == 4 and status["status"] == "ROOM_CONNECTING"
    status = (
        bob.rooms()
        .reportStatus(
            roomId=room_id,
            body={"updates": [{"participantId": ids["alice"], "status": "CONNECTION_ESTABLISHED"}]},
        )
        .execute()
    )
    assert status["statusVersion"] == 5 and status["status"] == "ROOM_ACTIVE"
    connected = {p["id"]: p.get("connected") for p in status["participants"]}
    assert connected[ids["alice"]] and connected[ids["bob"]] and not connected[ids["carol"]]

    got = carol.rooms().get(roomId=room_id, language="hi").execute()
    assert got["roomStatusVersion"] == 5 and got["description"] == "Alice का गेम रूम"
    last = got["lastUpdateDetails"]
    assert last["participantId"] == ids["bob"]

    left = alice.rooms().leave(roomId=room_id, body={"reason": "REALTIME_PEER_CONNECTION_FAILURE"})
    left = left.execute()
    assert left["status"] == "ROOM_ACTIVE" and left["roomStatusVersion"] == 6
    mine = next(p for p in left["participants"] if p["id"] == ids["alice"])
    assert mine["status"] == "PARTICIPANT_LEFT" and mine["leaveReason"] == "PEER_CONNECTION_FAILURE"
    gone = bob.rooms().leave(roomId=room_id, body={"kind": "games#roomLeaveRequest"}).execute()
    assert gone["status"] == "ROOM_DELETED" and gone["roomStatusVersion"] == 7
    assert bob.rooms().get(roomId=room_id).execute()["status"] == "ROOM_DELETED"  # tombstone


def test_create_is_idempotent_by_request_id(google, app_id: str) -> None:  # type: ignore[no-untyped-def]
    """A retried create with the same requestId (string or number) returns the same room."""
    alice = google("alice", app_id)
    first = alice.rooms().create(body={"invitedPlayerIds": ["bob"], "requestId": "42"}).execute()
    again = alice.rooms().create(body={"invitedPlayerIds": ["bob"], "requestId": 42}).execute()
    assert again["roomId"] == first["roomId"] and again["roomStatusVersion"] == 1
    other = google("dave", app_id)
    theirs = other.rooms().create(body={"invitedPlayerIds": ["bob"], "requestId": "42"}).execute()
    assert theirs["roomId"] != first["roomId"]  # per player


def test_illegal_transitions_are_409_with_localized_messages(google, app_id: str) -> None:  # type: ignore[no-untyped-def]
    """join twice, decline after joining, leave twice: 409 in the caller's language."""
    alice = google("alice", app_id)
    bob = google("bob", app_id)
    room_id = alice.rooms().create(body={"invitedPlayerIds": ["bob"]}).execute()["roomId"]
    bob.rooms().join(roomId=room_id, body={}).execute()
    with pytest.raises(HttpError) as info:
        bob.rooms().join(roomId=room_id, body={}, language="es").execute()
    error = as_error(info.value)
    assert error["code"] == 409 and error["status"] == "ABORTED"
    assert error["errors"][0] == {"domain": "global", "reason": "conflict",
                                  "message": error["message"]}  # fmt: skip
    assert error["message"] == (
        "Solo un participante invitado puede unirse; usted está en PARTICIPANT_JOINED."
    )
    with pytest.raises(HttpError) as info:
        bob.rooms().decline(roomId=room_id, language="hi-IN").execute()
    assert info.value.resp.status == 409
    assert "केवल आमंत्रित प्रतिभागी" in as_error(info.value)["message"]
    bob.rooms().leave(roomId=room_id, body={}).execute()
    with pytest.raises(HttpError) as info:
        bob.rooms().leave(roomId=room_id, body={}).execute()
    assert info.value.resp.status == 409


def test_deleted_room_cannot_be_joined(google, app_id: str) -> None:  # type: ignore[no-untyped-def]
    """An invitee joining after the creator left an unjoined room gets 409."""
    alice = google("alice", app_id)
    bob = google("bob", app_id)
    room_id = alice.rooms().create(body={"invitedPlayerIds": ["bob"]}).execute()["roomId"]
    assert alice.rooms().leave(roomId=room_id, body={}).execute()["status"] == "ROOM_DELETED"
    with pytest.raises(HttpError) as info:
        bob.rooms().join(roomId=room_id, body={}).execute()
    assert info.value.resp.status == 409
    assert bob.rooms().list().execute().get("items", []) == []  # not pending any more


async def test_strangers_and_other_applications_get_404(
    http: httpx.AsyncClient, app_id: str
) -> None:
    """A room does not exist for a non-participant, nor for the same player of another app."""
    created = await http.post(f"{ROOMS}/create", json={"invitedPlayerIds": ["bob"]},
                              headers=auth("alice", app_id))  # fmt: skip
    room_id = created.json()["roomId"]
    for headers in (auth("mallory", app_id), auth("alice", app_id + "-other")):
        for call in (http.get(f"{ROOMS}/{room_id}", headers=headers),
                     http.post(f"{ROOMS}/{room_id}/join", json={}, headers=headers),
                     http.post(f"{ROOMS}/{room_id}/dismiss", headers=headers)):  # fmt: skip
            response = await call
            assert response.status_code == 404
            assert response.json()["error"]["errors"][0]["reason"] == "notFound"
    missing = await http.get(f"{ROOMS}/nope", headers=auth("alice", app_id))
    assert missing.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"invitedPlayerIds": "bob"}, "invitedPlayerIds"),
        ({"invitedPlayerIds": ["bob"], "variant": "x"}, "variant"),
        ({"autoMatchingCriteria": {"minAutoMatchingPlayers": "two"}},
         "autoMatchingCriteria.minAutoMatchingPlayers"),
        ({"autoMatchingCriteria": {"minAutoMatchingPlayers": 1, "exclusiveBitmask": "z"}},
         "autoMatchingCriteria.exclusiveBitmask"),
        ({}, "invitedPlayerIds"),
        ({"invitedPlayerIds": ["bob", "bob"]}, "invitedPlayerIds"),
        ({"invitedPlayerIds": ["alice"]}, "invitedPlayerIds"),
        ({"autoMatchingCriteria": {"minAutoMatchingPlayers": 3, "maxAutoMatchingPlayers": 2}},
         "autoMatchingCriteria.maxAutoMatchingPlayers"),
    ],
)  # fmt: skip
async def test_bad_create_bodies_are_400_naming_the_field(
    http: httpx.AsyncClient,
    app_id: str,
    body: dict,
    field: str,  # type: ignore[type-arg]
) -> None:
    """Wrong types and broken rules give 400 INVALID_ARGUMENT whose message names the field."""
    response = await http.post(f"{ROOMS}/create", json=body, headers=auth("alice", app_id))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and field in error["message"]


async def test_body_format_errors(http: httpx.AsyncClient, app_id: str) -> None:
    """Not JSON by content type: 415; malformed JSON: 400; over the size limit: 413."""
    headers = auth("alice", app_id)
    response = await http.post(f"{ROOMS}/create", content=b"invitedPlayerIds=bob",
                               headers={**headers, "Content-Type": "text/plain"})  # fmt: skip
    assert response.status_code == 415
    response = await http.post(f"{ROOMS}/create", content=b'{"invitedPlayerIds": [',
                               headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 400
    huge = json.dumps({"invitedPlayerIds": ["bob"], "pad": "x" * (1 << 20)})
    response = await http.post(f"{ROOMS}/create", content=huge,
                               headers={**headers, "Content-Type": "application/json"})  # fmt: skip
    assert response.status_code == 413
    listing = await http.get(ROOMS, headers=headers)
    assert listing.json().get("items", []) == []  # nothing was half-created


async def test_int64_fields_travel_as_strings(http: httpx.AsyncClient, app_id: str) -> None:
    """exclusiveBitmask and requestId are accepted as numbers or strings, returned as strings;
    unknown fields are ignored."""
    body = {"autoMatchingCriteria": {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 2,
                                     "exclusiveBitmask": 9007199254740993},
            "requestId": "123", "someFutureField": {"x": 1}}  # fmt: skip
    response = await http.post(f"{ROOMS}/create", json=body, headers=auth("alice", app_id))
    assert response.status_code == 200, response.text
    criteria = response.json()["autoMatchingCriteria"]
    assert criteria == {
        "kind": "games#roomAutoMatchingCriteria",
        "minAutoMatchingPlayers": 1,
        "maxAutoMatchingPlayers": 2,
        "exclusiveBitmask": "9007199254740993",
    }
    assert response.json()["status"] == "ROOM_AUTO_MATCHING"
    assert response.json()["autoMatchingStatus"]["kind"] == "games#roomAutoMatchStatus"


async def test_auth_and_scopes(http: httpx.AsyncClient, app_id: str) -> None:
    """No/expired/bad token: 401 with WWW-Authenticate: Bearer; games_lite on rooms: 403;
    the token is also accepted from ?access_token= and ?oauth_token=."""
    for headers in ({}, {"Authorization": "Bearer nope"},
                    {"Authorization": f"Bearer {token('alice', app_id, ttl=-60)}"}):  # fmt: skip
        response = await http.get(ROOMS, headers=headers)
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Bearer")
    lite = auth("alice", app_id, scopes=(SCOPE_GAMES_LITE,))
    response = await http.get(ROOMS, headers=lite)
    assert response.status_code == 403 and response.json()["error"]["status"] == "PERMISSION_DENIED"
    for name in ("access_token", "oauth_token"):
        response = await http.get(ROOMS, params={name: token("alice", app_id)})
        assert response.status_code == 200


async def test_list_parameters_are_validated(http: httpx.AsyncClient, app_id: str) -> None:
    """maxResults outside 1..500 and an unreadable pageToken are 400s naming the parameter."""
    headers = auth("bob", app_id)
    for value in ("0", "501", "ten"):
        response = await http.get(ROOMS, params={"maxResults": value}, headers=headers)
        assert response.status_code == 400 and "maxResults" in response.json()["error"]["message"]
    response = await http.get(ROOMS, params={"pageToken": "%%%"}, headers=headers)
    assert response.status_code == 400 and "pageToken" in response.json()["error"]["message"]


async def test_google_global_parameters_are_accepted(http: httpx.AsyncClient, app_id: str) -> None:
    """alt, key, quotaUser, userIp are accepted; fields selects; prettyPrint indents."""
    headers = auth("alice", app_id)
    created = await http.post(
        f"{ROOMS}/create", json={"invitedPlayerIds": ["bob"]}, headers=headers
    )
    room_id = created.json()["roomId"]
    response = await http.get(
        f"{ROOMS}/{room_id}",
        params={"alt": "json", "key": "k", "quotaUser": "q", "userIp": "1.2.3.4",
                "fields": "roomId,participants(id,status)", "prettyPrint": "true"},
        headers=headers,
    )  # fmt: skip
    assert response.status_code == 200
    assert response.text.startswith("{\n")
    body = response.json()
    assert set(body) == {"roomId", "participants"}
    assert all(set(p) == {"id", "status"} for p in body["participants"])
    response = await http.post(f"{ROOMS}/{room_id}/dismiss", headers={**auth("bob", app_id),
                               "Accept": "*/*"})  # fmt: skip
    assert response.status_code == 204 and response.content == b""


async def test_room_keys_expire_as_tombstones(
    http: httpx.AsyncClient,
    store,
    app_id: str,  # type: ignore[no-untyped-def]
) -> None:
    """A DELETED room stays readable for ROOMSVC_TOMBSTONE_SECONDS, then its keys expire."""
    headers = auth("alice", app_id)
    created = await http.post(
        f"{ROOMS}/create", json={"invitedPlayerIds": ["bob"]}, headers=headers
    )
    room_id = created.json()["roomId"]
    live_ttl = await store.pttl(f"rs:{{r:{app_id}:{room_id}}}")
    await http.post(f"{ROOMS}/{room_id}/leave", json={}, headers=headers)
    tomb_ttl = await store.pttl(f"rs:{{r:{app_id}:{room_id}}}")
    assert 0 < tomb_ttl <= 3600 * 1000 < live_ttl


def test_unanswered_invitation_times_out_without_any_request(google) -> None:  # type: ignore[no-untyped-def]
    """With a 1 s invite timeout the background timer declines the invitee and deletes the room;
    the change is one version step."""
    # A store of its own keeps this test's timer sweep apart from the other servers' rooms.
    own_store = ValkeyProcess().start()
    with_timeout = ServerProcess(own_store.url, env={"ROOMSVC_INVITE_TIMEOUT_SECONDS": "1"})
    with_timeout.start()
    try:
        alice = google("alice", "timeouts", base_url=with_timeout.base_url)
        room = alice.rooms().create(body={"invitedPlayerIds": ["bob"]}).execute()

        def deleted() -> bool:
            got = alice.rooms().get(roomId=room["roomId"]).execute()
            return bool(got["status"] == "ROOM_DELETED")

        wait_until(deleted, timeout=100 * UNIT)
        got = alice.rooms().get(roomId=room["roomId"]).execute()
        assert got["roomStatusVersion"] == 2
        bob = next(p for p in got["participants"] if p["player"]["playerId"] == "bob")
        assert bob["status"] == "PARTICIPANT_DECLINED"
    finally:
        with_timeout.stop()
        own_store.stop()


async def test_out_of_range_integers_are_400_naming_the_field(
    http: httpx.AsyncClient, server: ServerProcess, app_id: str
) -> None:
    """`variant` is int32 and `requestId` int64 (the discovery document): past either range is a
    400 naming the field over REST and -32602 on the socket, never a 500 from deeper in."""
    cases = [({"variant": 2**64}, "variant"), ({"variant": 2**31}, "variant"),
             ({"requestId": str(2**63)}, "requestId")]  # fmt: skip
    for body, field in cases:
        reply = await http.post(f"{ROOMS}/create", json=body, headers=auth("ivy", app_id))
        assert reply.status_code == 400, reply.text
        assert field in reply.json()["error"]["message"]
    async with players(server, app_id, "ivy") as (ivy,):
        for body, field in cases:
            with pytest.raises(CallError) as caught:
                await ivy.client.call("rooms.create", {"body": body})
            assert caught.value.code == -32602 and field in str(caught.value)
    ok = await http.post(
        f"{ROOMS}/create",
        json={"variant": 2**31 - 1, "invitedPlayerIds": ["jo"]},
        headers=auth("ivy", app_id),
    )
    assert ok.status_code == 200 and ok.json()["variant"] == 2**31 - 1
