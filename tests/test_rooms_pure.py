"""The pure room state machine and its per-receiver view (docs/spec.md §4, §5), no I/O."""

from __future__ import annotations

import itertools

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from roomsvc.common.errors import Conflict, InvalidArgument, NotFound
from roomsvc.rooms import rules as rooms
from roomsvc.rooms.rules import Criteria, Limits, Participant, PStatus, RoomDoc, RoomState, Via
from roomsvc.rooms.view import Shared, ViewContext, render_room, render_status

LIMITS = Limits(max_players=8, invite_timeout_ms=300_000, automatch_timeout_ms=60_000)
T0 = 1_700_000_000_000


def make_room(
    invited: tuple[str, ...] = ("bob", "carol"),
    criteria: Criteria | None = None,
    now: int = T0,
) -> RoomDoc:
    counter = itertools.count(1)
    return rooms.create(
        room_id="r1",
        app_id="app",
        player_id="alice",
        name="Alice",
        avatar=None,
        invited=invited,
        criteria=criteria,
        variant=None,
        capabilities=[],
        xmpp_address=None,
        ids=(f"p{next(counter)}" for _ in itertools.count()),
        now_ms=now,
        limits=LIMITS,
    )


def join(room: RoomDoc, player: str, now: int = T0 + 1) -> RoomDoc:
    return rooms.join(room, player, capabilities=[], xmpp_address=None, now_ms=now, limits=LIMITS)


def connect_all(room: RoomDoc, now: int = T0 + 2) -> RoomDoc:
    joined = room.joined()
    for p in joined:
        peers = [(q.id, "CONNECTION_ESTABLISHED") for q in joined if q.id != p.id]
        room = rooms.report_status(room, p.player_id, peers, now_ms=now, limits=LIMITS)
    return room


# ---- create -----------------------------------------------------------------------------------


def test_create_makes_caller_joined_and_invitees_invited() -> None:
    """The creator is JOINED, each invitee INVITED, version 1, status INVITING."""
    room = make_room()
    assert [(p.player_id, p.status) for p in room.participants] == [
        ("alice", PStatus.JOINED),
        ("bob", PStatus.INVITED),
        ("carol", PStatus.INVITED),
    ]
    assert room.version == 1
    assert rooms.room_status(room) is RoomState.INVITING


@pytest.mark.parametrize(
    ("invited", "criteria", "field"),
    [
        ((), None, "invitedPlayerIds"),
        (("bob", "bob"), None, "invitedPlayerIds"),
        (("alice",), None, "invitedPlayerIds"),
        ((), Criteria(0, 1), "autoMatchingCriteria.minAutoMatchingPlayers"),
        ((), Criteria(3, 2), "autoMatchingCriteria.maxAutoMatchingPlayers"),
    ],
)
def test_create_rejects_bad_requests_naming_the_field(
    invited: tuple[str, ...], criteria: Criteria | None, field: str
) -> None:
    """No invitee nor criteria, duplicates, self-invites and bad min/max are 400s naming a field."""
    with pytest.raises(InvalidArgument) as info:
        make_room(invited=invited, criteria=criteria)
    assert info.value.params["field"] == field


def test_create_caps_room_size() -> None:
    """1 + invitees + maxAutoMatchingPlayers must not exceed ROOMSVC_MAX_PLAYERS."""
    make_room(invited=("b", "c", "d"), criteria=Criteria(1, 4))  # 8 players: allowed
    with pytest.raises(InvalidArgument) as info:
        make_room(invited=("b", "c", "d"), criteria=Criteria(1, 5))
    assert info.value.params["max"] == 8


# ---- derived status ---------------------------------------------------------------------------


