"""In-room message rules, the binary frame format and TURN credentials (docs/messages.md),
tested pure: no store, no socket, time as an argument."""

from __future__ import annotations

import base64
import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from roomsvc.common.errors import NotFound
from roomsvc.common.rate import TokenBucket
from roomsvc.messages import frames, ice, rules
from roomsvc.rooms.doc import Participant, PStatus, RoomDoc, Via
from roomsvc.rooms.rules import has_others, is_live


def _room(*statuses: PStatus, deleted: bool = False) -> RoomDoc:
    people = [
        Participant(id=f"p_{i}", player_id=f"player{i}", status=s, via=Via.INVITED, since_ms=1)
        for i, s in enumerate(statuses)
    ]
    if deleted:
        people = [
            Participant(id=p.id, player_id=p.player_id, status=PStatus.LEFT, via=p.via, since_ms=1)
            for p in people
        ]
    return RoomDoc(room_id="r1", app_id="app", version=7, created_ms=1, creator="p_0",
                   participants=people)  # fmt: skip


def test_omitted_recipients_are_every_other_joined_participant() -> None:
    """Without recipients a message goes to every other JOINED participant, never the sender."""
    doc = _room(PStatus.JOINED, PStatus.JOINED, PStatus.INVITED, PStatus.JOINED)
    route = rules.route(doc, "r1", "player0", None)
    assert route == rules.Route(7, "p_0", ("p_1", "p_3"))


def test_named_recipients_are_deduplicated_and_the_sender_dropped() -> None:
    """Repeated recipients count once and the sender's own id is never echoed."""
    doc = _room(PStatus.JOINED, PStatus.JOINED, PStatus.JOINED)
    route = rules.route(doc, "r1", "player1", ["p_2", "p_1", "p_2", "p_0"])
    assert route.sender == "p_1"
    assert route.recipients == ("p_2", "p_0")


def test_a_recipient_not_joined_is_named_with_gpgs_7003() -> None:
    """A recipient who is INVITED (or unknown) is an error naming it, GPGS status 7003."""
    doc = _room(PStatus.JOINED, PStatus.INVITED)
    with pytest.raises(rules.ParticipantNotConnected) as caught:
        rules.route(doc, "r1", "player0", ["p_1"])
    assert caught.value.gpgs_status == 7003
    assert caught.value.params == {"participant": "p_1"}
    with pytest.raises(rules.ParticipantNotConnected):
        rules.route(doc, "r1", "player0", ["p_nobody"])


def test_a_sender_not_joined_gets_7004_and_a_stranger_404() -> None:
    """An INVITED sender gets 7004 (room not joined); a non-participant gets 404."""
    doc = _room(PStatus.JOINED, PStatus.INVITED)
    with pytest.raises(rules.RoomNotJoined) as caught:
        rules.route(doc, "r1", "player1", None)
    assert caught.value.gpgs_status == 7004
    with pytest.raises(NotFound):
        rules.route(doc, "r1", "stranger", None)
    with pytest.raises(NotFound):
        rules.route(None, "r1", "player0", None)


def test_a_deleted_room_is_inactive_7005() -> None:
    """Once every participant left (the room is DELETED) a send gets 7005."""
    doc = _room(PStatus.JOINED, PStatus.JOINED, deleted=True)
    with pytest.raises(rules.RoomInactive) as caught:
        rules.route(doc, "r1", "player0", None)
    assert caught.value.gpgs_status == 7005
    assert not is_live(doc, "player0")
    assert is_live(_room(PStatus.JOINED, PStatus.JOINED), "player0")


def test_size_limits_are_gpgs_limits() -> None:
    """1,400 bytes reliable, 1,168 unreliable: one byte over is an error naming the limit."""
    rules.check_size("messageData", 1400, rules.data_limit(True))
    with pytest.raises(rules.MessageTooLarge) as caught:
        rules.check_size("messageData", 1169, rules.data_limit(False))
    assert caught.value.params == {"field": "messageData", "size": 1169, "limit": 1168}


