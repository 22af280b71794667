"""In-room messages through the relay (docs/messages.md): real `roomsvc serve` processes, real
WebSocket clients (`roomsvc.client`), a real valkey."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator

import httpx
import pytest
import redis.asyncio

from roomsvc.client import CallError
from roomsvc.store import keys
from tests.messaging import Player, players, room_of
from tests.raw_socket import drained_until_cut, stalled_socket
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, wait_until

GRACE = {"ROOMSVC_PRESENCE_GRACE_SECONDS": "3", "ROOMSVC_MESSAGES_PER_SECOND": "5000"}


@pytest.fixture(scope="module")
def pair(valkey: ValkeyProcess) -> Iterator[list[ServerProcess]]:
    first = ServerProcess(valkey.url, env=GRACE).start(wait=False)
    second = ServerProcess(valkey.url, env=GRACE).start()
    wait_until(first.healthy, timeout=200 * UNIT)
    yield [first, second]
    first.stop()
    second.stop()


def payloads(player: Player, room_id: str) -> list[bytes]:
    return [m.data for m in player.messages if m.room_id == room_id]


async def test_a_reliable_message_reaches_the_others_and_never_the_sender(
    pair: list[ServerProcess], app_id: str
) -> None:
    async with players(pair, app_id, "ann", "bob", "cid") as (ann, bob, cid):
        room_id = await room_of(ann, bob, cid)
        token = await ann.client.send_message(room_id, b"hello all")
        assert token >= 1
        for p in (bob, cid):
            await p.until(lambda p=p: payloads(p, room_id) == [b"hello all"])
            message = p.messages[0]
            assert message.sender_participant_id == ann.participant[room_id]
            assert message.is_reliable and message.seq == 1
        token2 = await ann.client.send_reliable_message(room_id, bob.participant[room_id], b"b")
        assert token2 == token + 1
        await bob.until(lambda: payloads(bob, room_id) == [b"hello all", b"b"])
        assert bob.messages[1].seq == 2
        await cid.client.send_message(room_id, b"from cid")  # a round trip for cid's feed
        await ann.until(lambda: payloads(ann, room_id) == [b"from cid"])
        assert payloads(cid, room_id) == [b"hello all"]  # not addressed to cid; not echoed


async def test_unreliable_messages_and_the_binary_format(
    pair: list[ServerProcess], app_id: str
) -> None:
    async with (
        players(pair[0], app_id, "dee") as (dee,),
        players(pair[1], app_id, "eli", binary=True) as (eli,),
    ):
        room_id = await room_of(dee, eli)
        await dee.client.send_unreliable_message_to_others(room_id, b"\x00\x01 fast")
        await eli.until(lambda: payloads(eli, room_id) == [b"\x00\x01 fast"])
        assert not eli.messages[0].is_reliable and eli.messages[0].seq is None
        # eli sends binary SEND frames; dee, on a JSON socket, gets the `message` notification
        token = await eli.client.send_message(room_id, bytes(range(256)) * 4)
        assert token == 1
        await dee.until(lambda: payloads(dee, room_id) == [bytes(range(256)) * 4])
        assert dee.messages[0].is_reliable and dee.messages[0].seq == 1


async def test_limits_and_errors_name_the_problem(pair: list[ServerProcess], app_id: str) -> None:
    async with players(pair, app_id, "fay", "gus", "hal") as (fay, gus, hal):
        room = fay.learn(await fay.client.create_room(invited_player_ids=["gus"]))
        room_id = room["roomId"]
        gus.learn(room)

        async def error(player: Player, coro_fn) -> CallError:  # type: ignore[no-untyped-def]
            with pytest.raises(CallError) as caught:
                await coro_fn(player)
            return caught.value

        # gus is invited, not joined: 7004; hal is no participant: the room does not exist
        e = await error(gus, lambda p: p.client.send_message(room_id, b"x"))
        assert e.data["gpgsStatus"] == 7004 and e.data["reason"] == "roomNotJoined"
        e = await error(hal, lambda p: p.client.send_message(room_id, b"x"))
        assert e.data["code"] == 404
        # to a participant who has not joined: 7003, naming the participant
        gus_pid = gus.participant[room_id]
        e = await error(fay, lambda p: p.client.send_reliable_message(room_id, gus_pid, b"x"))
        assert e.data["gpgsStatus"] == 7003 and gus_pid in str(e)
        await gus.client.join_room(room_id)
        e = await error(fay, lambda p: p.client.send_message(room_id, b"x" * 1401))
        assert e.data["reason"] == "messageTooLarge" and "1400" in str(e)
        e = await error(fay, lambda p: p.client.send_message(room_id, b"x" * 1169,
                                                             reliable=False))  # fmt: skip
        assert e.data["reason"] == "messageTooLarge" and "1168" in str(e)
        await fay.client.send_message(room_id, b"x" * 1400)  # the limit itself is allowed
        e = await error(fay, lambda p: p.client.call("rooms.sendMessage", {
            "roomId": room_id, "body": {"messageData": "not base64!"}}))  # fmt: skip
        assert e.data["code"] == 400 and "messageData" in str(e)
        e = await error(fay, lambda p: p.client.signal(room_id, gus_pid, {"sdp": "x" * 17000}))
        assert e.data["reason"] == "messageTooLarge" and "16384" in str(e)
        await gus.until(lambda: payloads(gus, room_id) == [b"x" * 1400])
        # after leaving, a player neither sends nor receives
        await gus.client.leave_room(room_id)
        e = await error(gus, lambda p: p.client.send_message(room_id, b"x"))
        assert e.data["gpgsStatus"] == 7004
        e = await error(fay, lambda p: p.client.send_reliable_message(room_id, gus_pid, b"x"))
        assert e.data["gpgsStatus"] == 7003
        # the room is gone for everyone once fay leaves too: DELETED, 7005
        await fay.client.leave_room(room_id)
        e = await error(fay, lambda p: p.client.send_message(room_id, b"x"))
        assert e.data["gpgsStatus"] in (7004, 7005)


async def test_signals_and_ice_servers(pair: list[ServerProcess], app_id: str) -> None:
    async with players(pair, app_id, "ida", "jon") as (ida, jon):
        room_id = await room_of(ida, jon)
        assert ida.client.welcome["iceServers"] == []  # nothing configured: relay only
        offer = {"type": "offer", "sdp": "v=0\r\n", "nested": {"n": [1, 2.5, None]}}
        await ida.client.signal(room_id, jon.participant[room_id], offer)
        await jon.until(lambda: len(jon.signals) == 1)
        assert jon.signals[0] == {"roomId": room_id, "data": offer,
                                  "senderParticipantId": ida.participant[room_id]}  # fmt: skip
        servers = await jon.client.ice_servers()
        assert servers["kind"] == "roomsvc#iceServers" and servers["iceServers"] == []
        with pytest.raises(CallError) as caught:
            await ida.client.call("rooms.signal", {"roomId": room_id, "body": {
                "recipientParticipantId": jon.participant[room_id], "data": [1]}})  # fmt: skip
        assert "data" in str(caught.value)


async def test_reliable_messages_cross_processes_in_order_exactly_once(
    pair: list[ServerProcess], app_id: str
) -> None:
    """The rule of (docs/messages.md "Delivery"): two senders on different processes,
    hundreds of messages in flight at once; each recipient gets each sender's in order, once."""
    async with players(pair, app_id, "kai", "lea", "max", "ned") as everyone:
        kai, lea, mx, ned = everyone
        room_id = await room_of(*everyone)
        count = 300

        async def burst(player: Player) -> None:
            for start in range(0, count, 50):  # 50 in flight at a time
                await asyncio.gather(*(
                    player.client.send_message(room_id, f"{player.name}:{n}".encode())
                    for n in range(start, start + 50)))  # fmt: skip

        await asyncio.gather(burst(kai), burst(lea))
        for p in (mx, ned):
            await p.until(lambda p=p: len(payloads(p, room_id)) >= 2 * count)
        await asyncio.sleep(0.2)  # anything extra (a duplicate) would have arrived by now
        for p in (mx, ned):
            got = payloads(p, room_id)
            assert len(got) == 2 * count
            seqs = [m.seq for m in p.messages if m.room_id == room_id]
            assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
            for sender in ("kai", "lea"):
                mine = [int(d.split(b":")[1]) for d in got if d.startswith(sender.encode())]
                assert sorted(mine) == list(range(count))
        # each sender's own burst reached the other sender too, but never itself
        assert all(not d.startswith(b"kai:") for d in payloads(kai, room_id))
        assert len(payloads(kai, room_id)) == count