def test_status_moves_from_inviting_to_connecting_to_active() -> None:
    """INVITING while anyone is unanswered; CONNECTING until all connect both ways; ACTIVE."""
    room = join(make_room(), "bob")
    assert rooms.room_status(room) is RoomState.INVITING
    room = rooms.decline(room, "carol", now_ms=T0 + 2, limits=LIMITS)
    assert rooms.room_status(room) is RoomState.CONNECTING
    alice, bob = room.of_player("alice"), room.of_player("bob")
    assert alice is not None and bob is not None
    room = rooms.report_status(
        room, "alice", [(bob.id, "CONNECTION_ESTABLISHED")], now_ms=T0 + 3, limits=LIMITS
    )
    assert not rooms.is_connected(room, alice)  # one-sided is not connected
    assert rooms.room_status(room) is RoomState.CONNECTING
    room = rooms.report_status(
        room, "bob", [(alice.id, "CONNECTION_ESTABLISHED")], now_ms=T0 + 4, limits=LIMITS
    )
    assert rooms.room_status(room) is RoomState.ACTIVE
    room = rooms.report_status(
        room, "bob", [(alice.id, "CONNECTION_FAILED")], now_ms=T0 + 5, limits=LIMITS
    )
    assert rooms.room_status(room) is RoomState.CONNECTING


def test_auto_matching_runs_alongside_invitations() -> None:
    """With invitations answered and slots open the room is AUTO_MATCHING."""
    room = make_room(invited=("bob",), criteria=Criteria(1, 1))
    assert rooms.room_status(room) is RoomState.INVITING
    room = join(room, "bob")
    assert rooms.room_status(room) is RoomState.AUTO_MATCHING


def test_room_is_deleted_when_no_game_can_form() -> None:
    """Every invitee declined before anyone joined, no auto-match: DELETED."""
    room = rooms.decline(make_room(), "bob", now_ms=T0 + 1, limits=LIMITS)
    assert rooms.room_status(room) is RoomState.INVITING
    room = rooms.decline(room, "carol", now_ms=T0 + 2, limits=LIMITS)
    assert rooms.room_status(room) is RoomState.DELETED


def test_room_with_joined_players_lives_until_the_last_leaves() -> None:
    """Once others joined, the room lives until its last JOINED participant leaves."""
    room = join(rooms.decline(make_room(), "carol", now_ms=T0, limits=LIMITS), "bob")
    room = rooms.leave(room, "alice", reason="PLAYER_LEFT", now_ms=T0 + 5, limits=LIMITS)
    assert rooms.room_status(room) is not RoomState.DELETED
    room = rooms.leave(room, "bob", reason=None, now_ms=T0 + 6, limits=LIMITS)
    assert rooms.room_status(room) is RoomState.DELETED
    with pytest.raises(Conflict):
        rooms.leave(room, "bob", reason=None, now_ms=T0 + 7, limits=LIMITS)


# ---- transitions ------------------------------------------------------------------------------


def test_each_accepted_change_is_version_plus_one_and_rejects_change_nothing() -> None:
    """Versions step by one; a rejected command leaves the input document untouched."""
    room = make_room()
    joined = join(room, "bob")
    assert joined.version == room.version + 1
    before = room.participants[1].status
    with pytest.raises(Conflict):
        join(joined, "bob")
    assert room.participants[1].status is before
    assert joined.of_player("bob").status is PStatus.JOINED  # type: ignore[union-attr]


@pytest.mark.parametrize("command", ["join", "decline"])
def test_only_invited_participants_join_or_decline(command: str) -> None:
    """join/decline by the creator is 409; by a stranger 404 (the room does not exist for them)."""
    room = make_room()

    def run(player: str) -> RoomDoc:
        if command == "join":
            return join(room, player)
        return rooms.decline(room, player, now_ms=T0 + 1, limits=LIMITS)

    with pytest.raises(Conflict):
        run("alice")
    with pytest.raises(NotFound):
        run("mallory")