def test_the_rate_bucket_refills_and_marks_a_flood_abusive() -> None:
    """120/s with bursts of 240: the 241st at once is refused; 240 more in debt is abusive."""
    bucket = TokenBucket(120.0, now=0.0)
    assert all(bucket.take(0.0) for _ in range(240))
    assert not bucket.take(0.0)
    assert not bucket.abusive
    for _ in range(240):
        bucket.take(0.0)
    assert bucket.abusive
    later = TokenBucket(120.0, now=0.0)
    for _ in range(241):
        later.take(0.0)
    assert later.take(1.0)  # a second refills 120 tokens


@given(
    reliable=st.booleans(),
    tag=st.integers(0, 2**32 - 1),
    room=st.text(min_size=1, max_size=40),
    recipients=st.lists(st.text(min_size=1, max_size=30), max_size=5),
    payload=st.binary(max_size=1400),
)
def test_send_frames_round_trip(reliable: bool, tag: int, room: str, recipients: list[str],
                                payload: bytes) -> None:  # fmt: skip
    """A SEND frame decodes to what was encoded (no recipients: every other participant)."""
    frame = frames.SendFrame(reliable, tag, room, recipients or None, payload)
    assert frames.decode_send(frames.encode_send(frame)) == frame


@given(st.binary(max_size=64))
def test_any_bytes_decode_or_raise_bad_frame(data: bytes) -> None:
    """Every client frame is a SendFrame or a BadFrame naming the problem, nothing else."""
    try:
        frames.decode_send(data)
    except frames.BadFrame as error:
        assert error.params["problem"]


def test_server_frames_decode() -> None:
    """MESSAGE, SENT and REJECTED frames carry what the server put in them."""
    head = frames.message_head(True, 2**40, "room-1", "p_2")
    message = frames.decode_server(head + b"\x00move")
    assert (message.op, message.reliable, message.seq) == (frames.MESSAGE, True, 2**40)
    assert (message.room_id, message.sender, message.payload) == ("room-1", "p_2", b"\x00move")
    sent = frames.decode_server(frames.encode_sent(9, 41))
    assert (sent.op, sent.tag, sent.token_id) == (frames.SENT, 9, 41)
    rejected = frames.decode_server(frames.encode_rejected(9, b'{"code":-32009}'))
    assert (rejected.op, rejected.error_json) == (frames.REJECTED, b'{"code":-32009}')


def test_turn_credentials_follow_the_turn_rest_scheme() -> None:
    """username = <expiry>:<player>, credential = base64(HMAC-SHA1(secret, username))."""
    servers = ice.ice_servers(("stun:127.0.0.1:3478",), ("turn:127.0.0.1:3478",), "s3cret",
                              600, "alice", now_s=1_000_000)  # fmt: skip
    stun, turn = servers.ice_servers
    assert stun.urls == ["stun:127.0.0.1:3478"] and stun.username is None
    assert turn.username == "1000600:alice"
    expected = base64.b64encode(hmac.new(b"s3cret", b"1000600:alice", hashlib.sha1).digest())
    assert turn.credential == expected.decode()
    assert servers.ttl_seconds == 600


def test_no_turn_without_a_secret() -> None:
    """TURN URIs without a secret give no TURN entry (the relay is the fallback)."""
    servers = ice.ice_servers((), ("turn:127.0.0.1:3478",), None, 600, "alice", now_s=0)
    assert servers.ice_servers == []


def test_a_room_is_followed_unless_the_player_is_alone_in_it() -> None:
    """(docs/messages.md "Across processes") Alone (a seeker's room), or with nobody but those
    who declined, nothing can reach the player; an invitee, a peer, or a peer who joined and
    left (and may have sent something) make the room one to follow."""
    joined, invited, left = PStatus.JOINED, PStatus.INVITED, PStatus.LEFT
    declined = PStatus.DECLINED
    assert not has_others(_room(joined), "player0")
    assert not has_others(_room(joined, declined), "player0")
    assert has_others(_room(joined, invited), "player0")
    assert has_others(_room(joined, joined), "player0")
    assert has_others(_room(joined, left), "player0")
    assert has_others(_room(left, joined), "player1")  # the creator, who may have sent
