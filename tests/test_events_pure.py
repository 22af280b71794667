"""The pure rules of events.record (roomsvc/events/rules.py) and its wire shapes, `now` passed
in."""

from __future__ import annotations

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.common.errors import InvalidArgument
from roomsvc.events import wire
from roomsvc.events.rules import (
    DAY_MS,
    MAX_AGE_MS,
    BatchFailure,
    BatchFailureCause,
    Period,
    PeriodUpdates,
    Update,
    UpdateFailure,
    UpdateFailureCause,
    decode_index_token,
    decode_page_token,
    encode_page_token,
    page_size,
    period_failure,
    plan_record,
)

NOW = 1_700_000_000_000
KNOWN = {"ev_a", "ev_b"}
HOUR = 3_600_000


def batch(start: int, end: int, *updates: tuple[str, int]) -> PeriodUpdates:
    return PeriodUpdates(Period(start, end), tuple(Update(d, n) for d, n in updates))


def plan(*periods: PeriodUpdates, max_updates: int = 200):  # type: ignore[no-untyped-def]
    return plan_record(periods, KNOWN, NOW, max_updates)


def test_valid_updates_are_all_planned() -> None:
    """Every update of a valid period on a known definition with a positive count is applied."""
    result = plan(batch(NOW - HOUR, NOW, ("ev_a", 3), ("ev_b", 1)))
    assert result.apply == (batch(NOW - HOUR, NOW, ("ev_a", 3), ("ev_b", 1)),)
    assert result.batch_failures == () and result.update_failures == ()
    assert result.update_count == 2


def test_too_large_rejects_the_whole_request() -> None:
    """More updates than the cap: one TOO_LARGE without range, nothing applied or checked."""
    big = batch(NOW - HOUR, NOW, *[("ev_a", 1)] * 3)
    bad = batch(NOW, NOW - 1, ("nope", 0))
    result = plan(big, bad, max_updates=3)
    assert result.apply == ()
    assert result.batch_failures == (BatchFailure(BatchFailureCause.TOO_LARGE),)
    assert result.update_failures == ()
    assert plan(big, max_updates=3).apply == (big,)  # exactly the cap is fine


@pytest.mark.parametrize(
    ("start", "end", "cause"),
    [
        (NOW, NOW, BatchFailureCause.TIME_PERIOD_SHORT),
        (NOW, NOW - 1, BatchFailureCause.TIME_PERIOD_SHORT),
        (NOW - DAY_MS - 1, NOW, BatchFailureCause.TIME_PERIOD_LONG),
        (NOW - MAX_AGE_MS - HOUR, NOW - MAX_AGE_MS - 1, BatchFailureCause.TIME_PERIOD_EXPIRED),
        (NOW - DAY_MS, NOW, None),
        (NOW - MAX_AGE_MS - HOUR, NOW - MAX_AGE_MS, None),
        (NOW, NOW + 1, None),
    ],
)
def test_time_rules(start: int, end: int, cause: BatchFailureCause | None) -> None:
    """end <= start is SHORT, over 24 h LONG, ended over 30 days ago EXPIRED; the bounds are ok."""
    assert period_failure(Period(start, end), NOW) == cause
    result = plan(batch(start, end, ("ev_a", 1)))
    if cause is None:
        assert len(result.apply) == 1 and result.batch_failures == ()
    else:
        assert result.apply == ()
        assert result.batch_failures == (BatchFailure(cause, Period(start, end)),)


def test_same_period_twice_in_one_request_is_already_updated() -> None:
    """The second copy of an exact period in one request is ALREADY_UPDATED, not counted."""
    first = batch(NOW - HOUR, NOW, ("ev_a", 1))
    result = plan(first, batch(NOW - HOUR, NOW, ("ev_b", 5)))
    assert result.apply == (first,)
    assert result.batch_failures == (
        BatchFailure(BatchFailureCause.ALREADY_UPDATED, Period(NOW - HOUR, NOW)),
    )


def test_a_period_with_nothing_valid_does_not_block_its_twin() -> None:
    """A period whose updates all failed is not applied, so a later copy may still apply."""
    result = plan(batch(NOW - HOUR, NOW, ("nope", 1)), batch(NOW - HOUR, NOW, ("ev_a", 1)))
    assert result.apply == (batch(NOW - HOUR, NOW, ("ev_a", 1)),)
    assert result.update_failures == (UpdateFailure("nope", UpdateFailureCause.NOT_FOUND),)


