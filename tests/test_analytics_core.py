"""The pure analytics validator (docs/spec.md §8): rules, status codes, and a fuzz oracle."""

from __future__ import annotations

import base64
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.analytics import rules as analytics
from roomsvc.analytics.rules import (
    InvalidBatch,
    InvalidItem,
    InvalidMediaInfo,
    Source,
    TooManyItems,
    decode_media_info,
    decode_request,
    parse_batch,
    parse_timestamp,
    records,
    status_code_of,
)
from roomsvc.analytics.service import mint_anonymous_session, source_of
from roomsvc.auth.tokens import SCOPE_GAMES_LITE, TokenVerifier
from roomsvc.common.errors import (
    InternalError,
    InvalidArgument,
    PayloadTooLarge,
    PermissionDenied,
    RoomsvcError,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from roomsvc.settings import Settings
from tests.support import JWT_SECRET, token

NOW = 1_800_000_000_000
SOURCE = Source("app-1", player_id="p1")


def parse(body: dict[str, Any], *, single: bool = False, max_items: int = 1000) -> analytics.Batch:
    raw = json.dumps(body).encode()
    return parse_batch(decode_request(raw), raw, single=single, max_items=max_items)


def b64(value: Any, alphabet: str = "standard") -> str:
    raw = json.dumps(value).encode()
    if alphabet == "urlsafe":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    return base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (1_700_000_000, 1_700_000_000_000),
        ("4315435114", 4_315_435_114_000),
        (1_700_000_000_123, 1_700_000_000_123),
        ("1700000000123", 1_700_000_000_123),
        (1_700_000_000.5, 1_700_000_000_500),
        ("1700000000.25", 1_700_000_000_250),
        (0, 0),
        ("2024-05-01T10:00:00Z", 1_714_557_600_000),
        ("2024-05-01T12:00:00+02:00", 1_714_557_600_000),
        ("2024-05-01T10:00:00", 1_714_557_600_000),
        (-1, None),
        ("yesterday", None),
        ("", None),
        ("1e9", None),
        (float("nan"), None),
        (10**20, None),
        ("1969-12-31T23:59:59Z", None),
    ],
)
def test_timestamps_are_seconds_milliseconds_or_rfc3339(value: Any, expected: int | None) -> None:
    """Unix seconds below 10^11, milliseconds above, RFC 3339 strings; all stored as ms."""
    assert parse_timestamp(value) == expected


def test_media_info_is_base64_json_in_either_alphabet() -> None:
    """mediaInfo decodes from standard or URL-safe base64, padding optional; empty is none."""
    media = {"MovieId": 35936, "Title": "ñ?>>"}
    assert decode_media_info(b64(media)) == media
    assert decode_media_info(b64(media, "urlsafe")) == media
    assert decode_media_info("") is None
    assert decode_media_info(None) is None


@pytest.mark.parametrize(
    "value",
    ["not base64!", base64.b64encode(b"not json").decode(), b64([1, 2]), b64("text"), "e30"[:2]],
)
def test_bad_media_info_is_rejected(value: str) -> None:
    """mediaInfo that is not base64 of a JSON object is InvalidMediaInfo (StatusCode 12)."""
    with pytest.raises(InvalidMediaInfo) as caught:
        decode_media_info(value)
    assert status_code_of(caught.value) == 12


def test_media_info_of_a_wrong_type_is_a_media_info_error() -> None:
    """A non-string mediaInfo is reported as a mediaInfo error, not a generic one."""
    with pytest.raises(InvalidMediaInfo):
        decode_request(b'{"mediaInfo": {"MovieId": 1}, "eventData": []}')


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidBatch(), 10),
        (InvalidArgument(), 10),
        (InvalidItem(index=0), 11),
        (InvalidMediaInfo(), 12),
        (TooManyItems(count=2, limit=1), 13),
        (PayloadTooLarge(limit=1), 14),
        (UnsupportedMediaType(), 15),
        (Unauthenticated(), 20),
        (PermissionDenied(scope="x"), 21),
        (StoreUnavailable(), 30),
        (InternalError(), 31),
    ],
)
def test_status_codes_follow_the_documented_table(error: RoomsvcError, code: int) -> None:
    """Each error maps to its non-zero StatusCode of the roomsvc/analytics/rules.py table."""
    assert status_code_of(error) == code


