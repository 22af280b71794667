// Unit tests of roomsvc.js on a fake transport: rooms state, invitations, peers, messages.
import assert from "node:assert/strict";
import { test } from "node:test";

import { MAX_RELIABLE_MESSAGE_LEN, base64ToBytes, bytesToBase64 } from "../roomsvc.js";
import { FakeNetwork, serve } from "../testkit/fakes.js";
import { ME, collect, joined, newClient, room, until, welcome } from "../testkit/helpers.js";

async function connected(options = {}, rooms = []) {
  const network = new FakeNetwork();
  const client = newClient(network, options);
  const connecting = client.connect();
  const socket = await network.socket(0);
  const handlers = {
    "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }),
  };
  serve(socket, handlers);
  socket.accept(welcome(rooms));
  await connecting;
  return { client, socket, handlers };
}

const invited = (id, playerId) => ({ id, status: "PARTICIPANT_INVITED", player: { playerId } });

test("an invitation is announced once, and removed when it is no longer pending", async () => {
  const { client, socket } = await connected();
  const invitations = collect(client, "invitation");
  const removed = collect(client, "invitationRemoved");
  socket.push("roomStatus", room("r1", 1, [joined("p_b", "bob"), invited("p_a", ME)], { status: "ROOM_INVITING" }));
  socket.push("roomStatus", room("r1", 2, [joined("p_b", "bob"), invited("p_a", ME)], { status: "ROOM_INVITING" }));
  assert.deepEqual(invitations.map((r) => r.roomId), ["r1"]);
  assert.deepEqual([...client.invitations.keys()], ["r1"]);
  socket.push("roomStatus", room("r1", 3, [{ ...joined("p_b", "bob"), status: "PARTICIPANT_LEFT" }, invited("p_a", ME)], { status: "ROOM_DELETED" }));
  assert.deepEqual(removed.map((r) => r.roomStatusVersion), [3]);
  assert.equal(client.invitations.size, 0);
  client.close();
});

test("a room's older versions are ignored, from pushes and replies alike", async () => {
  const { client, socket, handlers } = await connected();
  const statuses = collect(client, "roomStatus");
  const players = [joined("p_a", ME), joined("p_b", "bob")];
  handlers["rooms.get"] = () => room("r1", 4, players);
  socket.push("roomStatus", room("r1", 5, players));
  socket.push("roomStatus", room("r1", 3, players));
  await client.getRoom("r1");
  socket.push("roomStatus", room("r1", 6, players));
  assert.deepEqual(statuses.map((r) => r.roomStatusVersion), [5, 6]);
  assert.equal(client.room("r1").roomStatusVersion, 6);
  client.close();
});

test("peers are connected while JOINED and disconnected when they leave", async () => {
  const { client, socket } = await connected();
  const up = collect(client, "peerConnected");
  const down = collect(client, "peerDisconnected");
  socket.push("roomStatus", room("r1", 1, [joined("p_a", ME), invited("p_b", "bob")], { status: "ROOM_INVITING" }));
  socket.push("roomStatus", room("r1", 2, [joined("p_a", ME), joined("p_b", "bob")], { status: "ROOM_CONNECTING" }));
  assert.deepEqual(up, [{ roomId: "r1", participantId: "p_b", via: "relay" }]);
  assert.equal(client.myParticipantId("r1"), "p_a");
  assert.deepEqual(client.peers("r1"), [{ participantId: "p_b", via: "relay", rttMs: null }]);
  socket.push("roomStatus", room("r1", 3, [joined("p_a", ME), { ...joined("p_b", "bob"), status: "PARTICIPANT_LEFT", leaveReason: "PRESENCE_FAILURE" }]));
  assert.deepEqual(down, [{ roomId: "r1", participantId: "p_b" }]);
  client.close();
});

