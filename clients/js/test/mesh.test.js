// Unit tests of the optional WebRTC mesh on fakes: signaling, the data channel, fallback.
import assert from "node:assert/strict";
import { test } from "node:test";

import { FakeNetwork, FakePeerConnection, serve } from "../testkit/fakes.js";
import { ME, collect, joined, newClient, room, until, welcome } from "../testkit/helpers.js";

const PLAYERS = [joined("p_a", ME), joined("p_b", "bob")];
const ICE = [{ urls: ["stun:127.0.0.1:3478"] }];

async function meshClient(options = {}) {
  FakePeerConnection.all = [];
  const network = new FakeNetwork();
  const client = newClient(network, {
    peerToPeer: true, RTCPeerConnection: FakePeerConnection, autoReportStatus: true, ...options,
  });
  const connecting = client.connect();
  const socket = await network.socket(0);
  let version = 2;
  serve(socket, {
    "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }),
    "rooms.signal": () => ({ kind: "roomsvc#signalSent" }),
    "rooms.sendMessage": () => ({ kind: "roomsvc#messageSent", tokenId: 1, recipientParticipantIds: ["p_b"] }),
    "rooms.reportStatus": () => ({ kind: "games#roomStatus", roomId: "r1", status: "ROOM_ACTIVE", statusVersion: ++version, participants: PLAYERS }),
  });
  socket.accept({ ...welcome([room("r1", 2, PLAYERS, { status: "ROOM_CONNECTING" })]), iceServers: ICE });
  await connecting;
  return { client, socket };
}

test("the smaller participant id offers, with the welcome's ICE servers", async () => {
  const { client, socket } = await meshClient();
  const offer = await socket.request("rooms.signal");
  assert.equal(offer.params.roomId, "r1");
  assert.equal(offer.params.body.recipientParticipantId, "p_b");
  assert.equal(offer.params.body.data.type, "offer");
  assert.equal(offer.params.body.data.roomsvc, "roomsvc-webrtc");
  const [pc] = FakePeerConnection.all;
  assert.deepEqual(pc.config, { iceServers: ICE });
  assert.deepEqual(pc.channel.options, { negotiated: true, id: 0, ordered: false, maxRetransmits: 0 });
  client.close();
  assert.equal(pc.closed, true);
});

test("rtcConfiguration adds to each pair's configuration; the ICE servers stay roomsvc's", async () => {
  const { client, socket } = await meshClient({
    rtcConfiguration: { iceTransportPolicy: "relay", iceServers: [{ urls: ["stun:ignored"] }] },
  });
  await socket.request("rooms.signal");
  const [pc] = FakePeerConnection.all;
  assert.deepEqual(pc.config, { iceTransportPolicy: "relay", iceServers: ICE });
  client.close();
});

test("once the channel opens, unreliable messages go peer to peer both ways", async () => {
  const { client, socket } = await meshClient();
  const up = collect(client, "peerConnected");
  const messages = collect(client, "message");
  await socket.request("rooms.signal");
  socket.push("signal", { roomId: "r1", senderParticipantId: "p_b", data: { roomsvc: "roomsvc-webrtc", type: "answer", sdp: "fake-answer" } });
  const [pc] = FakePeerConnection.all;
  await until(() => pc.remote !== null);
  pc.open();
  assert.deepEqual(up, [{ roomId: "r1", participantId: "p_b", via: "p2p" }]);
  await client.sendUnreliableMessage("r1", ["p_b"], Uint8Array.of(5, 6));
  const data = pc.channel.sent.filter((frame) => frame[0] === 0);
  assert.deepEqual(data.map((frame) => [...frame]), [[0, 5, 6]]);
  assert.equal(socket.requests("rooms.sendMessage").length, 0);
  pc.deliver([0, 42]);
  assert.deepEqual(messages.map((m) => [m.senderParticipantId, [...m.data], m.via]), [["p_b", [42], "p2p"]]);
  // Reliable messages stay on the relay.
  await client.sendReliableMessage("r1", "p_b", Uint8Array.of(1));
  assert.equal(socket.requests("rooms.sendMessage").length, 1);
  client.close();
});

test("a measured round trip and setup latency are reported to the server", async () => {
  const { client, socket } = await meshClient();
  await socket.request("rooms.signal");
  socket.push("signal", { roomId: "r1", senderParticipantId: "p_b", data: { roomsvc: "roomsvc-webrtc", type: "answer", sdp: "x" } });
  const [pc] = FakePeerConnection.all;
  await until(() => pc.remote !== null);
  pc.open();
  const ping = pc.channel.sent.find((frame) => frame[0] === 1);
  pc.deliver([2, ...ping.subarray(1)]); // the peer's pong echoes our stamp
  await until(() => socket.requests("rooms.reportStatus").some((r) => "unreliableRoundtripLatencyMillis" in r.params.body.updates[0]));
  const last = socket.requests("rooms.reportStatus").at(-1).params.body.updates[0];
  assert.equal(last.participantId, "p_b");
  assert.equal(last.status, "CONNECTION_ESTABLISHED");
  assert.ok(last.unreliableRoundtripLatencyMillis >= 0 && last.connectionSetupLatencyMillis >= 0);
  assert.equal(client.peers("r1")[0].via, "p2p");
  client.close();
});

test("a pair that does not connect in time stays on the relay, reported as P2P_FAILED", async () => {
  const { client, socket } = await meshClient({ p2pTimeoutMs: 10 });
  await until(() => socket.requests("rooms.reportStatus").some((r) => r.params.body.updates[0].error === "P2P_FAILED"));
  const failed = socket.requests("rooms.reportStatus").at(-1).params.body.updates[0];
  assert.equal(failed.status, "CONNECTION_ESTABLISHED"); // the relay carries the pair
  assert.match(failed.error_reason, /not connected within/);
  await client.sendUnreliableMessage("r1", ["p_b"], Uint8Array.of(3));
  assert.equal(socket.requests("rooms.sendMessage").length, 1);
  assert.equal(client.peers("r1")[0].via, "relay");
  client.close();
});

test("the answering side answers an offer and adds early candidates after it", async () => {
  FakePeerConnection.all = [];
  const network = new FakeNetwork();
  const bobPlayers = [joined("p_a", "alice2"), joined("p_b", ME)]; // we are p_b: we answer
  const client = newClient(network, { peerToPeer: true, RTCPeerConnection: FakePeerConnection });
  const connecting = client.connect();
  const socket = await network.socket(0);
  serve(socket, {
    "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }),
    "rooms.signal": () => ({ kind: "roomsvc#signalSent" }),
  });
  socket.accept(welcome([room("r1", 2, bobPlayers)]));
  await connecting;
  const signal = (data) => socket.push("signal", { roomId: "r1", senderParticipantId: "p_a", data: { roomsvc: "roomsvc-webrtc", ...data } });
  signal({ type: "candidate", candidate: { candidate: "c1" } });
  signal({ type: "offer", sdp: "o" });
  const answer = await socket.request("rooms.signal");
  assert.equal(answer.params.body.data.type, "answer");
  const [pc] = FakePeerConnection.all;
  assert.deepEqual(pc.remote, { type: "offer", sdp: "o" });
  assert.deepEqual(pc.candidates, [{ candidate: "c1" }]);
  client.close();
});