def test_items_are_normalized() -> None:
    """Data may be one object or missing; Timestamps become ms; mediaInfo is kept decoded."""
    batch = parse(
        {
            "mediaInfo": b64({"MovieId": 7}),
            "BatchId": "b-1",
            "eventData": [
                {"Timestamp": "4315435114", "Event": "Navigation", "Data": {"k": "v"}},
                {"Timestamp": 1, "Event": "Rent"},
            ],
        }
    )
    assert [(i.timestamp_ms, i.event, i.data) for i in batch.items] == [
        (4_315_435_114_000, "Navigation", [{"k": "v"}]),
        (1000, "Rent", []),
    ]
    assert batch.media_info == {"MovieId": 7}
    assert batch.batch_id == "b-1"


@pytest.mark.parametrize(
    ("items", "index", "field"),
    [
        ([{"Timestamp": 1, "Event": "a"}, {"Timestamp": 1}], 1, "Event"),
        ([{"Timestamp": 1, "Event": ""}], 0, "Event"),
        ([{"Timestamp": 1, "Event": "x" * 257}], 0, "Event"),
        ([{"Timestamp": 1, "Event": 5}], 0, "Event"),
        ([{"Event": "a", "Timestamp": 1}, {"Event": "a", "Timestamp": "soon"}], 1, "Timestamp"),
        ([{"Event": "a", "Timestamp": [1]}], 0, "Timestamp"),
        ([{"Event": "a", "Timestamp": 1, "Data": [{"k": {"n": 1}}]}], 0, "Data[0]"),
        ([{"Event": "a", "Timestamp": 1, "Data": [{"a": 1}, {"": 1}]}], 0, "Data[1]"),
        ([{"Event": "a", "Timestamp": 1, "Data": "text"}], 0, "Data"),
    ],
)
def test_a_bad_item_is_named_by_index_and_field(items: list[Any], index: int, field: str) -> None:
    """The first bad item rejects the batch with its index and field in the message."""
    with pytest.raises(InvalidItem) as caught:
        parse({"eventData": items})
    assert caught.value.params["index"] == index
    assert caught.value.params["field"] == field
    assert f"Item {index} of eventData" in caught.value.message("en")
    assert field in caught.value.message("en")


@pytest.mark.parametrize(
    "body",
    [{}, {"eventData": None}, {"eventData": []}, {"eventData": "x"}, {"eventData": 3}],
)
def test_a_batch_without_a_list_of_items_is_invalid(body: dict[str, Any]) -> None:
    """eventData must be a non-empty list (StatusCode 10)."""
    with pytest.raises(InvalidBatch):
        parse(body)


def test_item_count_is_limited() -> None:
    """More than max_items items is TooManyItems (413, StatusCode 13), before item checks."""
    with pytest.raises(TooManyItems) as caught:
        parse({"eventData": [1, 2, 3]}, max_items=2)
    assert caught.value.http_status == 413
    assert caught.value.params == {"count": 3, "limit": 2}


@pytest.mark.parametrize("batch_id", ["x" * 129, "tab\there", "new\nline"])
def test_batch_id_must_be_short_and_printable(batch_id: str) -> None:
    """A BatchId is 1..128 printable characters."""
    with pytest.raises(InvalidBatch):
        parse({"BatchId": batch_id, "eventData": [{"Timestamp": 1, "Event": "a"}]})


@pytest.mark.parametrize(
    "body",
    [
        {"eventData": {"Timestamp": 5, "Event": "one"}},
        {"eventData": [{"Timestamp": 5, "Event": "one"}]},
        {"Timestamp": 5, "Event": "one"},
    ],
)
def test_add_event_takes_one_item_in_three_shapes(body: dict[str, Any]) -> None:
    """AddEvent: eventData as an object or a list of one, or the item at the top level."""
    batch = parse(body, single=True)
    assert [(i.timestamp_ms, i.event) for i in batch.items] == [(5000, "one")]


def test_add_event_rejects_several_items() -> None:
    """AddEvent with two items points to AddEventBatch."""
    with pytest.raises(InvalidBatch) as caught:
        parse({"eventData": [{"Timestamp": 5, "Event": "a"}] * 2}, single=True)
    assert "AddEventBatch" in caught.value.message("en")