def test_join_of_deleted_room_is_a_conflict() -> None:
    """An invitee of a room whose creator left (no one else joined) cannot join it."""
    room = rooms.leave(make_room(), "alice", reason=None, now_ms=T0 + 1, limits=LIMITS)
    assert rooms.room_status(room) is RoomState.DELETED
    with pytest.raises(Conflict) as info:
        join(room, "bob")
    assert "deleted" in info.value.msgid


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("PLAYER_LEFT", "PLAYER_LEFT"),
        ("GAME_LEFT", "GAME_LEFT"),
        ("REALTIME_ABANDONED", "ABANDONED"),
        ("REALTIME_PEER_CONNECTION_FAILURE", "PEER_CONNECTION_FAILURE"),
        ("REALTIME_SERVER_CONNECTION_FAILURE", "SERVER_ERROR"),
        ("REALTIME_SERVER_ERROR", "SERVER_ERROR"),
        ("REALTIME_TIMEOUT", "TIMEOUT"),
        ("REALTIME_CLIENT_DISCONNECTING", "PLAYER_LEFT"),
        ("REALTIME_GAME_CRASHED", "ABANDONED"),
        ("SOMETHING_NEW", "PLAYER_LEFT"),
        (None, "PLAYER_LEFT"),
    ],
)
def test_leave_reason_mapping(reason: str | None, expected: str) -> None:
    """Request reasons map to participant leaveReasons as docs/spec.md §4 lists."""
    room = join(make_room(), "bob")
    room = rooms.leave(room, "bob", reason=reason, now_ms=T0 + 3, limits=LIMITS)
    bob = room.of_player("bob")
    assert bob is not None and bob.status is PStatus.LEFT and bob.leave_reason == expected


def test_leaving_while_auto_matching_withdraws_the_ticket() -> None:
    """The creator leaving an auto-matching room closes its ticket."""
    room = join(make_room(invited=("bob",), criteria=Criteria(1, 2)), "bob")
    assert room.ticket_open
    room = rooms.leave(room, "alice", reason=None, now_ms=T0 + 2, limits=LIMITS)
    assert not room.ticket_open
    # bob, alone, is trivially connected to every other joined participant
    assert rooms.room_status(room) is RoomState.ACTIVE


def test_report_status_validates_peers_and_statuses() -> None:
    """Unknown peers and unknown statuses are 400s naming the update's field."""
    room = join(make_room(), "bob")
    with pytest.raises(InvalidArgument) as info:
        rooms.report_status(room, "alice", [("nope", "CONNECTION_ESTABLISHED")], now_ms=T0,
                            limits=LIMITS)  # fmt: skip
    assert info.value.params["field"] == "updates[0].participantId"
    bob = room.of_player("bob")
    assert bob is not None
    with pytest.raises(InvalidArgument) as info:
        rooms.report_status(room, "alice", [(bob.id, "MAYBE")], now_ms=T0, limits=LIMITS)
    assert info.value.params["field"] == "updates[0].status"
    with pytest.raises(Conflict):
        rooms.report_status(room, "carol", [(bob.id, "CONNECTION_ESTABLISHED")], now_ms=T0,
                            limits=LIMITS)  # fmt: skip


# ---- timeouts ---------------------------------------------------------------------------------


def test_unanswered_invitation_counts_as_declined() -> None:
    """Past the invite timeout an INVITED participant is DECLINED (one version step)."""
    room = join(make_room(), "bob")
    assert rooms.expire(room, T0 + LIMITS.invite_timeout_ms - 1, LIMITS) is None
    assert rooms.next_deadline(room, LIMITS) == T0 + LIMITS.invite_timeout_ms
    expired = rooms.expire(room, T0 + LIMITS.invite_timeout_ms, LIMITS)
    assert expired is not None and expired.version == room.version + 1
    assert expired.of_player("carol").status is PStatus.DECLINED  # type: ignore[union-attr]
    with pytest.raises(Conflict):
        join(room, "carol", now=T0 + LIMITS.invite_timeout_ms)  # expired before the join