test("each reachable peer is reported CONNECTION_ESTABLISHED once, so the room can go ACTIVE", async () => {
  const { client, socket, handlers } = await connected({ autoReportStatus: true });
  const players = [joined("p_a", ME), joined("p_b", "bob")];
  handlers["rooms.reportStatus"] = () => ({
    kind: "games#roomStatus", roomId: "r1", status: "ROOM_ACTIVE", statusVersion: 3, participants: players,
  });
  socket.push("roomStatus", room("r1", 2, players, { status: "ROOM_CONNECTING" }));
  await until(() => client.room("r1").roomStatusVersion === 3);
  socket.push("roomStatus", room("r1", 4, players));
  const reports = socket.requests("rooms.reportStatus").map((r) => r.params);
  assert.deepEqual(reports, [{ roomId: "r1", body: { updates: [{ participantId: "p_b", status: "CONNECTION_ESTABLISHED" }] } }]);
  assert.equal(client.room("r1").status, "ROOM_ACTIVE");
  client.close();
});

test("sendReliableMessage relays base64 to one participant and resolves with the tokenId", async () => {
  const { client, socket, handlers } = await connected();
  handlers["rooms.sendMessage"] = (params) => ({ kind: "roomsvc#messageSent", tokenId: 17, recipientParticipantIds: params.body.recipientParticipantIds });
  const tokenId = await client.sendReliableMessage("r1", "p_b", Uint8Array.of(1, 2, 255));
  assert.equal(tokenId, 17);
  const [sent] = socket.requests("rooms.sendMessage");
  assert.deepEqual(sent.params, { roomId: "r1", body: { messageData: bytesToBase64(Uint8Array.of(1, 2, 255)), reliable: true, recipientParticipantIds: ["p_b"] } });
  client.close();
});

test("a message over the limit is refused before it is sent", async () => {
  const { client, socket } = await connected();
  const tooBig = new Uint8Array(MAX_RELIABLE_MESSAGE_LEN + 1);
  await assert.rejects(client.sendReliableMessage("r1", "p_b", tooBig), { reason: "messageTooLarge" });
  await assert.rejects(client.sendUnreliableMessageToOthers("r1", new Uint8Array(1169)), { reason: "messageTooLarge" });
  await assert.rejects(client.sendReliableMessage("r1", "p_b", "text"), TypeError);
  assert.equal(socket.requests("rooms.sendMessage").length, 0);
  client.close();
});

test("unreliable messages to others let the server pick the recipients", async () => {
  const { client, socket, handlers } = await connected({}, [room("r1", 2, [joined("p_a", ME), joined("p_b", "bob")])]);
  handlers["rooms.sendMessage"] = () => ({ kind: "roomsvc#messageSent", tokenId: 1, recipientParticipantIds: ["p_b"] });
  await client.sendUnreliableMessageToOthers("r1", Uint8Array.of(9));
  await client.sendUnreliableMessage("r1", ["p_b"], Uint8Array.of(8));
  const bodies = socket.requests("rooms.sendMessage").map((r) => r.params.body);
  assert.deepEqual(bodies, [
    { messageData: "CQ==", reliable: false },
    { messageData: "CA==", reliable: false, recipientParticipantIds: ["p_b"] },
  ]);
  client.close();
});

test("a relayed message reaches the listener as bytes with its sender", async () => {
  const { client, socket } = await connected();
  const messages = collect(client, "message");
  socket.push("message", { roomId: "r1", senderParticipantId: "p_b", messageData: "AQID", isReliable: false });
  assert.deepEqual(messages, [{ roomId: "r1", senderParticipantId: "p_b", data: base64ToBytes("AQID"), isReliable: false, seq: undefined, via: "relay" }]);
  client.close();
});

test("signals that are not the mesh's own reach the signal listener", async () => {
  const { client, socket } = await connected();
  const signals = collect(client, "signal");
  socket.push("signal", { roomId: "r1", senderParticipantId: "p_b", data: { hello: 1 } });
  assert.deepEqual(signals, [{ roomId: "r1", senderParticipantId: "p_b", data: { hello: 1 } }]);
  client.close();
});
