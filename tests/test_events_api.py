"""events.record, events.listByPlayer and events.listDefinitions over REST against a real server
(docs/spec.md §3, §7, §9). The shipped config's app "demo" has ev_kills, ev_matches and the HIDDEN
ev_secret; each test uses fresh player ids, so counters never leak between tests."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomsvc.auth.tokens import SCOPE_GAMES_LITE
from roomsvc.common.clock import now_ms
from roomsvc.events.rules import DAY_MS, MAX_AGE_MS
from tests.support import ServerProcess, ValkeyProcess, auth

HOUR = 3_600_000
APP = "demo"


def player() -> str:
    return "pl-" + uuid.uuid4().hex[:12]


def period(start: int, end: int, *updates: tuple[str, int]) -> dict[str, Any]:
    return {
        "kind": "games#eventPeriodUpdate",
        "timePeriod": {"periodStartMillis": str(start), "periodEndMillis": str(end)},
        "updates": [{"definitionId": d, "updateCount": str(n)} for d, n in updates],
    }


def request(*periods: dict[str, Any], request_id: int | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "games#eventRecordRequest",
        "currentTimeMillis": str(now_ms()),
        "timePeriods": list(periods),
    }
    if request_id is not None:
        body["requestId"] = str(request_id)
    return body


async def record(
    http: httpx.AsyncClient, who: str, body: dict[str, Any], app: str = APP, **params: str
) -> dict[str, Any]:
    response = await http.post("/games/v1/events", json=body, params=params, headers=auth(who, app))
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    assert result["kind"] == "games#eventUpdateResponse"
    return result


async def counters(http: httpx.AsyncClient, who: str, app: str = APP) -> dict[str, str]:
    response = await http.get("/games/v1/events", headers=auth(who, app))
    assert response.status_code == 200, response.text
    return {item["definitionId"]: item["numEvents"] for item in response.json()["items"]}


def causes(result: dict[str, Any]) -> list[str]:
    return [f["failureCause"] for f in result["batchFailures"]]


async def test_record_adds_to_counters_and_answers_int64_as_strings(
    http: httpx.AsyncClient,
) -> None:
    """Each update adds to the player's counter; numEvents travels as a string."""
    who, now = player(), now_ms()
    first = await record(http, who, request(period(now - HOUR, now, ("ev_kills", 3))))
    assert first == {
        "kind": "games#eventUpdateResponse",
        "batchFailures": [],
        "eventFailures": [],
        "playerEvents": [
            {
                "kind": "games#playerEvent",
                "definitionId": "ev_kills",
                "playerId": who,
                "numEvents": "3",
                "formattedNumEvents": "3",
            }
        ],
    }
    body = request(
        period(now - 2 * HOUR, now - HOUR, ("ev_kills", 4), ("ev_matches", 1)),
        period(now - 3 * HOUR, now - 2 * HOUR, ("ev_kills", 1)),
    )
    # int64 fields are accepted as JSON numbers too
    body["timePeriods"][0]["timePeriod"]["periodStartMillis"] = now - 2 * HOUR
    body["timePeriods"][0]["updates"][0]["updateCount"] = 4
    second = await record(http, who, body)
    assert {e["definitionId"]: e["numEvents"] for e in second["playerEvents"]} == {
        "ev_kills": "8",
        "ev_matches": "1",
    }
    assert await counters(http, who) == {"ev_kills": "8", "ev_matches": "1"}


def _too_large(now: int) -> dict[str, Any]:
    return request(period(now - HOUR, now, *[("ev_kills", 1)] * 201))


@pytest.mark.parametrize(
    ("cause", "make", "has_range"),
    [
        ("TOO_LARGE", _too_large, False),
        (
            "TIME_PERIOD_EXPIRED",
            lambda now: request(
                period(now - MAX_AGE_MS - 2 * HOUR, now - MAX_AGE_MS - HOUR, ("ev_kills", 1))
            ),
            True,
        ),
        ("TIME_PERIOD_SHORT", lambda now: request(period(now, now, ("ev_kills", 1))), True),
        (
            "TIME_PERIOD_LONG",
            lambda now: request(period(now - DAY_MS - 1, now, ("ev_kills", 1))),
            True,
        ),
    ],
)
async def test_batch_failures_apply_nothing(
    http: httpx.AsyncClient, cause: str, make: Any, has_range: bool
) -> None:
    """TOO_LARGE (no range), EXPIRED, SHORT and LONG (with range) record nothing."""
    who, now = player(), now_ms()
    body = make(now)
    result = await record(http, who, body)
    assert causes(result) == [cause]
    failure = result["batchFailures"][0]
    assert failure["kind"] == "games#eventBatchRecordFailure"
    if has_range:
        assert failure["range"] == {
            "kind": "games#eventPeriodRange",
            **body["timePeriods"][0]["timePeriod"],
        }
    else:
        assert "range" not in failure
    assert result["playerEvents"] == [] and await counters(http, who) == {}