def test_unmatched_ticket_ends_the_room_with_timeout() -> None:
    """A seeker whose ticket times out leaves with TIMEOUT; the room is DELETED."""
    room = make_room(invited=(), criteria=Criteria(1, 3))
    assert rooms.is_seeker(room)
    expired = rooms.expire(room, T0 + LIMITS.automatch_timeout_ms, LIMITS)
    assert expired is not None
    alice = expired.of_player("alice")
    assert alice is not None and alice.status is PStatus.LEFT and alice.leave_reason == "TIMEOUT"
    assert rooms.room_status(expired) is RoomState.DELETED
    assert rooms.next_deadline(expired, LIMITS) is None


def test_ticket_timeout_with_other_players_only_closes_the_slots() -> None:
    """When invitees joined, the timed-out ticket just closes; the game goes on."""
    room = join(make_room(invited=("bob",), criteria=Criteria(1, 1)), "bob")
    expired = rooms.expire(room, T0 + LIMITS.automatch_timeout_ms, LIMITS)
    assert expired is not None and not expired.ticket_open
    assert rooms.room_status(expired) is RoomState.CONNECTING
    assert all(p.status is PStatus.JOINED for p in expired.participants)


# ---- auto-matched rooms -----------------------------------------------------------------------


def test_auto_matched_players_are_anonymous_to_each_other() -> None:
    """Host players see a seeker as autoMatched with an anonymous player, and vice versa."""
    host = join(make_room(invited=("bob",), criteria=Criteria(1, 1)), "bob")
    seeker = Participant(id="p9", player_id="zed", status=PStatus.JOINED, via=Via.AUTOMATCH,
                         since_ms=T0, name="Zed")  # fmt: skip
    room = rooms.add_automatched(host, [seeker], match_id="m1", now_ms=T0 + 5, limits=LIMITS)
    assert not room.ticket_open and room.auto_matched == 1
    ctx = ViewContext(locale="es", base_url="http://h")
    by_alice = {p.id: p for p in render_room(room, "alice", ctx).participants or []}
    assert by_alice["p9"].auto_matched is True and by_alice["p9"].player is None
    anon = by_alice["p9"].auto_matched_player
    assert anon is not None and anon.display_name and anon.display_name.startswith("Jugador ")
    assert by_alice["p2"].player is not None  # bob: invited by alice, not anonymous
    by_zed = {p.id: p for p in render_room(room, "zed", ctx).participants or []}
    assert by_zed["p9"].player is not None and by_zed["p9"].auto_matched is None
    assert by_zed["p1"].auto_matched is True and by_zed["p1"].player is None
    # stable within the room
    again = {p.id: p for p in render_room(room, "bob", ctx).participants or []}
    assert again["p9"].auto_matched_player == anon


def test_seeker_tombstone_points_at_its_new_room() -> None:
    """merge_into deletes the seeker's room and names the room it moved into."""
    seeker = make_room(invited=(), criteria=Criteria(1, 1))
    tomb = rooms.merge_into(seeker, "host-room", now_ms=T0 + 1)
    assert rooms.room_status(tomb) is RoomState.DELETED
    assert render_room(tomb, "alice", ViewContext()).merged_into_room_id == "host-room"


# ---- the view ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "text"),
    [("en", "Alice invited you to play"), ("es", "Alice te invitó a jugar"),
     ("hi", "Alice ने आपको खेलने के लिए आमंत्रित किया")],
)  # fmt: skip
def test_invitee_view_has_inviter_and_localized_description(locale: str, text: str) -> None:
    """An invitee gets inviterId and a description in their language."""
    room = make_room()
    view = render_room(room, "bob", ViewContext(locale=locale))
    assert view.description == text
    assert view.inviter_id == room.creator
    creator_view = render_room(room, "alice", ViewContext(locale=locale))
    assert creator_view.inviter_id is None


def test_room_status_resource_carries_status_version() -> None:
    """reportStatus answers a RoomStatus with statusVersion = the room's version."""
    room = connect_all(join(rooms.decline(make_room(), "carol", now_ms=T0, limits=LIMITS), "bob"))
    status = render_status(room, "alice", ViewContext())
    assert status.status_version == room.version and status.status == "ROOM_ACTIVE"
    assert all(p.connected for p in status.participants or [] if p.status == "PARTICIPANT_JOINED")