def test_records_carry_the_source_and_the_received_time() -> None:
    """Each stored document names the app, the caller, its index and the server time."""
    batch = parse({"eventData": [{"Timestamp": 5, "Event": "a", "Data": [{"k": 1}]}]})
    (doc,) = [json.loads(r) for r in records(batch, SOURCE, NOW)]
    assert doc == {
        "ApplicationId": "app-1",
        "PlayerId": "p1",
        "SessionId": None,
        "Anonymous": False,
        "BatchId": None,
        "Index": 0,
        "ReceivedAt": NOW,
        "Timestamp": 5000,
        "Event": "a",
        "Data": [{"k": 1}],
        "MediaInfo": None,
    }


def test_anonymous_tokens_are_not_player_tokens() -> None:
    """An anonymous-session token never passes the players' verifier (rooms reject it)."""
    settings_ = Settings(jwt_secret=JWT_SECRET)
    session = mint_anonymous_session(settings_, "app-1", 1_900_000_000)
    with pytest.raises(Unauthenticated):
        TokenVerifier(settings_).verify(session.token)


def test_player_tokens_need_a_games_scope() -> None:
    """A player token without games or games_lite is PermissionDenied (StatusCode 21)."""
    settings_ = Settings(jwt_secret=JWT_SECRET)
    verifier = TokenVerifier(settings_)
    lite = token("p1", "app-1", scopes=(SCOPE_GAMES_LITE,))
    assert source_of(lite, verifier, settings_) == Source("app-1", player_id="p1")
    with pytest.raises(PermissionDenied):
        source_of(token("p1", "app-1", scopes=("other",)), verifier, settings_)


_scalars = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5)
_json = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    ),
    max_leaves=12,
)
_item_like = st.fixed_dictionaries(
    {},
    optional={
        "Timestamp": _scalars | st.sampled_from(["2024-01-01T00:00:00Z", "12", "x"]),
        "Event": _scalars,
        "Data": _json,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    event_data=st.lists(_item_like | _json, max_size=5) | _json,
    media=st.none() | st.text(max_size=8) | st.sampled_from([b64({"a": 1}), b64([1])]),
    single=st.booleans(),
)
def test_every_body_is_accepted_or_rejected_with_a_documented_error(
    event_data: Any, media: str | None, single: bool
) -> None:
    """Fuzz oracle (docs/style.md 12): any body yields a batch or an error with StatusCode 10-13."""
    body = {"eventData": event_data, "mediaInfo": media}
    raw = msgspec.json.encode(body)
    try:
        batch = parse_batch(decode_request(raw), raw, single=single, max_items=3)
    except (InvalidArgument, PayloadTooLarge) as exc:
        assert status_code_of(exc) in (10, 11, 12, 13)
        exc.message("hi")  # every message renders with its parameters
        return
    assert 1 <= len(batch.items) <= 3
    for doc in records(batch, SOURCE, NOW):
        assert msgspec.json.decode(doc)["ReceivedAt"] == NOW


_valid_item = st.fixed_dictionaries(
    {
        "Timestamp": st.integers(min_value=0, max_value=10**13),
        "Event": st.text(min_size=1, max_size=20).filter(str.strip),
        "Data": st.lists(
            st.dictionaries(
                st.text(min_size=1, max_size=10),
                st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
                max_size=3,
            ),
            max_size=3,
        ),
    }
)


@settings(max_examples=200, deadline=None)
@given(items=st.lists(_valid_item, min_size=1, max_size=10))
def test_valid_items_round_trip_into_records(items: list[dict[str, Any]]) -> None:
    """Every valid item is stored with its Event and Data unchanged, in order."""
    batch = parse({"eventData": items})
    docs = [msgspec.json.decode(r) for r in records(batch, SOURCE, NOW)]
    assert [(d["Index"], d["Event"], d["Data"]) for d in docs] == [
        (i, item["Event"], item["Data"]) for i, item in enumerate(items)
    ]
    assert [d["Timestamp"] for d in docs] == [parse_timestamp(i["Timestamp"]) for i in items]