async def test_too_large_allows_exactly_the_cap(http: httpx.AsyncClient) -> None:
    """200 updates (the default cap) in one request are all applied."""
    who, now = player(), now_ms()
    result = await record(http, who, request(period(now - HOUR, now, *[("ev_kills", 2)] * 200)))
    assert causes(result) == [] and result["playerEvents"][0]["numEvents"] == "400"


async def test_already_updated_by_request_id_and_by_period(http: httpx.AsyncClient) -> None:
    """A replayed requestId, or an exact period recorded before, counts nothing again."""
    who, now = player(), now_ms()
    body = request(period(now - HOUR, now, ("ev_kills", 5)), request_id=42)
    assert causes(await record(http, who, body)) == []
    replay = await record(http, who, body)
    assert replay["batchFailures"] == [
        {"kind": "games#eventBatchRecordFailure", "failureCause": "ALREADY_UPDATED"}
    ]
    assert replay["playerEvents"][0]["numEvents"] == "5"  # the current counter, unchanged
    again = request(
        period(now - HOUR, now, ("ev_kills", 5)),
        period(now - 2 * HOUR, now - HOUR, ("ev_kills", 1)),
        request_id=43,
    )
    result = await record(http, who, again)
    assert result["batchFailures"] == [
        {
            "kind": "games#eventBatchRecordFailure",
            "failureCause": "ALREADY_UPDATED",
            "range": {
                "kind": "games#eventPeriodRange",
                "periodStartMillis": str(now - HOUR),
                "periodEndMillis": str(now),
            },
        }
    ]
    assert await counters(http, who) == {"ev_kills": "6"}


async def test_event_failures_beside_applied_updates(http: httpx.AsyncClient) -> None:
    """Unknown definitions are NOT_FOUND, counts <= 0 INVALID_UPDATE_VALUE; the rest applies."""
    who, now = player(), now_ms()
    body = request(period(now - HOUR, now, ("ev_kills", 2), ("ev_nope", 1), ("ev_matches", 0)))
    body["timePeriods"][0]["updates"].append({"definitionId": "ev_matches"})  # no count: 0
    body["timePeriods"][0]["updates"].append({"definitionId": "ev_kills", "updateCount": -3})
    result = await record(http, who, body)
    assert result["batchFailures"] == []
    assert result["eventFailures"] == [
        {"kind": "games#eventRecordFailure", "eventId": "ev_nope", "failureCause": "NOT_FOUND"},
        {
            "kind": "games#eventRecordFailure",
            "eventId": "ev_matches",
            "failureCause": "INVALID_UPDATE_VALUE",
        },
        {
            "kind": "games#eventRecordFailure",
            "eventId": "ev_kills",
            "failureCause": "INVALID_UPDATE_VALUE",
        },
    ]
    assert await counters(http, who) == {"ev_kills": "2"}


async def test_concurrent_retries_of_one_request_count_once(http: httpx.AsyncClient) -> None:
    """20 copies of one requestId at once: applied by exactly one, ALREADY_UPDATED for the rest."""
    who, now = player(), now_ms()
    body = request(period(now - HOUR, now, ("ev_kills", 7)), request_id=2**62)
    results = await asyncio.gather(*[record(http, who, body) for _ in range(20)])
    outcomes = sorted(tuple(causes(r)) for r in results)
    assert outcomes == [()] + [("ALREADY_UPDATED",)] * 19
    assert all(r["playerEvents"][0]["numEvents"] == "7" for r in results)
    assert await counters(http, who) == {"ev_kills": "7"}


