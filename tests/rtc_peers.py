"""Two aiortc peers (a real WebRTC stack) that find each other through roomsvc alone: the room,
the offer and answer over `rooms.signal`, the ICE servers from the welcome; then a data channel,
a ping and its pong, and reportStatus with the measured latencies (docs/messages.md "Peer to
peer"). Used by test_messages_rtc.py, directly and inside a network namespace."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from aiortc import (
    RTCConfiguration,
    RTCDataChannel,
    RTCIceServer,
    RTCPeerConnection,
    RTCSessionDescription,
)
from aiortc.rtcconfiguration import RTCIceTransportPolicy

from tests.messaging import Player, players, room_of
from tests.support import UNIT, ServerProcess


def configuration(welcome: dict[str, Any], relay_only: bool) -> RTCConfiguration:
    # Never None: aiortc would add a public STUN server, and tests talk only to loopback.
    servers = [
        RTCIceServer(urls=s["urls"], username=s.get("username"), credential=s.get("credential"))
        for s in welcome["iceServers"]
    ]
    policy = RTCIceTransportPolicy.RELAY if relay_only else RTCIceTransportPolicy.ALL
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=policy)


async def _answerer(player: Player, pc: RTCPeerConnection, room_id: str) -> RTCDataChannel:
    await player.until(lambda: any(s["data"].get("type") == "offer" for s in player.signals))
    offer = next(s for s in player.signals if s["data"].get("type") == "offer")
    opened: asyncio.Future[RTCDataChannel] = asyncio.get_running_loop().create_future()

    @pc.on("datachannel")
    def on_channel(channel: RTCDataChannel) -> None:
        @channel.on("message")
        def on_message(message: str | bytes) -> None:
            if message == "ping":
                channel.send("pong")

        if not opened.done():
            opened.set_result(channel)

    await pc.setRemoteDescription(RTCSessionDescription(offer["data"]["sdp"], "offer"))
    await pc.setLocalDescription(await pc.createAnswer())
    answer = {"type": "answer", "sdp": pc.localDescription.sdp}
    await player.client.signal(room_id, offer["senderParticipantId"], answer)
    return await opened


async def connect_pair(server: ServerProcess, app: str, *, relay_only: bool) -> dict[str, Any]:
    """Run the whole exchange; what the test asserts on."""
    async with players(server, app, "offerer", "answerer") as (a, b):
        room_id = await room_of(a, b)
        started = time.monotonic()
        pc_a = RTCPeerConnection(configuration(a.client.welcome, relay_only))
        pc_b = RTCPeerConnection(configuration(b.client.welcome, relay_only))
        try:
            channel = pc_a.createDataChannel("game")
            opened = asyncio.Event()
            pongs: list[float] = []
            ponged = asyncio.Event()
            channel.on("open", opened.set)

            @channel.on("message")
            def on_message(message: str | bytes) -> None:
                if message == "pong":
                    pongs.append(time.monotonic())
                    ponged.set()

            answering = asyncio.create_task(_answerer(b, pc_b, room_id))
            await pc_a.setLocalDescription(await pc_a.createOffer())
            offer_sdp = pc_a.localDescription.sdp
            await a.client.signal(room_id, b.participant[room_id],
                                  {"type": "offer", "sdp": offer_sdp})  # fmt: skip
            await a.until(lambda: any(s["data"].get("type") == "answer" for s in a.signals),
                          within=300 * UNIT)  # fmt: skip
            answer = next(s for s in a.signals if s["data"].get("type") == "answer")
            await pc_a.setRemoteDescription(RTCSessionDescription(answer["data"]["sdp"], "answer"))
            await asyncio.wait_for(opened.wait(), 300 * UNIT)
            await asyncio.wait_for(answering, 300 * UNIT)
            setup_ms = int((time.monotonic() - started) * 1000)
            sent = time.monotonic()
            channel.send("ping")
            await asyncio.wait_for(ponged.wait(), 100 * UNIT)
            rtt_ms = max(1, int((pongs[0] - sent) * 1000))
            reports = []
            for me, peer in ((a, b), (b, a)):
                update = {"participantId": peer.participant[room_id],
                          "status": "CONNECTION_ESTABLISHED",
                          "connectionSetupLatencyMillis": setup_ms,
                          "unreliableRoundtripLatencyMillis": rtt_ms}  # fmt: skip
                reports.append(await me.client.report_status(room_id, [update]))
            return {
                "pong": bool(pongs),
                "offer_candidates": [
                    line for line in offer_sdp.splitlines() if line.startswith("a=candidate")
                ],
                "states": [pc_a.connectionState, pc_b.connectionState],
                "reports": reports,
                "room": await a.client.get_room(room_id),
                "participants": {p.name: p.participant[room_id] for p in (a, b)},
            }
        finally:
            await pc_a.close()
            await pc_b.close()
