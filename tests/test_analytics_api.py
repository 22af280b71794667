"""AddEventBatch, AddEvent and anonymous sessions through a real server and store (docs/spec.md
§8)."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import Iterator
from typing import Any

import httpx
import jwt
import pytest
import redis.asyncio as aioredis

from roomsvc.analytics.service import ANONYMOUS_AUDIENCE, anonymous_key
from roomsvc.settings import Settings
from roomsvc.store import keys
from roomsvc.store.embedded import free_port
from tests.support import (
    JWT_SECRET,
    ServerProcess,
    ValkeyProcess,
    auth,
    running_server,
    token,
)

OK = {"StatusCode": 0, "Severity": 1, "StatusMessage": "OK", "Content": True}


def item(i: int, event: str = "Navigation") -> dict[str, Any]:
    return {
        "Timestamp": str(1_700_000_000 + i),
        "Event": event,
        "Data": [{"PageViewed": f"page_{i}", "ProductId": "123"}, {"ButtonClicked": "b"}],
    }


def batch(app_id: str, n: int, player: str = "p1", **extra: Any) -> dict[str, Any]:
    return {"Token": token(player, app_id), "eventData": [item(i) for i in range(n)], **extra}


async def add(
    http: httpx.AsyncClient, body: Any, path: str = "AddEventBatch", **kw: Any
) -> httpx.Response:
    return await http.post(f"/analytics/v1/{path}", json=body, **kw)


async def stored(store: aioredis.Redis, app_id: str) -> list[dict[str, Any]]:
    entries = await store.xrange(keys.analytics_stream(app_id))
    return [json.loads(fields[b"item"]) for _, fields in entries]


async def stream_length(store: aioredis.Redis, app_id: str) -> int:
    return int(await store.xlen(keys.analytics_stream(app_id)))


async def test_batch_is_stored_whole_and_read_by_a_consumer_group(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """A batch lands in the app's stream in order, and a consumer group reads all of it."""
    key = keys.analytics_stream(app_id)
    await store.xgroup_create(key, "warehouse", id="$", mkstream=True)
    response = await add(http, batch(app_id, 5))
    assert response.status_code == 200
    assert response.json() == OK
    reply = await store.xreadgroup("warehouse", "c1", {key: ">"}, count=100)
    ((_, entries),) = reply
    docs = [json.loads(fields[b"item"]) for _, fields in entries]
    assert [d["Index"] for d in docs] == [0, 1, 2, 3, 4]
    assert [d["Timestamp"] for d in docs] == [(1_700_000_000 + i) * 1000 for i in range(5)]
    assert docs[3]["Data"] == item(3)["Data"]
    assert {(d["ApplicationId"], d["PlayerId"], d["Anonymous"]) for d in docs} == {
        (app_id, "p1", False)
    }
    assert await store.xack(key, "warehouse", *[entry_id for entry_id, _ in entries]) == 5
    assert await store.sismember(keys.ANALYTICS_APPS, app_id)


@pytest.mark.parametrize(
    ("bad", "field"),
    [
        ({"Timestamp": 1}, "Event"),
        ({"Timestamp": 1, "Event": ""}, "Event"),
        ({"Timestamp": "next tuesday", "Event": "x"}, "Timestamp"),
        ({"Timestamp": 1, "Event": "x", "Data": [{"k": {"nested": 1}}]}, "Data[0]"),
    ],
)
async def test_a_bad_item_stores_nothing(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str, bad: dict[str, Any], field: str
) -> None:
    """One bad item rejects the whole batch (400, StatusCode 11) naming its index and field."""
    body = batch(app_id, 4)
    body["eventData"][2] = bad
    response = await add(http, body)
    assert response.status_code == 400
    answer = response.json()
    assert (answer["StatusCode"], answer["Severity"], answer["Content"]) == (11, 3, False)
    assert "Item 2 of eventData" in answer["StatusMessage"]
    assert field in answer["StatusMessage"]
    assert await stream_length(store, app_id) == 0


