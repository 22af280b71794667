"""The auto-match grouping policy (docs/spec.md §5), pure: no I/O, no clock (`now_ms` is an
argument).

A `Ticket` is one room waiting in the pool of (applicationId, variant). A *seeker* is a room
whose only member is its creator and that invited nobody; every other room with criteria is a
*host*. A `Group` names its *target* (the room everyone ends up in: the host, or the oldest
seeker when the group has no host) and its *movers* (the seekers moved into the target).
Hosts never move, so a group holds at most one host.

A group is valid when:

- all its tickets share applicationId and variant;
- the exclusiveBitmasks AND pairwise to zero (0 matches anything), and no player appears in
  two of its rooms (a player never meets themselves);
- the host, if any, gets between its min and max auto-matched players (its movers);
- each seeker sees a room size within its own min/max. For a seeker, "room size" is the number
  of *other* players it will play with, as GPGS's min/maxAutoMatchingPlayers count them: the
  host's seats (its creator plus the invitees it had when its ticket entered the pool) plus the
  other seekers of the group. In a group without a host that is simply `len(group) - 1`, and
  for the target seeker it is also the number of auto-matched players it gets.

Which groups form (`run_once`): tickets are taken oldest first (by ticket age, then room id);
each still-unmatched ticket anchors a search over the younger unmatched tickets of its pool for
the largest *formable* group containing it, largest meaning the most players in the resulting
room (a host's invitees count, so a host beats seekers of the same age), ties going to the group
of older tickets. A group is
formable when it is valid and, for each member that would get fewer players than its max, that
member's ticket is at least the fill window old (ROOMSVC_FILL_WINDOW_SECONDS; 0 = match at once).
The search is exhaustive (so no formable group is ever left among unmatched tickets) up to
`budget` candidate checks per anchor, a bound that only pathological pools reach.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec

DEFAULT_BUDGET = 4096


class Ticket(msgspec.Struct, frozen=True, array_like=True):
    """One room in a pool, as the policy sees it (a snapshot taken when the ticket entered)."""

    room_id: str
    app_id: str
    variant: int | None
    since_ms: int  # when the ticket was opened (the room's ticket_since_ms)
    min_players: int  # auto-matched players wanted, as in autoMatchingCriteria
    max_players: int
    bitmask: int = 0
    players: tuple[str, ...] = ()  # every player id of the room (creator and invitees)
    host: bool = False
    deadline_ms: int = 0  # when the ticket times out (0 = never); expired tickets never match
    queued_ms: int = 0  # when it entered the pool (before its room was written)

    @property
    def seats(self) -> int:
        """Players a seeker meets in this room besides the movers (creator + invitees)."""
        return len(self.players)


class Group(msgspec.Struct, frozen=True, array_like=True):
    """A match: `movers` (seekers) move into `target` (a host, or the oldest seeker)."""

    target: Ticket
    movers: tuple[Ticket, ...]

    @property
    def members(self) -> tuple[Ticket, ...]:
        return (self.target, *self.movers)


def make_group(members: Sequence[Ticket]) -> Group:
    """The group of these tickets: the host is the target, or else the oldest seeker."""
    hosts = [t for t in members if t.host]
    target = hosts[0] if hosts else min(members, key=lambda t: (t.since_ms, t.room_id))
    return Group(target=target, movers=tuple(t for t in members if t is not target))


def others_seen(group: Group) -> int:
    """The room size every seeker of `group` sees: the other players it will play with."""
    seekers = len(group.members) - (1 if group.target.host else 0)
    seats = group.target.seats if group.target.host else 0
    return seats + seekers - 1


def is_valid(group: Group) -> bool:
    """The docs/spec.md §5 validity rules, ignoring the fill window."""
    members = group.members
    if not group.movers or any(t.host for t in group.movers):
        return False
    pool = (group.target.app_id, group.target.variant)
    mask = 0
    seen: set[str] = set()
    for t in members:
        if (t.app_id, t.variant) != pool or t.bitmask & mask or seen.intersection(t.players):
            return False
        mask |= t.bitmask
        seen.update(t.players)
    target = group.target
    if target.host and not target.min_players <= len(group.movers) <= target.max_players:
        return False
    others = others_seen(group)
    return all(t.min_players <= others <= t.max_players for t in members if not t.host)


def is_formable(group: Group, now_ms: int, fill_window_ms: int) -> bool:
    """Valid, and every member left short of its max has waited out the fill window."""
    if not is_valid(group):
        return False
    others = others_seen(group)
    for t in group.members:
        reach = len(group.movers) if t.host else others
        if reach < t.max_players and now_ms - t.since_ms < fill_window_ms:
            return False
    return True


def run_once(
    pool: Sequence[Ticket],
    now_ms: int,
    fill_window_ms: int = 0,
    *,
    budget: int = DEFAULT_BUDGET,
    max_tickets: int | None = None,
) -> list[Group]:
    """One matching round over `pool`: the groups to form, disjoint, oldest tickets first.

    With `max_tickets`, a pool's round stops once its groups hold that many tickets (the
    younger tickets wait for the next round, so oldest-first still holds).
    """
    by_pool: dict[tuple[str, int | None], list[Ticket]] = {}
    seen: set[tuple[str, str]] = set()
    for t in pool:
        if (t.app_id, t.room_id) in seen:
            continue  # the same room twice in the input is one ticket
        seen.add((t.app_id, t.room_id))
        by_pool.setdefault((t.app_id, t.variant), []).append(t)
    groups: list[Group] = []
    for tickets in by_pool.values():
        tickets.sort(key=lambda t: (t.since_ms, t.room_id))
        groups += _match_pool(tickets, now_ms, fill_window_ms, budget, max_tickets)
    return groups


def _match_pool(
    tickets: list[Ticket],
    now_ms: int,
    fill_window_ms: int,
    budget: int,
    max_tickets: int | None,
) -> list[Group]:
    used = [False] * len(tickets)
    groups: list[Group] = []
    matched = 0
    for i in range(len(tickets)):
        if max_tickets is not None and matched >= max_tickets:
            break
        if used[i]:
            continue
        chosen = _Search(tickets, used, now_ms, fill_window_ms, budget).best(i)
        if chosen:
            for j in chosen:
                used[j] = True
            matched += len(chosen)
            groups.append(make_group([tickets[j] for j in chosen]))
    return groups


class _Search:
    """Depth-first search, in age order, for the largest formable group containing an anchor.

    Children only add younger tickets, so groups of one size are visited oldest-first and the
    first one found of the largest size wins. A branch is cut as soon as it breaks a rule that
    adding members can never repair (a bitmask or player clash, a second host, more movers than
    the host's max, more other players than some seeker's max), or once the largest room it
    could still make is no larger than the best group already found.
    """

    def __init__(
        self,
        tickets: list[Ticket],
        used: list[bool],
        now_ms: int,
        fill_window_ms: int,
        budget: int,
    ) -> None:
        self.tickets = tickets
        self.used = used
        self.now_ms = now_ms
        self.fill_window_ms = fill_window_ms
        self.budget = budget
        self.best_found: list[int] = []
        self.best_size = 0
        self.cap = 0

    def best(self, anchor: int) -> list[int]:
        t = self.tickets[anchor]
        # No room can hold more players than the anchor allows: a seeker meets at most its max
        # others, a host takes at most its max movers besides its own seats.
        self.cap = t.max_players + t.seats
        if t.host:
            state = _Branch(t.bitmask, frozenset(t.players), t, 0, 1 << 30, 0)
        else:
            state = _Branch(t.bitmask, frozenset(t.players), None, 1, t.max_players, t.min_players)
        self._dfs(anchor + 1, [anchor], state)
        return self.best_found

    def _dfs(self, start: int, chosen: list[int], branch: _Branch) -> None:
        # Branch and bound: nothing below this branch can make a larger room than its bound; if
        # that is no better than the best group found, nothing below can replace that group.
        if branch.bound() <= self.best_size:
            return
        tickets = self.tickets
        for j in range(start, len(tickets)):
            if self.best_size >= self.cap or self.budget <= 0:
                return
            if self.used[j]:
                continue
            self.budget -= 1
            child = branch.add(tickets[j])
            if child is None:
                continue
            chosen.append(j)
            size = child.size()
            if size > self.best_size and self._formable(chosen):
                self.best_found = list(chosen)
                self.best_size = size
            self._dfs(j + 1, chosen, child)
            chosen.pop()

    def _formable(self, chosen: list[int]) -> bool:
        group = make_group([self.tickets[j] for j in chosen])
        return is_formable(group, self.now_ms, self.fill_window_ms)


class _Branch(msgspec.Struct, frozen=True):
    """What the search knows of a partial group, enough to cut branches that cannot form.

    `bound` (the most players any group extending it can have) only falls and `need` (the
    fewest players such a group must have: every seeker's min others plus itself, the host's
    seats plus its min movers) only rises as members are added; once `bound < need`, no
    extension is valid.
    """

    mask: int
    players: frozenset[str]
    host: Ticket | None
    seekers: int
    seeker_max: int  # the smallest max among the seekers (others each of them may see)
    seeker_min: int  # the largest min among the seekers

    def size(self) -> int:
        return (self.host.seats if self.host is not None else 0) + self.seekers

    def bound(self) -> int:
        bound = self.seeker_max + 1
        if self.host is not None:
            bound = min(bound, self.host.seats + self.host.max_players)
        return bound

    def need(self) -> int:
        need = self.seeker_min + 1
        if self.host is not None:
            need = max(need, self.host.seats + self.host.min_players)
        return need

    def add(self, t: Ticket) -> _Branch | None:
        """This branch plus `t`, or None if no valid group can contain both."""
        if t.bitmask & self.mask or not self.players.isdisjoint(t.players):
            return None
        if t.host:
            if self.host is not None:
                return None
            child = _Branch(
                self.mask | t.bitmask, self.players.union(t.players), t,
                self.seekers, self.seeker_max, self.seeker_min,
            )  # fmt: skip
        else:
            child = _Branch(
                self.mask | t.bitmask, self.players.union(t.players), self.host, self.seekers + 1,
                min(self.seeker_max, t.max_players), max(self.seeker_min, t.min_players),
            )  # fmt: skip
        if child.size() > child.bound() or child.bound() < child.need():
            return None
        return child
