"""Google's `fields` partial-response selector (docs/spec.md §3): honoured, and bad ones named."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomsvc.common.errors import InvalidArgument
from roomsvc.common.partial import apply_fields, parse_fields

ROOM: dict[str, Any] = {
    "kind": "games#room",
    "roomId": "r1",
    "status": "ROOM_ACTIVE",
    "autoMatchingCriteria": {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 2},
    "participants": [
        {"id": "p_1", "status": "JOINED", "player": {"playerId": "a", "displayName": "Ana"}},
        {"id": "p_2", "status": "INVITED", "player": {"playerId": "b", "displayName": "Bo"}},
    ],
}


def pick(selector: str, value: Any = ROOM) -> Any:
    return apply_fields(value, parse_fields(selector))


def test_top_level_fields() -> None:
    """`a,b` keeps only those top-level fields."""
    assert pick("kind,roomId") == {"kind": "games#room", "roomId": "r1"}


def test_slash_path() -> None:
    """`a/b` keeps one field of a nested object."""
    assert pick("autoMatchingCriteria/maxAutoMatchingPlayers") == {
        "autoMatchingCriteria": {"maxAutoMatchingPlayers": 2}
    }


def test_parenthesised_subselection_applies_to_each_list_element() -> None:
    """`a(b,c/d)` selects within every element of a list."""
    assert pick("participants(id,player/displayName)") == {
        "participants": [
            {"id": "p_1", "player": {"displayName": "Ana"}},
            {"id": "p_2", "player": {"displayName": "Bo"}},
        ]
    }


def test_mixed_selector() -> None:
    """`a,b/c,d(e,f)` combines all three forms."""
    assert pick("roomId,autoMatchingCriteria/minAutoMatchingPlayers,participants(id,status)") == {
        "roomId": "r1",
        "autoMatchingCriteria": {"minAutoMatchingPlayers": 1},
        "participants": [{"id": "p_1", "status": "JOINED"}, {"id": "p_2", "status": "INVITED"}],
    }


def test_slash_path_through_a_list() -> None:
    """`a/b` where `a` is a list selects `b` in each element."""
    assert pick("participants/id") == {"participants": [{"id": "p_1"}, {"id": "p_2"}]}


def test_top_level_list_response() -> None:
    """A selector applies to each element of a list value."""
    assert pick("id", ROOM["participants"]) == [{"id": "p_1"}, {"id": "p_2"}]


def test_star_keeps_everything() -> None:
    """`*` selects every field at its level."""
    assert pick("*") == ROOM
    assert pick("participants(*)") == {"participants": ROOM["participants"]}


def test_unknown_fields_are_ignored() -> None:
    """Selecting a field the value lacks is not an error; it is simply absent."""
    assert pick("roomId,nope,nope2/x") == {"roomId": "r1"}


def test_whole_selection_wins_over_a_narrower_one() -> None:
    """`a,a/b` keeps all of `a`, whatever the order."""
    whole = {"autoMatchingCriteria": ROOM["autoMatchingCriteria"]}
    assert pick("autoMatchingCriteria,autoMatchingCriteria/minAutoMatchingPlayers") == whole
    assert pick("autoMatchingCriteria/minAutoMatchingPlayers,autoMatchingCriteria") == whole


def test_repeated_subselections_merge() -> None:
    """`a(b),a(c)` selects both b and c."""
    assert pick("participants(id),participants(status)") == {
        "participants": [{"id": "p_1", "status": "JOINED"}, {"id": "p_2", "status": "INVITED"}]
    }


def test_spaces_are_ignored() -> None:
    """Spaces around names and commas do not matter."""
    assert pick(" kind , participants( id ) ") == pick("kind,participants(id)")


@pytest.mark.parametrize(
    "selector",
    ["", ",", "a,", ",a", "a//b", "a/", "/a", "a(", "a(b", "a)", "a(b))", "a()", "(a)", "a(b)c"],
)
def test_bad_selectors_are_invalid_argument(selector: str) -> None:
    """A selector that does not parse is a 400 naming the `fields` parameter."""
    with pytest.raises(InvalidArgument) as info:
        parse_fields(selector)
    assert info.value.http_status == 400
    assert info.value.params["field"] == "fields"


@given(st.text(alphabet="ab,/()* ", max_size=12))
def test_any_selector_parses_or_is_invalid_argument(selector: str) -> None:
    """Every selector is accepted or rejected with InvalidArgument, nothing else."""
    try:
        selection = parse_fields(selector)
    except InvalidArgument:
        return
    apply_fields(ROOM, selection)