async def test_a_retry_with_the_same_batch_id_stores_once(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """Sending a BatchId again is a no-op that still answers success."""
    first = await add(http, batch(app_id, 3, BatchId="offline-pool-1"))
    again = await add(http, batch(app_id, 3, BatchId="offline-pool-1"))
    assert first.json() == OK
    assert again.status_code == 200
    assert again.json()["StatusCode"] == 0
    assert again.json()["StatusMessage"] == "OK: this batch was already stored."
    assert await stream_length(store, app_id) == 3


async def test_ten_concurrent_retries_store_once(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """Ten copies of one batch racing each other store it exactly once."""
    body = batch(app_id, 50, BatchId="race")
    responses = await asyncio.gather(*(add(http, body) for _ in range(10)))
    assert {r.json()["StatusCode"] for r in responses} == {0}
    assert sum(r.json()["StatusMessage"] == "OK" for r in responses) == 1
    assert await stream_length(store, app_id) == 50


async def test_batch_ids_belong_to_their_caller(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """Two players choosing the same BatchId both get their batch stored."""
    await add(http, batch(app_id, 2, player="p1", BatchId="1"))
    await add(http, batch(app_id, 2, player="p2", BatchId="1"))
    assert await stream_length(store, app_id) == 4


async def test_without_batch_id_each_request_is_stored(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """Without a BatchId two identical requests are two batches."""
    await add(http, batch(app_id, 2))
    await add(http, batch(app_id, 2))
    assert await stream_length(store, app_id) == 4


async def test_over_the_item_limit_is_rejected_whole(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """1,001 items (default limit 1,000) is a 413 with StatusCode 13 and nothing stored."""
    response = await add(http, batch(app_id, 1001))
    assert response.status_code == 413
    assert response.json()["StatusCode"] == 13
    assert "1001" in response.json()["StatusMessage"]
    assert await stream_length(store, app_id) == 0


async def test_over_the_body_limit_is_rejected_whole(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """A body over 1 MiB is a 413 with StatusCode 14 and nothing stored."""
    body = batch(app_id, 10)
    for entry in body["eventData"]:
        entry["Data"] = [{"blob": "x" * 110_000}]
    response = await add(http, body)
    assert response.status_code == 413
    assert response.json()["StatusCode"] == 14
    assert await stream_length(store, app_id) == 0


async def test_media_info_is_attached_to_every_item(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """mediaInfo is decoded from base64 JSON and stored with each item."""
    media = {"MovieId": 35936, "MediaId": 1, "Duration": 5820}
    encoded = base64.b64encode(json.dumps(media).encode()).decode()
    assert (await add(http, batch(app_id, 3, mediaInfo=encoded))).json() == OK
    assert [d["MediaInfo"] for d in await stored(store, app_id)] == [media] * 3


@pytest.mark.parametrize(
    "media_info",
    ["eyJNb3ZpZUlkIjozNTkzNiwiTWVkaWFJZCI6 … XlsaXN0SWQ", base64.b64encode(b"[1]").decode()],
)
async def test_bad_media_info_is_a_clear_error(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str, media_info: str
) -> None:
    """mediaInfo that is not base64 of a JSON object is a 400 with StatusCode 12."""
    response = await add(http, batch(app_id, 2, mediaInfo=media_info))
    assert response.status_code == 400
    assert response.json()["StatusCode"] == 12
    assert "mediaInfo" in response.json()["StatusMessage"]
    assert await stream_length(store, app_id) == 0


async def anonymous_token(http: httpx.AsyncClient, app_id: str) -> str:
    response = await http.post("/analytics/v1/AnonymousSession", json={"ApplicationId": app_id})
    assert response.status_code == 200
    answer = response.json()
    assert answer["StatusCode"] == 0
    assert answer["Content"]["ApplicationId"] == app_id
    assert answer["Content"]["ExpiresIn"] > 0
    return str(answer["Content"]["Token"])


async def test_anonymous_sessions_send_events(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """An anonymous-session token works in the body's Token and as a bearer header."""
    anon = await anonymous_token(http, app_id)
    body = {"Token": anon, "eventData": [item(0)]}
    assert (await add(http, body)).json() == OK
    header_only = {"eventData": [item(1)]}
    headers = {"Authorization": f"Bearer {anon}"}
    assert (await add(http, header_only, headers=headers)).json() == OK
    docs = await stored(store, app_id)
    assert [(d["Anonymous"], d["PlayerId"]) for d in docs] == [(True, None), (True, None)]
    session = jwt.decode(anon, options={"verify_signature": False})["sub"]
    assert {d["SessionId"] for d in docs} == {session}


async def test_anonymous_session_needs_a_valid_application_id(http: httpx.AsyncClient) -> None:
    """AnonymousSession without a well-formed ApplicationId is a 400 with StatusCode 10."""
    for body in ({}, {"ApplicationId": "bad{id}"}):
        response = await http.post("/analytics/v1/AnonymousSession", json=body)
        assert response.status_code == 400
        assert response.json()["StatusCode"] == 10


def _anon_claims(app_id: str, exp: float) -> dict[str, Any]:
    return {"sub": "0" * 32, "app": app_id, "anon": True, "aud": ANONYMOUS_AUDIENCE,
            "exp": int(exp)}  # fmt: skip


async def test_forged_or_expired_anonymous_tokens_are_refused(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """An anonymous token signed with the player secret, or expired, is a 401 (StatusCode 20)."""
    forged = jwt.encode(_anon_claims(app_id, time.time() + 600), JWT_SECRET, algorithm="HS256")
    good = await anonymous_token(http, app_id)
    expired_claims = jwt.decode(good, options={"verify_signature": False})
    anon_key = anonymous_key(Settings(jwt_secret=JWT_SECRET))
    expired = jwt.encode({**expired_claims, "exp": int(time.time()) - 600}, anon_key)
    for bad, says in ((forged, "invalid"), (expired, "expired"), ("not-a-jwt", "malformed")):
        response = await add(http, {"Token": bad, "eventData": [item(0)]})
        assert response.status_code == 401
        assert says in response.json()["StatusMessage"]
        assert response.json()["StatusCode"] == 20
        assert "Bearer" in response.headers["www-authenticate"]
    assert await stream_length(store, app_id) == 0


async def test_a_token_is_required(http: httpx.AsyncClient, app_id: str) -> None:
    """No Token and no Authorization header is a 401 with StatusCode 20."""
    response = await add(http, {"eventData": [item(0)]})
    assert response.status_code == 401
    assert response.json()["StatusCode"] == 20
    assert "Token" in response.json()["StatusMessage"]


async def test_a_player_token_works_as_a_bearer_header(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """A player's token may travel in Authorization: Bearer instead of the body."""
    response = await add(http, {"eventData": [item(0)]}, headers=auth("p9", app_id))
    assert response.json() == OK
    assert [d["PlayerId"] for d in await stored(store, app_id)] == ["p9"]


async def test_the_body_token_wins_over_the_header(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """With a Token in the body, the Authorization header (even a non-Bearer one) is unused."""
    headers = {"Authorization": "Basic dXNlcjpwYXNz"}
    assert (await add(http, batch(app_id, 1, player="body"), headers=headers)).json() == OK
    assert [d["PlayerId"] for d in await stored(store, app_id)] == ["body"]


async def test_a_player_token_without_a_games_scope_is_forbidden(
    http: httpx.AsyncClient, app_id: str
) -> None:
    """A valid player token lacking games/games_lite is a 403 with StatusCode 21."""
    body = {"Token": token("p1", app_id, scopes=("email",)), "eventData": [item(0)]}
    response = await add(http, body)
    assert response.status_code == 403
    assert response.json()["StatusCode"] == 21


@pytest.mark.parametrize(
    ("params", "headers", "expected"),
    [
        ({"language": "es"}, {}, "Elemento 1 de eventData"),
        ({}, {"Accept-Language": "es-419,en;q=0.5"}, "Elemento 1 de eventData"),
        ({"language": "hi-IN"}, {}, "eventData का आइटम 1"),
        ({}, {"Accept-Language": "hi"}, "eventData का आइटम 1"),
    ],
)
async def test_error_messages_are_localized(
    http: httpx.AsyncClient,
    app_id: str,
    params: dict[str, str],
    headers: dict[str, str],
    expected: str,
) -> None:
    """The bad item's message comes in Spanish or Hindi, from `language` or Accept-Language."""
    body = batch(app_id, 2)
    body["eventData"][1]["Event"] = ""
    response = await add(http, body, params=params, headers=headers)
    assert response.status_code == 400
    message = response.json()["StatusMessage"]
    assert expected in message
    assert "Event" in message


async def test_success_message_is_localized(http: httpx.AsyncClient, app_id: str) -> None:
    """StatusMessage of a success is localized too."""
    response = await add(http, batch(app_id, 1), params={"language": "hi"})
    assert response.json()["StatusMessage"] == "ठीक है"


@pytest.mark.parametrize(
    "body",
    [
        {"eventData": {"Timestamp": 1, "Event": "Play"}},
        {"eventData": [{"Timestamp": 1, "Event": "Play"}]},
        {"Timestamp": 1, "Event": "Play", "Data": [{"k": "v"}]},
    ],
)
async def test_add_event_stores_one_item(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str, body: dict[str, Any]
) -> None:
    """AddEvent takes one item as eventData (object or list of one) or at the top level."""
    response = await add(http, {"Token": token("p1", app_id), **body}, path="AddEvent")
    assert response.json() == OK
    assert [d["Event"] for d in await stored(store, app_id)] == ["Play"]


async def test_add_event_refuses_several_items(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """AddEvent with two items is a 400 with StatusCode 10 and nothing stored."""
    response = await add(http, batch(app_id, 2), path="AddEvent")
    assert response.status_code == 400
    assert response.json()["StatusCode"] == 10
    assert await stream_length(store, app_id) == 0


async def test_bodies_that_are_not_json_are_refused(http: httpx.AsyncClient, app_id: str) -> None:
    """Broken JSON is a 400 (StatusCode 10); a non-JSON content type is a 415 (StatusCode 15)."""
    broken = await http.post("/analytics/v1/AddEventBatch", content=b"{nope",
                             headers={"Content-Type": "application/json"})  # fmt: skip
    assert (broken.status_code, broken.json()["StatusCode"]) == (400, 10)
    xml = await http.post("/analytics/v1/AddEventBatch", content=b"<a/>",
                          headers={"Content-Type": "application/xml"})  # fmt: skip
    assert (xml.status_code, xml.json()["StatusCode"]) == (415, 15)


async def test_text_plain_bodies_are_accepted(
    http: httpx.AsyncClient, store: aioredis.Redis, app_id: str
) -> None:
    """A JSON body sent as text/plain (navigator.sendBeacon) is accepted."""
    response = await http.post(
        "/analytics/v1/AddEventBatch",
        content=json.dumps(batch(app_id, 2)).encode(),
        headers={"Content-Type": "text/plain;charset=UTF-8"},
    )
    assert response.json() == OK
    assert await stream_length(store, app_id) == 2


@pytest.fixture(scope="module")
def small_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    env = {
        "ROOMSVC_ANALYTICS_MAX_ITEMS": "600",
        "ROOMSVC_ANALYTICS_MAX_BODY_BYTES": "131072",
        "ROOMSVC_ANALYTICS_STREAM_MAXLEN": "10",
    }
    with running_server(valkey.url, env=env) as server:
        yield server


async def test_limits_and_cap_follow_the_settings(
    small_server: ServerProcess, store: aioredis.Redis, app_id: str
) -> None:
    """ROOMSVC_ANALYTICS_* set the item limit, the body limit and the stream's cap."""
    async with httpx.AsyncClient(base_url=small_server.base_url, timeout=30) as http:
        assert (await add(http, batch(app_id, 601))).json()["StatusCode"] == 13
        big = batch(app_id, 1)
        big["eventData"][0]["Data"] = [{"blob": "x" * 140_000}]
        assert (await add(http, big)).json()["StatusCode"] == 14
        assert await stream_length(store, app_id) == 0
        for _ in range(2):
            assert (await add(http, batch(app_id, 500))).json() == OK
    length = await stream_length(store, app_id)
    assert 10 <= length < 1000  # approximate trimming keeps whole nodes only


async def test_an_unreachable_store_is_a_503_to_retry(app_id: str) -> None:
    """With the store down, ingest answers 503, StatusCode 30 and Retry-After."""
    with running_server(f"redis://127.0.0.1:{free_port()}/0") as down:
        async with httpx.AsyncClient(base_url=down.base_url, timeout=30) as http:
            response = await add(http, batch(app_id, 2, BatchId="retry-me"))
    assert response.status_code == 503
    assert response.json()["StatusCode"] == 30
    assert int(response.headers["retry-after"]) >= 1


def _items_metric(text: str) -> float:
    for line in text.splitlines():
        if line.startswith("roomsvc_analytics_items_total "):
            return float(line.split()[1])
    return 0.0


async def test_ingested_items_are_counted_in_metrics(http: httpx.AsyncClient, app_id: str) -> None:
    """/metrics counts stored items once: a retried BatchId adds nothing (docs/spec.md §10)."""
    before = _items_metric((await http.get("/metrics")).text)
    await add(http, batch(app_id, 7, BatchId="m"))
    await add(http, batch(app_id, 7, BatchId="m"))
    assert _items_metric((await http.get("/metrics")).text) == before + 7