async def test_concurrent_copies_of_one_period_count_once(http: httpx.AsyncClient) -> None:
    """20 different requestIds carrying the same exact period at once: counted once."""
    who, now = player(), now_ms()
    bodies = [request(period(now - HOUR, now, ("ev_matches", 3)), request_id=i) for i in range(20)]
    results = await asyncio.gather(*[record(http, who, b) for b in bodies])
    assert sorted(len(causes(r)) for r in results) == [0] + [1] * 19
    assert await counters(http, who) == {"ev_matches": "3"}


@pytest.mark.parametrize(
    ("params", "headers", "formatted", "name"),
    [
        ({}, {}, "1,234,567", "Kills"),
        ({"language": "es-419"}, {}, "1.234.567", "Bajas"),
        ({"language": "hi-IN"}, {}, "12,34,567", "किल"),
        ({}, {"Accept-Language": "fr;q=0.9, hi;q=0.8"}, "12,34,567", "किल"),
        ({"language": "de"}, {"Accept-Language": "es"}, "1,234,567", "Kills"),
    ],
)
async def test_three_locales(
    http: httpx.AsyncClient,
    params: dict[str, str],
    headers: dict[str, str],
    formatted: str,
    name: str,
) -> None:
    """formattedNumEvents and definition names follow `language`, else Accept-Language."""
    who, now = player(), now_ms()
    h = {**auth(who, APP), **headers}
    body = request(period(now - HOUR, now, ("ev_kills", 1_234_567)))
    recorded = await http.post("/games/v1/events", json=body, params=params, headers=h)
    assert recorded.json()["playerEvents"][0]["formattedNumEvents"] == formatted
    listed = await http.get("/games/v1/events", params=params, headers=h)
    assert listed.json()["items"][0]["formattedNumEvents"] == formatted
    assert listed.json()["items"][0]["numEvents"] == "1234567"
    definitions = await http.get("/games/v1/eventDefinitions", params=params, headers=h)
    assert definitions.json()["items"][0]["displayName"] == name


async def test_definitions_show_images_and_hide_unrecorded_secrets(
    http: httpx.AsyncClient,
) -> None:
    """Definitions carry visibility and image fields; HIDDEN ones appear once recorded."""
    who, now = player(), now_ms()
    response = await http.get("/games/v1/eventDefinitions", headers=auth(who, APP))
    body = response.json()
    assert body["kind"] == "games#eventDefinitionListResponse" and "nextPageToken" not in body
    assert body["items"] == [
        {
            "kind": "games#eventDefinition",
            "id": "ev_kills",
            "visibility": "REVEALED",
            "displayName": "Kills",
            "description": "Opponents defeated",
            "isDefaultImageUrl": True,
        },
        {
            "kind": "games#eventDefinition",
            "id": "ev_matches",
            "visibility": "REVEALED",
            "displayName": "Matches played",
            "description": "Games finished",
            "isDefaultImageUrl": False,
            "imageUrl": "https://example.com/img/matches.png",
        },
    ]
    await record(http, who, request(period(now - HOUR, now, ("ev_secret", 1))))
    response = await http.get(
        "/games/v1/eventDefinitions", params={"language": "es"}, headers=auth(who, APP)
    )
    secret = response.json()["items"][2]
    assert (secret["id"], secret["visibility"], secret["displayName"]) == (
        "ev_secret",
        "HIDDEN",
        "Secreto encontrado",
    )


async def _pages(http: httpx.AsyncClient, path: str, who: str, size: int) -> list[list[str]]:
    pages: list[list[str]] = []
    token: str | None = None
    while True:
        params = {"maxResults": str(size), **({"pageToken": token} if token else {})}
        response = await http.get(path, params=params, headers=auth(who, APP))
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append([item.get("definitionId") or item["id"] for item in body["items"]])
        token = body.get("nextPageToken")
        if token is None:
            return pages