# ---- properties over random command sequences -------------------------------------------------

PLAYERS = ("alice", "bob", "carol", "dave", "mallory")
commands = st.lists(
    st.tuples(
        st.sampled_from(["join", "decline", "leave", "report", "expire"]),
        st.sampled_from(PLAYERS),
        st.integers(min_value=0, max_value=400_000),
    ),
    max_size=25,
)


def apply(room: RoomDoc, command: str, player: str, now: int) -> RoomDoc | None:
    if command == "join":
        return join(room, player, now)
    if command == "decline":
        return rooms.decline(room, player, now_ms=now, limits=LIMITS)
    if command == "leave":
        return rooms.leave(room, player, reason="PLAYER_LEFT", now_ms=now, limits=LIMITS)
    if command == "report":
        peers = [(q.id, "CONNECTION_ESTABLISHED") for q in room.joined() if q.player_id != player]
        return rooms.report_status(room, player, peers, now_ms=now, limits=LIMITS)
    return rooms.expire(room, now, LIMITS)


@settings(max_examples=300, deadline=None)
@given(commands, st.booleans())
def test_random_sequences_keep_the_invariants(
    sequence: list[tuple[str, str, int]], auto: bool
) -> None:
    """Versions step by one; DELETED is final; JOINED never returns to INVITED; statuses derive."""
    room = make_room(invited=("bob", "carol", "dave"), criteria=Criteria(1, 2) if auto else None)
    now = T0
    for command, player, step in sequence:
        now += step
        status_before = rooms.room_status(room)
        try:
            nxt = apply(room, command, player, now)
        except (Conflict, NotFound, InvalidArgument):
            continue
        if nxt is None:
            continue
        assert status_before is not RoomState.DELETED, "a deleted room changed"
        assert nxt.version == room.version + 1
        for before in room.participants:
            after = nxt.participant(before.id)
            assert after is not None
            if before.status in (PStatus.JOINED, PStatus.LEFT, PStatus.DECLINED):
                assert after.status is not PStatus.INVITED
            if before.status in (PStatus.LEFT, PStatus.DECLINED):
                assert after.status is before.status
        if player == "mallory" and command != "expire":
            raise AssertionError("a stranger changed the room")
        room = nxt
    joined = room.joined()
    status = rooms.room_status(room)
    if not joined:
        assert status is RoomState.DELETED
    if status is RoomState.ACTIVE:
        assert all(rooms.is_connected(room, p) for p in joined)


# ---- derived state: the one-pass forms agree with docs/spec.md §4's definitions
# ----------------------


def _spec_status(room: RoomDoc) -> RoomState:
    """docs/spec.md §4 written out literally, as the reference for the one-pass `room_status`."""
    joined = [p for p in room.participants if p.status is PStatus.JOINED]
    others = [p for p in room.participants
              if p.id != room.creator and p.status in (PStatus.JOINED, PStatus.LEFT)]  # fmt: skip
    pending = [p for p in room.participants if p.status is PStatus.INVITED]
    if room.merged_into or not joined or not (others or pending or room.ticket_open):
        return RoomState.DELETED
    if pending:
        return RoomState.INVITING
    if room.ticket_open:
        return RoomState.AUTO_MATCHING
    pairs = [(p, q) for p in joined for q in joined if p is not q]
    if all(q.id in p.established and p.id in q.established for p, q in pairs):
        return RoomState.ACTIVE
    return RoomState.CONNECTING