def test_update_failures_are_reported_once_per_definition_and_cause() -> None:
    """Unknown definitions are NOT_FOUND, counts <= 0 INVALID_UPDATE_VALUE, each reported once."""
    result = plan(
        batch(NOW - 2 * HOUR, NOW - HOUR, ("nope", 1), ("ev_a", 0), ("ev_b", 2)),
        batch(NOW - HOUR, NOW, ("nope", 3), ("ev_a", -4)),
    )
    assert result.apply == (batch(NOW - 2 * HOUR, NOW - HOUR, ("ev_b", 2)),)
    assert result.update_failures == (
        UpdateFailure("nope", UpdateFailureCause.NOT_FOUND),
        UpdateFailure("ev_a", UpdateFailureCause.INVALID_UPDATE_VALUE),
    )


periods_st = st.lists(
    st.builds(
        batch,
        st.integers(NOW - 40 * DAY_MS, NOW + DAY_MS),
        st.integers(NOW - 40 * DAY_MS, NOW + DAY_MS),
    ).flatmap(
        lambda b: st.lists(
            st.tuples(st.sampled_from(["ev_a", "ev_b", "nope"]), st.integers(-3, 2**63 - 1)),
            max_size=6,
        ).map(lambda ups: PeriodUpdates(b.period, tuple(Update(d, n) for d, n in ups)))
    ),
    max_size=8,
)


@settings(max_examples=150, deadline=None)
@given(periods=periods_st, max_updates=st.integers(1, 30))
def test_every_update_is_applied_or_explained(
    periods: list[PeriodUpdates], max_updates: int
) -> None:
    """Property: each update is applied exactly once, or its period or itself has a failure."""
    result = plan_record(periods, KNOWN, NOW, max_updates)
    total = sum(len(p.updates) for p in periods)
    if total > max_updates:
        assert result.apply == () and result.update_failures == ()
        assert result.batch_failures == (BatchFailure(BatchFailureCause.TOO_LARGE),)
        return
    applied_periods = [p.period for p in result.apply]
    assert len(applied_periods) == len(set(applied_periods))  # a period applies at most once
    failed = {f.period: f.cause for f in result.batch_failures}
    reported = {(f.definition_id, f.cause) for f in result.update_failures}
    for entry in result.apply:
        assert period_failure(entry.period, NOW) is None
        assert all(u.definition_id in KNOWN and u.amount > 0 for u in entry.updates)
    for entry in periods:
        if entry.period in applied_periods:
            continue
        for update in entry.updates:
            explained = entry.period in failed or any(
                (update.definition_id, c) in reported for c in UpdateFailureCause
            )
            assert explained
    for period, cause in failed.items():
        expected = period_failure(period, NOW)
        assert cause == (expected or BatchFailureCause.ALREADY_UPDATED)


@pytest.mark.parametrize("raw", [0, 101, -1, "abc", "1.5", True, 2.0])
def test_page_size_out_of_range_is_a_400_naming_max_results(raw: object) -> None:
    """maxResults must be a whole number 1..100; anything else names the field."""
    with pytest.raises(InvalidArgument) as caught:
        page_size(raw)  # type: ignore[arg-type]
    assert caught.value.params["field"] == "maxResults"


def test_page_size_accepts_strings_and_defaults_to_100() -> None:
    """Query strings arrive as text; no maxResults means the largest page."""
    assert page_size("1") == 1 and page_size(100) == 100 and page_size(None) == 100


def test_page_tokens_round_trip_and_reject_forgeries() -> None:
    """A token decodes only for the list that made it; garbage is a 400 naming pageToken."""
    token = encode_page_token("playerEvents", "ev_kills")
    assert decode_page_token("playerEvents", token) == "ev_kills"
    assert decode_page_token("playerEvents", None) is None
    assert decode_index_token("eventDefinitions", encode_page_token("eventDefinitions", "7")) == 7
    for bad, name in [
        (token, "eventDefinitions"),
        ("!!!", "playerEvents"),
        ("zz", "playerEvents"),
        (encode_page_token("eventDefinitions", "x7"), "eventDefinitions"),
        (encode_page_token("eventDefinitions", "²"), "eventDefinitions"),
    ]:
        with pytest.raises(InvalidArgument) as caught:
            decode_index_token(name, bad)
        assert caught.value.params["field"] == "pageToken"