async def test_paging_through_both_lists(http: httpx.AsyncClient) -> None:
    """maxResults pages listByPlayer (by definition id) and listDefinitions (config order)."""
    who, now = player(), now_ms()
    updates = [("ev_secret", 1), ("ev_matches", 1), ("ev_kills", 1)]
    await record(http, who, request(period(now - HOUR, now, *updates)))
    assert await _pages(http, "/games/v1/events", who, 1) == [
        ["ev_kills"],
        ["ev_matches"],
        ["ev_secret"],
    ]
    assert await _pages(http, "/games/v1/events", who, 2) == [
        ["ev_kills", "ev_matches"],
        ["ev_secret"],
    ]
    assert await _pages(http, "/games/v1/eventDefinitions", who, 2) == [
        ["ev_kills", "ev_matches"],
        ["ev_secret"],
    ]
    assert await _pages(http, "/games/v1/events", player(), 100) == [[]]


@pytest.mark.parametrize("path", ["/games/v1/events", "/games/v1/eventDefinitions"])
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"maxResults": "0"}, "maxResults"),
        ({"maxResults": "101"}, "maxResults"),
        ({"maxResults": "ten"}, "maxResults"),
        ({"pageToken": "not-a-token"}, "pageToken"),
    ],
)
async def test_bad_paging_parameters_are_400(
    http: httpx.AsyncClient, path: str, params: dict[str, str], field: str
) -> None:
    """Out-of-range maxResults and forged pageTokens are 400s naming the parameter."""
    response = await http.get(path, params={**params, "language": "es"}, headers=auth("p", APP))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["status"] == "INVALID_ARGUMENT" and field in error["message"]
    assert "no válido" in error["message"] or "debe estar entre 1 y 100" in error["message"]


async def test_a_token_of_one_list_is_refused_by_the_other(http: httpx.AsyncClient) -> None:
    """A listDefinitions token is not a listByPlayer token."""
    who, now = player(), now_ms()
    await record(http, who, request(period(now - HOUR, now, ("ev_secret", 1))))
    first = await http.get("/games/v1/eventDefinitions?maxResults=1", headers=auth(who, APP))
    token = first.json()["nextPageToken"]
    response = await http.get(f"/games/v1/events?pageToken={token}", headers=auth(who, APP))
    assert response.status_code == 400


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/games/v1/events"),
        ("GET", "/games/v1/events"),
        ("GET", "/games/v1/eventDefinitions"),
    ],
)
async def test_scopes(http: httpx.AsyncClient, method: str, path: str) -> None:
    """games_lite is enough; another scope is 403; no token is 401 with WWW-Authenticate."""
    now = now_ms()
    kwargs: dict[str, Any] = {}
    if method == "POST":
        kwargs["json"] = request(period(now - HOUR, now, ("ev_kills", 1)))
    lite = await http.request(
        method, path, headers=auth(player(), APP, scopes=(SCOPE_GAMES_LITE,)), **kwargs
    )
    assert lite.status_code == 200
    other = await http.request(
        method, path, headers=auth(player(), APP, scopes=("email",)), **kwargs
    )
    assert other.status_code == 403
    assert other.json()["error"]["status"] == "PERMISSION_DENIED"
    anonymous = await http.request(method, path, **kwargs)
    assert anonymous.status_code == 401 and "Bearer" in anonymous.headers["www-authenticate"]


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requestId": "abc"}, "requestId"),
        (
            {"timePeriods": [{"timePeriod": {"periodStartMillis": "1", "periodEndMillis": "x"}}]},
            "timePeriods[0].timePeriod.periodEndMillis",
        ),
        ({"timePeriods": [{"updates": []}]}, "timePeriods[0].timePeriod.periodStartMillis"),
        ({"timePeriods": "none"}, "timePeriods"),
    ],
)
async def test_malformed_requests_name_the_field(
    http: httpx.AsyncClient, body: dict[str, Any], field: str
) -> None:
    """Wrong types and missing period bounds are 400s naming the field; nothing is recorded."""
    who = player()
    response = await http.post("/games/v1/events", json=body, headers=auth(who, APP))
    assert response.status_code == 400
    assert field in response.json()["error"]["message"]
    not_json = await http.post(
        "/games/v1/events", content=b"x=1", headers={**auth(who, APP), "Content-Type": "text/plain"}
    )
    assert not_json.status_code == 415