async def test_a_room_of_one_is_not_followed_and_an_inviting_room_is_from_its_creation(
    pair: list[ServerProcess], valkey: ValkeyProcess, app_id: str
) -> None:
    """(docs/messages.md "Across processes") A seeker alone in its room costs no subscription.
    A room with an invitee is followed from its creation: the invitee's first signal, sent the
    moment it joins (signals are not kept for a late subscriber), reaches the creator, and so
    does a reliable message, exactly once."""
    admin = redis.asyncio.Redis.from_url(valkey.url)

    async def followers(room_id: str) -> int:
        channel = keys.room_message_channel(app_id, room_id)
        counts = await admin.execute_command("PUBSUB", "SHARDNUMSUB", channel)
        return int(counts[1])

    try:
        async with players(pair, app_id, "ora", "pia", "quy") as (ora, pia, quy):
            room = ora.learn(await ora.client.create_room(invited_player_ids=["pia"]))
            room_id = room["roomId"]
            seeking = await quy.client.create_room(
                auto_matching_criteria={"minAutoMatchingPlayers": 2, "maxAutoMatchingPlayers": 2}
            )
            await asyncio.sleep(0.3)  # a subscription, had one been made, is confirmed by now
            assert await followers(room_id) == 1  # ora's process, before anyone joined
            assert await followers(seeking["roomId"]) == 0
            pia.learn(await pia.client.join_room(room_id))  # pia is on the other process
            await pia.client.signal(room_id, ora.participant[room_id], {"type": "offer"})
            await pia.client.send_message(room_id, b"at once")
            await ora.until(lambda: payloads(ora, room_id) == [b"at once"])
            await ora.until(lambda: [s["data"] for s in ora.signals] == [{"type": "offer"}])
            await asyncio.sleep(0.2)  # a duplicate (live and backlog) would have arrived
            assert payloads(ora, room_id) == [b"at once"]
            assert ora.messages[0].seq == 1
            assert await followers(room_id) == 2
    finally:
        await admin.aclose()


