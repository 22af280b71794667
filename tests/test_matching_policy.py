"""The pure auto-match policy (docs/spec.md §5): properties checked against an independent oracle,
and the worked examples of the spec (roomsvc/matching/policy.py)."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.matching.policy import Group, Ticket, run_once

NOW = 1_000


# ---- an oracle written from the spec, independent of the module under test ------------------


def oracle_formable(members: Sequence[Ticket], now: int, fill: int) -> bool:
    """docs/spec.md §5 read literally: is this set of tickets a group that may form now?"""
    if len(members) < 2:
        return False
    if len({(t.app_id, t.variant) for t in members}) != 1:
        return False
    for a, b in itertools.combinations(members, 2):
        if a.bitmask & b.bitmask or set(a.players) & set(b.players):
            return False
    hosts = [t for t in members if t.host]
    if len(hosts) > 1:
        return False
    seekers = [t for t in members if not t.host]
    if hosts:
        host = hosts[0]
        movers = len(seekers)
        if not host.min_players <= movers <= host.max_players:
            return False
        if movers < host.max_players and now - host.since_ms < fill:
            return False
    for s in seekers:
        # the players this seeker ends up with: everyone in the room but itself
        others = sum(len(t.players) for t in members) - 1
        if not s.min_players <= others <= s.max_players:
            return False
        if others < s.max_players and now - s.since_ms < fill:
            return False
    return True


def age_key(t: Ticket) -> tuple[int, str]:
    return (t.since_ms, t.room_id)


@st.composite
def pools(draw: st.DrawFn) -> tuple[list[Ticket], int]:
    n = draw(st.integers(0, 8))
    tickets = []
    for i in range(n):
        host = draw(st.booleans()) and draw(st.booleans())
        low = draw(st.integers(1, 3))
        high = draw(st.integers(low, 4))
        if host:
            invitees = draw(st.integers(0, 2))
            players = (f"h{i}", *(f"i{i}_{k}" for k in range(invitees)))
        else:
            # a few players hold two tickets: they must never meet themselves
            players = (draw(st.sampled_from([f"s{i}", f"s{i}", f"s{i}", "twin"])),)
        tickets.append(
            Ticket(
                room_id=f"r{i}",
                app_id=draw(st.sampled_from(["app", "app", "app", "other"])),
                variant=draw(st.sampled_from([None, None, None, 2])),
                since_ms=draw(st.integers(0, NOW)),
                min_players=low,
                max_players=high,
                bitmask=draw(st.sampled_from([0, 0, 0, 1, 2, 4, 3, 6])),
                players=players,
                host=host,
            )
        )
    fill = draw(st.sampled_from([0, 0, 300, 2_000]))
    return tickets, fill


def leftovers(pool: list[Ticket], groups: list[Group]) -> list[Ticket]:
    matched = {t.room_id for g in groups for t in g.members}
    return [t for t in pool if t.room_id not in matched]


# ---- properties --------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(pools())
def test_every_group_is_valid_and_the_host_never_moves(case: tuple[list[Ticket], int]) -> None:
    """No group breaks a bitmask, a min/max, a variant or the fill window; hosts are targets."""
    pool, fill = case
    groups = run_once(pool, NOW, fill)
    for g in groups:
        assert oracle_formable(g.members, NOW, fill), g
        assert not any(t.host for t in g.movers)
        if not g.target.host:
            assert g.target == min(g.members, key=age_key)  # the oldest seeker is the target


@settings(max_examples=200, deadline=None)
@given(pools())
def test_groups_are_disjoint_and_made_of_pool_tickets(case: tuple[list[Ticket], int]) -> None:
    """A ticket is matched at most once per round, and only tickets of the pool are matched."""
    pool, fill = case
    ids = [t.room_id for g in run_once(pool, NOW, fill) for t in g.members]
    assert len(ids) == len(set(ids))
    assert set(ids) <= {t.room_id for t in pool}


@settings(max_examples=200, deadline=None)
@given(pools())
def test_no_formable_group_is_left_unformed(case: tuple[list[Ticket], int]) -> None:
    """Among the tickets left over, no subset is a group that may form now."""
    pool, fill = case
    rest = leftovers(pool, run_once(pool, NOW, fill))
    for size in range(2, len(rest) + 1):
        for subset in itertools.combinations(rest, size):
            assert not oracle_formable(subset, NOW, fill), subset


@settings(max_examples=200, deadline=None)
@given(pools())
def test_oldest_tickets_first(case: tuple[list[Ticket], int]) -> None:
    """Swapping a group member for an older leftover with as many players never forms."""
    pool, fill = case
    groups = run_once(pool, NOW, fill)
    for left in leftovers(pool, groups):
        for g in groups:
            for u in g.members:
                if age_key(left) < age_key(u) and len(left.players) >= len(u.players):
                    swapped = [t for t in g.members if t is not u] + [left]
                    assert not oracle_formable(swapped, NOW, fill), (left, g)


@settings(max_examples=200, deadline=None)
@given(pools())
def test_largest_group(case: tuple[list[Ticket], int]) -> None:
    """No group could have taken one more of the leftover tickets and still formed."""
    pool, fill = case
    groups = run_once(pool, NOW, fill)
    for left in leftovers(pool, groups):
        for g in groups:
            assert not oracle_formable([*g.members, left], NOW, fill), (left, g)


# ---- worked examples -----------------------------------------------------------------------


def seeker(n: int, low: int, high: int, mask: int = 0, since: int = 0, **kw: object) -> Ticket:
    return Ticket(f"s{n}", "app", None, since + n, low, high, mask, (f"p{n}",), **kw)  # type: ignore[arg-type]


def test_seekers_move_into_the_oldest_seeker_up_to_max() -> None:
    """Five seekers wanting 1..3 others: one room of four around the oldest, one leftover."""
    pool = [seeker(n, 1, 3) for n in range(5)]
    groups = run_once(pool, NOW)
    assert len(groups) == 1
    assert groups[0].target.room_id == "s0"
    assert [t.room_id for t in groups[0].movers] == ["s1", "s2", "s3"]


def test_host_keeps_its_invitees_and_takes_seekers() -> None:
    """A host with one invitee and two slots takes the two oldest seekers and never moves."""
    host = Ticket("h", "app", None, 500, 2, 2, 0, ("alice", "bob"), host=True)
    pool = [host, *(seeker(n, 1, 3, since=100) for n in range(3))]
    (group,) = run_once(pool, NOW)
    assert group.target is host
    assert [t.room_id for t in group.movers] == ["s0", "s1"]


def test_four_seekers_with_clashing_roles() -> None:
    """Roles 1,2,4,8 form a room of four; a second role-1 player waits for the next room."""
    pool = [seeker(n, 3, 3, mask=1 << n) for n in range(4)]
    pool.insert(1, seeker(9, 3, 3, mask=1, since=-8))  # a second role 1, younger than s0
    groups = run_once(pool, NOW)
    assert len(groups) == 1
    assert {t.room_id for t in groups[0].members} == {"s0", "s1", "s2", "s3"}
    assert len(leftovers(pool, groups)) == 1


def test_fill_window_waits_for_a_fuller_group() -> None:
    """Two seekers wanting up to 3 others wait out the fill window, then match as a pair."""
    pool = [seeker(0, 1, 3, since=900), seeker(1, 1, 3, since=900)]
    assert run_once(pool, NOW, fill_window_ms=500) == []
    assert len(run_once(pool, NOW + 500, fill_window_ms=500)) == 1
    full = [seeker(n, 1, 3, since=900) for n in range(4)]
    assert len(run_once(full, NOW, fill_window_ms=500)) == 1  # a full group need not wait


def test_variants_and_applications_never_mix() -> None:
    """Tickets of another variant or application are never grouped together."""
    a = Ticket("a", "app", 1, 0, 1, 1, 0, ("pa",))
    b = Ticket("b", "app", 2, 0, 1, 1, 0, ("pb",))
    c = Ticket("c", "other", 1, 0, 1, 1, 0, ("pc",))
    assert run_once([a, b, c], NOW) == []