async def test_tenants_do_not_share_counters_or_definitions(http: httpx.AsyncClient) -> None:
    """The same player id in an app without config has no definitions and no counters."""
    who, now, stranger = player(), now_ms(), "app-" + uuid.uuid4().hex[:8]
    await record(http, who, request(period(now - HOUR, now, ("ev_kills", 1))))
    result = await record(
        http, who, request(period(now - HOUR, now, ("ev_kills", 1))), app=stranger
    )
    assert [f["failureCause"] for f in result["eventFailures"]] == ["NOT_FOUND"]
    assert await counters(http, who, app=stranger) == {}
    definitions = await http.get("/games/v1/eventDefinitions", headers=auth(who, stranger))
    assert definitions.json() == {"kind": "games#eventDefinitionListResponse", "items": []}


async def test_partial_response_fields(http: httpx.AsyncClient) -> None:
    """The global `fields` parameter trims the record response like Google's servers do."""
    who, now = player(), now_ms()
    body = request(period(now - HOUR, now, ("ev_kills", 2)))
    response = await http.post(
        "/games/v1/events",
        json=body,
        params={"fields": "playerEvents/numEvents", "alt": "json", "prettyPrint": "true"},
        headers=auth(who, APP),
    )
    assert response.json() == {"playerEvents": [{"numEvents": "2"}]}


# -- a server with its own config, a small bucket and a small cap ------------------------------

LIMITED_TOML = """
[[applications]]
id = "tiny"
[[applications.events]]
id = "ev_a"
display_name = { en = "A", es = "A-es", hi = "A-hi" }
description = { en = "First" }
[[applications.events]]
id = "ev_b"
visibility = "HIDDEN"
display_name = { en = "B" }
"""


@pytest.fixture(scope="module")
def limited(valkey: ValkeyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    config = Path(tmp_path_factory.mktemp("events")) / "apps.toml"
    config.write_text(LIMITED_TOML, encoding="utf-8")
    env = {
        "ROOMSVC_CONFIG": str(config),
        "ROOMSVC_EVENTS_RATE_PER_MINUTE": "2",
        "ROOMSVC_EVENTS_MAX_UPDATES": "3",
    }
    process = ServerProcess(valkey.url, env=env).start()
    yield process.base_url
    process.stop()


async def test_record_rate_high_and_what_a_record_costs(limited: str) -> None:
    """The bucket allows ROOMSVC_EVENTS_RATE_PER_MINUTE changing calls; replays cost nothing."""
    who, now = player(), now_ms()
    async with httpx.AsyncClient(base_url=limited, timeout=30) as http:
        first = request(period(now - 2 * HOUR, now - HOUR, ("ev_a", 1)), request_id=1)
        assert causes(await record(http, who, first, app="tiny")) == []
        for _ in range(3):  # replays: ALREADY_UPDATED, no token taken
            assert causes(await record(http, who, first, app="tiny")) == ["ALREADY_UPDATED"]
        second = request(period(now - HOUR, now, ("ev_a", 1)), request_id=2)
        assert causes(await record(http, who, second, app="tiny")) == []
        third = request(period(now - 3 * HOUR, now - 2 * HOUR, ("ev_a", 5)), request_id=3)
        for _ in range(2):  # refused calls record nothing, not even their requestId
            limited_result = await record(http, who, third, app="tiny")
            assert limited_result["batchFailures"] == [
                {"kind": "games#eventBatchRecordFailure", "failureCause": "RECORD_RATE_HIGH"}
            ]
        assert await counters(http, who, app="tiny") == {"ev_a": "2"}
        assert await counters(http, player(), app="tiny") == {}  # the bucket is per player
        other = await record(http, player(), third, app="tiny")
        assert causes(other) == []


async def test_custom_config_cap_and_definitions(limited: str) -> None:
    """ROOMSVC_CONFIG and ROOMSVC_EVENTS_MAX_UPDATES are honoured; es falls back to en text."""
    who, now = player(), now_ms()
    async with httpx.AsyncClient(base_url=limited, timeout=30) as http:
        big = request(period(now - HOUR, now, ("ev_a", 1), ("ev_a", 1)),
                      period(now - 2 * HOUR, now - HOUR, ("ev_a", 1), ("ev_a", 1)))  # fmt: skip
        assert causes(await record(http, who, big, app="tiny")) == ["TOO_LARGE"]
        response = await http.get(
            "/games/v1/eventDefinitions", params={"language": "es"}, headers=auth(who, "tiny")
        )
        assert [
            (d["id"], d["displayName"], d["description"]) for d in response.json()["items"]
        ] == [("ev_a", "A-es", "First")]