def test_wire_accepts_int64_as_strings_or_numbers() -> None:
    """requestId, millis and updateCount decode from JSON strings and numbers alike."""
    body = {
        "kind": "anything",
        "requestId": "12",
        "currentTimeMillis": 5,
        "unknownField": [1],
        "timePeriods": [
            {
                "timePeriod": {"periodStartMillis": "1", "periodEndMillis": 2},
                "updates": [{"definitionId": "ev_a", "updateCount": "9223372036854775807"}],
            }
        ],
    }
    request = wire.request_from(body)
    assert request.request_id == 12 and request.current_time_millis == 5
    assert wire.periods_of(request) == [batch(1, 2, ("ev_a", 2**63 - 1))]
    assert wire.request_from(msgspec.json.decode(msgspec.json.encode(body))) == request


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"requestId": "x"}, "requestId"),
        ({"timePeriods": [{"updates": [{"updateCount": "a"}]}]}, "timePeriods[0].updates[0]"),
        ({"timePeriods": [{"timePeriod": {"periodStartMillis": "1"}}]}, "periodEndMillis"),
        ({"timePeriods": [{}]}, "timePeriods[0].timePeriod.periodStartMillis"),
        ({"requestId": str(2**63)}, "requestId"),
    ],
)
def test_wire_errors_name_the_field(body: dict[str, object], field: str) -> None:
    """A wrong type, an int64 out of range or a missing period bound is a 400 naming the field."""
    with pytest.raises(InvalidArgument) as caught:
        wire.periods_of(wire.request_from(body))
    assert field in caught.value.params["field"]


def test_response_shapes_use_kind_and_string_int64() -> None:
    """Responses carry their kind first, int64 as strings, and omit a request-wide range."""
    response = wire.EventUpdateResponse(
        [
            wire.batch_failure_out(BatchFailure(BatchFailureCause.TOO_LARGE)),
            wire.batch_failure_out(BatchFailure(BatchFailureCause.TIME_PERIOD_SHORT, Period(5, 5))),
        ],
        [wire.update_failure_out(UpdateFailure("x", UpdateFailureCause.NOT_FOUND))],
        [wire.PlayerEvent("ev_a", "p", "1234", "1,234")],
    )
    assert msgspec.to_builtins(response) == {
        "kind": "games#eventUpdateResponse",
        "batchFailures": [
            {"kind": "games#eventBatchRecordFailure", "failureCause": "TOO_LARGE"},
            {
                "kind": "games#eventBatchRecordFailure",
                "failureCause": "TIME_PERIOD_SHORT",
                "range": {
                    "kind": "games#eventPeriodRange",
                    "periodStartMillis": "5",
                    "periodEndMillis": "5",
                },
            },
        ],
        "eventFailures": [
            {"kind": "games#eventRecordFailure", "eventId": "x", "failureCause": "NOT_FOUND"}
        ],
        "playerEvents": [
            {
                "kind": "games#playerEvent",
                "definitionId": "ev_a",
                "playerId": "p",
                "numEvents": "1234",
                "formattedNumEvents": "1,234",
            }
        ],
    }
    empty = msgspec.to_builtins(wire.EventUpdateResponse([], [], []))
    assert empty == {
        "kind": "games#eventUpdateResponse",
        "batchFailures": [],
        "eventFailures": [],
        "playerEvents": [],
    }
    assert msgspec.to_builtins(wire.PlayerEventListResponse([])) == {
        "kind": "games#playerEventListResponse",
        "items": [],
    }


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
field_names = st.sampled_from(
    ["requestId", "currentTimeMillis", "timePeriods", "timePeriod", "updates", "definitionId",
     "updateCount", "periodStartMillis", "periodEndMillis", "kind"]
)  # fmt: skip
bodies = st.recursive(
    json_values,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(field_names, inner, max_size=5),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(body=bodies)
def test_any_json_body_is_accepted_or_a_documented_400(body: object) -> None:
    """Fuzz oracle: any JSON value as a record body is planned or raises InvalidArgument only."""
    try:
        request = wire.request_from(body if isinstance(body, dict) else {"timePeriods": body})
        plan_record(wire.periods_of(request), KNOWN, NOW, 200)
    except InvalidArgument as exc:
        assert exc.http_status == 400 and exc.params.get("field")
