// The JS client against a real roomsvc (tests/test_js_client.py starts one with the dev
// secret and sets ROOMSVC_TEST_URL; without it these tests skip). Node 20 needs
// --experimental-websocket for its WebSocket.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { RoomsvcClient, RoomsvcError } from "../roomsvc.js";
import { BASE, WITHIN_MS, devToken, next, skip, until } from "../testkit/live.js";

const APP = `js-${randomUUID().slice(0, 8)}`;

function token(playerId) {
  return devToken(APP, playerId);
}

async function player(playerId, options = {}) {
  const client = new RoomsvcClient({ url: BASE, token: () => token(playerId), reconnect: { baseMs: 50, maxMs: 200 }, ...options });
  await client.connect();
  return client;
}

const active = (roomId) => (room) => room.roomId === roomId && room.status === "ROOM_ACTIVE";

/** True when the server has the message methods (they land separately on the server side). */
async function serverHasMessages(client) {
  try {
    await client.call("rtc.iceServers", {});
    return true;
  } catch (err) {
    if (err.reason === "methodNotFound") return false;
    throw err;
  }
}

test("an invitation game reaches ROOM_ACTIVE on its own, and leaving is seen", { skip }, async () => {
  const alice = await player("alice");
  const bob = await player("bob");
  const invitation = next(bob, "invitation");
  const created = await alice.createRoom({ invitedPlayerIds: ["bob"], variant: 2 });
  assert.equal(created.kind, "games#room");
  assert.equal(created.status, "ROOM_INVITING");
  const invited = await invitation;
  assert.equal(invited.roomId, created.roomId);
  assert.deepEqual((await bob.listInvitations()).map((r) => r.roomId), [created.roomId]);
  const aliceActive = next(alice, "roomStatus", active(created.roomId));
  const bobActive = next(bob, "roomStatus", active(created.roomId));
  await bob.joinRoom(created.roomId);
  await Promise.all([aliceActive, bobActive]);
  assert.equal(bob.invitations.size, 0);
  const aliceId = alice.myParticipantId(created.roomId);
  const gone = next(bob, "peerDisconnected");
  const left = await alice.leaveRoom(created.roomId, "PLAYER_LEFT");
  assert.equal(left.participants.find((p) => p.id === aliceId).status, "PARTICIPANT_LEFT");
  assert.deepEqual(await gone, { roomId: created.roomId, participantId: aliceId });
  alice.close();
  bob.close();
});

test("errors carry the server's code, status and reason", { skip }, async () => {
  const alice = await player("alice-errors");
  const err = await alice.getRoom("no-such-room").catch((e) => e);
  assert.ok(err instanceof RoomsvcError);
  assert.equal(err.code, 404);
  assert.equal(err.status, "NOT_FOUND");
  assert.equal(err.reason, "notFound");
  const bad = await alice.createRoom({}).catch((e) => e);
  assert.equal(bad.code, 400);
  alice.close();
});

test("two quick matches of one variant meet in one active room", { skip }, async () => {
  const carol = await player("carol");
  const dave = await player("dave");
  const criteria = { minAutoMatchingPlayers: 1, maxAutoMatchingPlayers: 1 };
  const carolActive = next(carol, "roomStatus", (room) => room.status === "ROOM_ACTIVE");
  const daveActive = next(dave, "roomStatus", (room) => room.status === "ROOM_ACTIVE");
  await carol.createRoom({ autoMatchingCriteria: criteria, variant: 9 });
  await dave.createRoom({ autoMatchingCriteria: criteria, variant: 9 });
  const [a, b] = await Promise.all([carolActive, daveActive]);
  assert.equal(a.roomId, b.roomId);
  assert.ok(a.participants.every((p) => p.status === "PARTICIPANT_JOINED"));
  carol.close();
  dave.close();
});

test("reliable messages arrive in order, and a reconnect resumes what it missed", { skip }, async (t) => {
  const erin = await player("erin");
  const frank = await player("frank");
  if (!(await serverHasMessages(erin))) {
    t.skip("the server has no in-room messages yet");
    erin.close();
    frank.close();
    return;
  }
  const created = await erin.createRoom({ invitedPlayerIds: ["frank"] });
  const activeForErin = next(erin, "roomStatus", active(created.roomId));
  await next(frank, "invitation");
  await frank.joinRoom(created.roomId);
  await activeForErin;
  const roomId = created.roomId;
  const to = frank.myParticipantId(roomId);
  const got = [];
  frank.on("message", (m) => got.push(m.data[0]));
  for (const n of [1, 2, 3]) await erin.sendReliableMessage(roomId, to, Uint8Array.of(n));
  await until(() => got.length >= 3);
  // Frank's socket drops; Erin sends while he is away; he resumes after his last seq.
  const away = next(frank, "disconnected");
  const back = next(frank, "reconnected");
  frank.socket.close(4001, "test drops the socket");
  await away;
  for (const n of [4, 5]) await erin.sendReliableMessage(roomId, to, Uint8Array.of(n));
  await back;
  await until(() => got.length >= 5);
  assert.deepEqual(got, [1, 2, 3, 4, 5]);
  const unreliable = next(erin, "message");
  await frank.sendUnreliableMessageToOthers(roomId, Uint8Array.of(99));
  const message = await unreliable;
  assert.equal(message.isReliable, false);
  assert.deepEqual([...message.data], [99]);
  erin.close();
  frank.close();
});
