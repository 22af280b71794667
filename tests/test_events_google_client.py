"""Google's own API client drives the events methods (docs/spec.md §3, §7): once built from the
discovery document roomsvc serves, once from tests/discovery_events.json, the GPGS events
contract restated in our words, so a drift of the generated document from Google's shapes shows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import google.oauth2.credentials
import httpx
import pytest
from googleapiclient.discovery import build_from_document
from googleapiclient.errors import HttpError

from roomsvc.auth.tokens import SCOPE_GAMES_LITE
from roomsvc.common.clock import now_ms
from roomsvc.events.rules import DAY_MS, MAX_AGE_MS
from tests.support import ServerProcess, token

HOUR = 3_600_000
CONTRACT = Path(__file__).with_name("discovery_events.json")
Client = Callable[..., Any]


def _document(server: ServerProcess, source: str) -> dict[str, Any]:
    if source == "served":
        response = httpx.get(f"{server.base_url}/discovery/v1/apis/games/v1/rest", timeout=30)
        response.raise_for_status()
        doc: dict[str, Any] = response.json()
        return doc
    return dict(json.loads(CONTRACT.read_text(encoding="utf-8")))


@pytest.fixture(params=["served", "contract"])
def games(request: pytest.FixtureRequest, server: ServerProcess) -> Iterator[Client]:
    """A factory: games(player, app="demo", scopes=...) -> a googleapiclient `games` service."""
    doc = _document(server, request.param)
    services: list[Any] = []

    def make(player: str, app: str = "demo", **kwargs: Any) -> Any:
        credentials = google.oauth2.credentials.Credentials(token=token(player, app, **kwargs))  # type: ignore[no-untyped-call]
        service = build_from_document(
            doc,
            credentials=credentials,
            client_options={"api_endpoint": server.base_url + "/games/v1/"},
        )
        services.append(service)
        return service

    yield make
    for service in services:
        service.close()  # httplib2 keeps sockets open otherwise


def player() -> str:
    return "gc-" + uuid.uuid4().hex[:12]


def period(start: int, end: int, *updates: tuple[str, int]) -> dict[str, Any]:
    return {
        "timePeriod": {"periodStartMillis": str(start), "periodEndMillis": str(end)},
        "updates": [{"definitionId": d, "updateCount": str(n)} for d, n in updates],
    }


def test_every_failure_cause_through_googles_client(games: Client) -> None:
    """One record reports each period and event failure; a replay is ALREADY_UPDATED."""
    service, now = games(player()), now_ms()
    body = {
        "requestId": "77",
        "currentTimeMillis": str(now),
        "timePeriods": [
            period(now - HOUR, now, ("ev_kills", 3), ("ev_nope", 1), ("ev_matches", 0)),
            period(now, now, ("ev_kills", 1)),
            period(now - DAY_MS - 1, now, ("ev_kills", 1)),
            period(now - MAX_AGE_MS - 2 * HOUR, now - MAX_AGE_MS - HOUR, ("ev_kills", 1)),
            period(now - HOUR, now, ("ev_matches", 1)),
        ],
    }
    result = service.events().record(body=body, language="es").execute()
    assert result["kind"] == "games#eventUpdateResponse"
    assert [f["failureCause"] for f in result["batchFailures"]] == [
        "TIME_PERIOD_SHORT",
        "TIME_PERIOD_LONG",
        "TIME_PERIOD_EXPIRED",
        "ALREADY_UPDATED",
    ]
    assert [(f["eventId"], f["failureCause"]) for f in result["eventFailures"]] == [
        ("ev_nope", "NOT_FOUND"),
        ("ev_matches", "INVALID_UPDATE_VALUE"),
    ]
    assert result["playerEvents"][0]["numEvents"] == "3"
    replay = service.events().record(body=body).execute()
    assert [f["failureCause"] for f in replay["batchFailures"]][-1] == "ALREADY_UPDATED"
    too_large = {"timePeriods": [period(now - 2 * HOUR, now - HOUR, *[("ev_kills", 1)] * 201)]}
    result = service.events().record(body=too_large).execute()
    assert result["batchFailures"] == [
        {"kind": "games#eventBatchRecordFailure", "failureCause": "TOO_LARGE"}
    ]
    counters = service.events().listByPlayer().execute()["items"]
    assert [(c["definitionId"], c["numEvents"]) for c in counters] == [("ev_kills", "3")]


def test_record_rate_high_through_googles_client(games: Client) -> None:
    """Past the per-player bucket (30 changing calls a minute), record answers RECORD_RATE_HIGH."""
    service, now = games(player()), now_ms()
    applied = 0
    for i in range(60):  # the bucket refills while we call, so allow for a few extra passes
        body = {"timePeriods": [period(now - (i + 1) * 60_000, now - i * 60_000, ("ev_kills", 1))]}
        result = service.events().record(body=body).execute()
        causes = [f["failureCause"] for f in result["batchFailures"]]
        if causes == ["RECORD_RATE_HIGH"]:
            break
        assert causes == []
        applied += 1
    else:
        pytest.fail("never rate limited")
    assert applied >= 30
    counters = service.events().listByPlayer().execute()["items"]
    assert counters[0]["numEvents"] == str(applied)  # the refused call counted nothing


def test_lists_and_paging_through_googles_client(games: Client) -> None:
    """listByPlayer and listDefinitions page with maxResults/pageToken and localize in hi."""
    service, now = games(player(), scopes=(SCOPE_GAMES_LITE,)), now_ms()
    body = {"timePeriods": [period(now - HOUR, now, ("ev_kills", 1_234_567), ("ev_matches", 2))]}
    service.events().record(body=body).execute()
    first = service.events().listByPlayer(maxResults=1, language="hi").execute()
    assert first["items"][0]["formattedNumEvents"] == "12,34,567"
    second = service.events().listByPlayer(maxResults=1, pageToken=first["nextPageToken"]).execute()
    assert [i["definitionId"] for i in second["items"]] == ["ev_matches"]
    assert "nextPageToken" not in second
    definitions = service.events().listDefinitions(language="hi").execute()
    assert [d["displayName"] for d in definitions["items"]] == ["किल", "खेले गए मैच"]


def test_errors_through_googles_client(games: Client) -> None:
    """Bad maxResults is an HttpError 400; a token without a games scope is a 403."""
    with pytest.raises(HttpError) as caught:
        games(player()).events().listDefinitions(maxResults=500).execute()
    assert caught.value.resp.status == 400
    with pytest.raises(HttpError) as caught:
        games(player(), scopes=("email",)).events().listByPlayer().execute()
    assert caught.value.resp.status == 403