async def test_a_cut_socket_resumes_without_gap_or_duplicate(
    pair: list[ServerProcess], app_id: str
) -> None:
    """docs/messages.md "Resume": the recipient's socket dies, messages keep coming, it
    reconnects within the grace and resumes: every message once, in order."""
    async with players(pair, app_id, "oli", "pia") as (oli, pia):
        room_id = await room_of(oli, pia)
        reconnected = asyncio.Event()
        pia.client.on("reconnected", lambda _: reconnected.set())
        sent = 0

        async def send(n: int) -> None:
            nonlocal sent
            for _ in range(n):
                await oli.client.send_message(room_id, str(sent).encode())
                sent += 1

        await send(20)
        await pia.until(lambda: len(payloads(pia, room_id)) == 20)
        pia.client.drop()  # the link dies: no close frame
        await send(30)  # while pia is away (its seat kept: the grace has not passed)
        await asyncio.wait_for(reconnected.wait(), 100 * UNIT)
        await send(10)
        await pia.until(lambda: len(payloads(pia, room_id)) >= 60)
        await asyncio.sleep(0.2)
        assert payloads(pia, room_id) == [str(n).encode() for n in range(60)]
        seqs = [m.seq for m in pia.messages]
        assert seqs == list(range(1, 61))


async def test_resume_reports_what_the_backlog_still_holds(
    valkey: ValkeyProcess, app_id: str
) -> None:
    """A backlog of 5: resuming from further back replays what is kept, complete=false."""
    server = ServerProcess(valkey.url, env={"ROOMSVC_MESSAGE_BACKLOG": "5"}).start()
    try:
        async with players(server, app_id, "quin", "ray") as (quin, ray):
            room_id = await room_of(quin, ray)
            for n in range(8):
                await quin.client.send_message(room_id, str(n).encode())
            await ray.until(lambda: len(payloads(ray, room_id)) == 8)
        async with players(server, app_id, "ray") as (ray2,):
            # the welcome holds the room until resumed: nothing live arrives first
            result = await ray2.client.resume_messages(room_id, 1)
            assert result == {"kind": "roomsvc#messagesResumed", "replayed": 5, "lastSeq": 8,
                              "complete": False}  # fmt: skip
            assert [m.data for m in ray2.messages] == [str(n).encode() for n in range(3, 8)]
            again = await ray2.client.resume_messages(room_id, 6)
            assert again["replayed"] == 0 and again["complete"] is True  # given already
    finally:
        server.stop()


