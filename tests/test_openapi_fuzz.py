"""`/openapi.json` tried as a client developer would (docs/api.md "Tried with schemathesis"):
schemathesis generates requests from the document a real `roomsvc serve` publishes and sends
them to it. Every response must be no server error, a documented status code, in the documented
content type and schema; every schema-valid request must be accepted (or be a 401/403/404/409/429,
which depend on state, not on the request's shape).

A page token is opaque: only a `nextPageToken` of the same list is one (docs/api.md). The
document names each list's token format; this client, like any client, takes real tokens from
real pages of a player who has more than one page of everything.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import hypothesis
import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.config import SchemathesisConfig

from roomsvc.events import routes as events
from roomsvc.rooms import routes as rooms
from tests.support import ServerProcess, ValkeyProcess, auth, new_app_id

PLAYER = "fuzz-player"
SEED = 17
EXAMPLES = 80  # per operation and mode: ~1,500 requests in all
TOKENS: dict[str, list[str]] = {}
for _list in ("rooms", "playerEvents", "eventDefinitions"):
    schemathesis.openapi.format(
        f"{_list}-page-token", st.deferred(lambda name=_list: st.sampled_from(TOKENS[name]))
    )

CONFIG = """
[[applications]]
id = "{app}"
[[applications.events]]
id = "ev_a"
display_name = {{ en = "A" }}
[[applications.events]]
id = "ev_b"
display_name = {{ en = "B" }}
"""


def _next_page(base_url: str, path: str, app: str) -> str:
    response = httpx.get(f"{base_url}{path}?maxResults=1", headers=auth(PLAYER, app))
    token = response.json().get("nextPageToken")
    assert isinstance(token, str), response.text
    return token


def _two_of_everything(base_url: str, app: str) -> None:
    """Two invitations and two counters for PLAYER, so every list has a second page."""
    for inviter in ("inviter-1", "inviter-2"):
        created = httpx.post(f"{base_url}/games/v1/rooms/create", headers=auth(inviter, app),
                             json={"invitedPlayerIds": [PLAYER]})  # fmt: skip
        assert created.status_code == 200, created.text
    end = int(time.time() * 1000)
    period = {"periodStartMillis": end - 60_000, "periodEndMillis": end}
    updates = [{"definitionId": d, "updateCount": 1} for d in ("ev_a", "ev_b")]
    body = {"timePeriods": [{"timePeriod": period, "updates": updates}]}
    recorded = httpx.post(f"{base_url}/games/v1/events", headers=auth(PLAYER, app), json=body)
    assert len(recorded.json()["playerEvents"]) == 2, recorded.text


@pytest.fixture(scope="module")
def fuzzed(valkey: ValkeyProcess, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A server of the module's own (its config defines the tenant's events), and a
    schemathesis client of its OpenAPI document acting as PLAYER."""
    app = new_app_id()
    config = Path(tmp_path_factory.mktemp("fuzz")) / "apps.toml"
    config.write_text(CONFIG.format(app=app), encoding="utf-8")
    process = ServerProcess(valkey.url, env={"ROOMSVC_CONFIG": str(config)}).start()
    base = process.base_url
    _two_of_everything(base, app)
    TOKENS["rooms"] = [_next_page(base, "/games/v1/rooms", app)]
    TOKENS["playerEvents"] = [_next_page(base, "/games/v1/events", app)]
    TOKENS["eventDefinitions"] = [_next_page(base, "/games/v1/eventDefinitions", app)]
    config = SchemathesisConfig.from_dict({
        "seed": SEED,
        "headers": auth(PLAYER, app),
        "cache": {"enabled": False},
        # The server decodes leniently on purpose (docs/spec.md §3: int64 as strings or
        # numbers, unknown fields ignored), so some schema-violating values are accepted.
        "checks": {"negative_data_rejection": {"enabled": False}},
    })  # fmt: skip
    yield base, schemathesis.openapi.from_url(f"{base}/openapi.json", config=config)
    process.stop()


TABLE = [m for table in (rooms.methods, events.methods) for m in table]
OPERATIONS = [(m.verb, m.path) for m in TABLE]
# Negative cases need something to get wrong: a body or a query parameter besides language.
CASES = [(m.verb, m.path, GenerationMode.POSITIVE) for m in TABLE] + [
    (m.verb, m.path, GenerationMode.NEGATIVE) for m in TABLE if m.request or len(m.query) > 1
]


@pytest.mark.parametrize(("verb", "path", "mode"), CASES)
@hypothesis.seed(SEED)
@hypothesis.settings(max_examples=EXAMPLES, deadline=None, database=None,
                     suppress_health_check=list(hypothesis.HealthCheck))  # fmt: skip
@hypothesis.given(data=st.data())
def test_every_operation_answers_as_documented(
    fuzzed: tuple[str, Any], verb: str, path: str, mode: GenerationMode, data: st.DataObject
) -> None:
    """No 5xx; documented codes, content types and bodies; schema-valid requests accepted."""
    _, schema = fuzzed
    case = data.draw(schema[path][verb].as_strategy(generation_mode=mode))
    case.call_and_validate()


def test_a_verb_a_path_does_not_serve_is_405_naming_every_verb_it_does(
    fuzzed: tuple[str, Any],
) -> None:
    """RFC 9110 §15.5.6: the Allow of a 405 lists every method the path serves."""
    served: dict[str, set[str]] = {}
    for verb, path in OPERATIONS:
        served.setdefault(path.replace("{roomId}", "r1"), set()).add(verb)
    base, _ = fuzzed
    for path, verbs in served.items():
        response = httpx.request("PUT", f"{base}{path}")
        assert response.status_code == 405, path
        allowed = {v.strip() for v in response.headers["allow"].split(",")} - {"HEAD"}
        assert allowed == verbs, path