@st.composite
def arbitrary_rooms(draw: st.DrawFn) -> RoomDoc:
    count = draw(st.integers(1, 8))
    ids = [f"p{i}" for i in range(count)]
    participants = [
        Participant(
            id=pid,
            player_id=f"player{i}",
            status=draw(st.sampled_from(list(PStatus))),
            via=Via.INVITED,
            since_ms=T0,
            established=draw(st.lists(st.sampled_from(ids), unique=True)),
        )
        for i, pid in enumerate(ids)
    ]
    return RoomDoc(
        room_id="r1",
        app_id="app",
        version=1,
        created_ms=T0,
        creator="p0",
        participants=participants,
        ticket_open=draw(st.booleans()),
        merged_into=draw(st.sampled_from([None, "other"])),
    )


@settings(max_examples=400, deadline=None)
@given(arbitrary_rooms())
def test_room_status_and_connected_ids_match_the_spec_definitions(room: RoomDoc) -> None:
    assert rooms.room_status(room) is _spec_status(room)
    assert rooms.connected_ids(room) == {
        p.id for p in room.participants if rooms.is_connected(room, p)
    }


def test_commands_work_on_a_deep_copy() -> None:
    """A command's result shares nothing mutable with its input, and a rejected command
    changes nothing: the store's cached document is never edited in place."""
    room = join(join(make_room(), "bob"), "carol")
    before = msgspec.msgpack.encode(room)
    with pytest.raises(Conflict):
        join(room, "bob")  # already joined: rejected after the copy was made
    after = connect_all(room)
    assert after.version > room.version
    for original, copied in [
        (room, after),
        *zip(room.participants, after.participants, strict=True),
    ]:
        for field in msgspec.structs.fields(original):
            value = getattr(original, field.name)
            if isinstance(value, list | dict | set):
                assert getattr(copied, field.name) is not value, field.name
    after.participants[0].established.append("x")
    after.participants[0].capabilities.append("y")
    after.participants.append(after.participants[0])
    assert msgspec.msgpack.encode(room) == before


@settings(max_examples=200, deadline=None)
@given(arbitrary_rooms())
def test_the_live_rule_given_the_derived_status_is_the_live_rule(room: RoomDoc) -> None:
    """Callers that know the room's derived status pass it (realtime/views.py): same answers."""
    deleted = rooms.room_status(room) is RoomState.DELETED
    for player in [p.player_id for p in room.participants] + ["nobody"]:
        assert rooms.is_live(room, player, deleted=deleted) is rooms.is_live(room, player)
        expected = (p := room.of_player(player)) is not None and (
            p.status is PStatus.JOINED and not deleted
        )
        assert rooms.is_live(room, player) is expected


@st.composite
def mixed_rooms(draw: st.DrawFn) -> RoomDoc:
    """Rooms whose participants came in every way (creator, invited by someone, auto-matched):
    who is anonymous to whom differs from receiver to receiver."""
    room = draw(arbitrary_rooms())
    ids = [p.id for p in room.participants]
    participants = [
        msgspec.structs.replace(
            p,
            via=Via.CREATOR if n == 0 else draw(st.sampled_from([Via.INVITED, Via.AUTOMATCH])),
            invited_by=draw(st.sampled_from([None, *ids])),
            name=draw(st.sampled_from([None, f"Name {n}"])),
        )
        for n, p in enumerate(room.participants)
    ]
    return msgspec.structs.replace(room, participants=participants)


@settings(max_examples=300, deadline=None)
@given(mixed_rooms())
def test_a_view_rendered_with_the_shared_parts_is_the_view_rendered_alone(room: RoomDoc) -> None:
    """The push path renders a room version for each of its receivers with one `Shared`
    (realtime/views.py): every receiver sees exactly what a render of its own shows."""
    shared = Shared(room)
    receivers = [p.player_id for p in room.participants] + ["nobody"]
    for locale, base_url in (("en", "http://a"), ("es", "http://a"), ("en", "http://b")):
        ctx = ViewContext(locale=locale, base_url=base_url)
        for player in receivers:
            alone = msgspec.json.encode(render_room(room, player, ctx))
            assert msgspec.json.encode(render_room(room, player, ctx, shared)) == alone