async def test_a_flooding_socket_is_limited_then_cut(valkey: ValkeyProcess, app_id: str) -> None:
    """docs/messages.md "Rate": past the rate, reliable sends get RateLimited, unreliable ones
    are dropped; a socket that keeps flooding is closed with 1008. Others are unaffected."""
    server = ServerProcess(valkey.url, env={"ROOMSVC_MESSAGES_PER_SECOND": "20"}).start()
    try:
        async with players(server, app_id, "sam", "tia", "uma", "vic",
                           reconnect=False) as (sam, tia, uma, vic):  # fmt: skip
            flood_room = await room_of(sam, tia)
            calm_room = await room_of(uma, vic)
            sends = [sam.client.send_message(flood_room, b"f") for _ in range(60)]
            results = await asyncio.gather(*sends, return_exceptions=True)
            limited = [r for r in results if isinstance(r, CallError)]
            assert limited and all(r.data["reason"] == "rateLimitExceeded" for r in limited)
            ok = [r for r in results if isinstance(r, int)]
            assert 20 <= len(ok) <= 45  # the burst (2x the rate), and what refilled meanwhile
            dropped = await sam.client.send_message(flood_room, b"u", reliable=False)
            assert dropped == 0  # an unreliable message past the rate: dropped, not an error
            for _ in range(100):
                try:
                    await sam.client.send_message(flood_room, b"f", reliable=False)
                except Exception:
                    break
            await sam.until(lambda: sam.client.close_code is not None)
            assert sam.client.close_code == 1008
            for n in range(10):
                await uma.client.send_message(calm_room, str(n).encode())
            await vic.until(lambda: len(payloads(vic, calm_room)) == 10)
            await tia.until(lambda: len(payloads(tia, flood_room)) == len(ok))
    finally:
        server.stop()


async def test_a_player_who_left_gets_nothing_more(pair: list[ServerProcess], app_id: str) -> None:
    async with players(pair, app_id, "wes", "xia", "yan") as (wes, xia, yan):
        room_id = await room_of(wes, xia, yan)
        await wes.client.send_message(room_id, b"before")
        await yan.until(lambda: payloads(yan, room_id) == [b"before"])
        await xia.until(lambda: payloads(xia, room_id) == [b"before"])
        await yan.client.leave_room(room_id)
        await wes.client.send_message(room_id, b"after")
        await xia.until(lambda: payloads(xia, room_id) == [b"before", b"after"])
        await asyncio.sleep(0.2)
        assert payloads(yan, room_id) == [b"before"]
        # a reconnect of the player who left resumes nothing: the room is not theirs any more
        with pytest.raises(CallError) as caught:
            await yan.client.resume_messages(room_id, 0)
        assert caught.value.data["gpgsStatus"] == 7004
        assert json.dumps(caught.value.data)


async def test_a_recipient_that_stops_reading_is_cut_and_others_get_everything(
    valkey: ValkeyProcess, app_id: str
) -> None:
    """docs/messages.md "Bounded queues": a recipient whose socket never reads is cut (its
    queue bounded, its sends timed out); the sender is never stalled and the other recipient
    gets every message, in order."""
    env = {"ROOMSVC_MESSAGES_PER_SECOND": "100000", "ROOMSVC_WS_SEND_TIMEOUT_SECONDS": "1"}
    server = ServerProcess(valkey.url, env=env).start()
    try:
        async with players(server, app_id, "ava", "ben") as (ava, ben):
            room = ava.learn(await ava.client.create_room(invited_player_ids=["ben", "sly"]))
            room_id = room["roomId"]
            ben.learn(await ben.client.join_room(room_id))
            # sly's socket: the handshake, then it never reads again
            sly = await asyncio.to_thread(stalled_socket, server, "sly", app_id)
            async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
                joined = await http.post(f"/games/v1/rooms/{room_id}/join", json={},
                                         headers=auth("sly", app_id))  # fmt: skip
                assert joined.status_code == 200, joined.text
            count = 3000
            for start in range(0, count, 100):
                await asyncio.gather(*(ava.client.send_message(room_id, str(n).encode() * 100)
                                       for n in range(start, start + 100)))  # fmt: skip
            await ben.until(lambda: len(payloads(ben, room_id)) == count, within=300 * UNIT)
            assert [m.seq for m in ben.messages] == list(range(1, count + 1))
            assert await asyncio.to_thread(drained_until_cut, sly), "the stalled reader lives on"
            sly.close()
    finally:
        server.stop()


async def test_a_client_that_never_resumes_still_gets_live_messages(
    pair: list[ServerProcess], app_id: str
) -> None:
    """docs/messages.md "Resume": a welcome room's live messages wait for rooms.resumeMessages,
    but a client that never calls it gets them after the hold, once each and in order."""
    async with players(pair, app_id, "abe", "cal") as (abe, cal):
        room_id = await room_of(abe, cal)
    async with (
        players(pair[0], app_id, "abe") as (abe,),
        players(pair[1], app_id, "cal", reconnect=False) as (cal,),
    ):
        assert [r["roomId"] for r in cal.client.welcome["rooms"]] == [room_id]
        abe.learn(await abe.client.get_room(room_id))
        for n in range(5):
            await abe.client.send_message(room_id, str(n).encode())
        await cal.until(lambda: len(payloads(cal, room_id)) == 5, within=300 * UNIT)
        assert payloads(cal, room_id) == [str(n).encode() for n in range(5)]
        assert [m.seq for m in cal.messages] == [1, 2, 3, 4, 5]
