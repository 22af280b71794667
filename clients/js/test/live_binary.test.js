// The JS client's binary frames (docs/messages.md "Binary frames") against a real roomsvc:
// tests/test_js_client.py starts one and sets ROOMSVC_TEST_URL (without it these tests skip).
// Each socket is wrapped to record the frames it really sent and received, so the test sees
// binary frames on the wire, not just messages arriving.
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import { test } from "node:test";

import { RoomsvcClient, RoomsvcError } from "../roomsvc.js";
import { BASE, WITHIN_MS, devToken, next, skip, until } from "../testkit/live.js";

const APP = `jsbin-${randomUUID().slice(0, 8)}`;

/** A WebSocket that logs each frame's kind: "text", or "binary:<type byte>", sent and received. */
function recordingWebSocket(log) {
  return class RecordingWebSocket extends globalThis.WebSocket {
    constructor(url) {
      super(url);
      this.addEventListener("message", (event) => log.received.push(kind(event.data)));
    }

    send(data) {
      log.sent.push(kind(data));
      super.send(data);
    }
  };
}

function kind(data) {
  return typeof data === "string" ? "text" : `binary:${new Uint8Array(data.buffer ?? data, data.byteOffset ?? 0)[0]}`;
}

function token(playerId) {
  return devToken(APP, playerId);
}

async function player(t, playerId, binary) {
  const log = { sent: [], received: [] };
  const client = new RoomsvcClient({
    url: BASE, token: () => token(playerId), binary, WebSocket: recordingWebSocket(log),
    reconnect: { baseMs: 50, maxMs: 200 },
  });
  t.after(() => client.close()); // also when an assertion failed: node exits
  await client.connect();
  return { client, log };
}

async function activeRoom(host, guest, guestName) {
  const created = await host.createRoom({ invitedPlayerIds: [guestName] });
  const active = (client) => next(client, "roomStatus", (r) => r.roomId === created.roomId && r.status === "ROOM_ACTIVE");
  const both = Promise.all([active(host), active(guest)]);
  await guest.joinRoom(created.roomId);
  await both;
  return created.roomId;
}

test("binary frames both ways: in order, exactly once, errors as RoomsvcErrors", { skip }, async (t) => {
  const gail = await player(t, "gail", true);
  const hal = await player(t, "hal", true);
  const roomId = await activeRoom(gail.client, hal.client, "hal");
  const to = hal.client.myParticipantId(roomId);
  const got = [];
  hal.client.on("message", (m) => got.push(m));
  const before = { sent: gail.log.sent.length, received: hal.log.received.length };
  const tokens = [];
  for (const n of [1, 2, 3]) tokens.push(await gail.client.sendReliableMessage(roomId, to, Uint8Array.of(n, 255 - n)));
  await gail.client.sendUnreliableMessageToOthers(roomId, Uint8Array.of(7));
  await until(() => got.length >= 4);
  assert.deepEqual(got.map((m) => [...m.data]), [[1, 254], [2, 253], [3, 252], [7]]);
  assert.deepEqual(got.map((m) => m.isReliable), [true, true, true, false]);
  assert.ok(got.slice(0, 3).every((m, i, all) => i === 0 || m.seq > all[i - 1].seq));
  assert.equal(got[3].seq, undefined);
  assert.ok(tokens.every((t, i) => t > 0 && (i === 0 || t > tokens[i - 1])), `tokenIds ${tokens}`);
  // on the wire: the four sends were SEND frames, answered by SENT; the four messages MESSAGE
  assert.deepEqual(gail.log.sent.slice(before.sent), Array(4).fill("binary:1"));
  assert.equal(gail.log.received.filter((k) => k === "binary:2").length, 4);
  assert.deepEqual(hal.log.received.slice(before.received).filter((k) => k === "binary:4"), Array(4).fill("binary:4"));
  // a recipient that is not in the room: REJECTED, a RoomsvcError naming it
  const err = await gail.client.sendReliableMessage(roomId, "p_nobody", Uint8Array.of(1)).catch((e) => e);
  assert.ok(err instanceof RoomsvcError, String(err));
  assert.equal(err.reason, "participantNotConnected");
  assert.equal(err.gpgsStatus, 7003);
  assert.ok(gail.log.received.includes("binary:3")); // it came as a REJECTED frame
});

test("a binary sender and a JSON receiver, and the reverse, understand each other", { skip }, async (t) => {
  const ida = await player(t, "ida", { send: true });
  const jon = await player(t, "jon", { receive: true });
  const roomId = await activeRoom(ida.client, jon.client, "jon");
  const toJon = jon.client.myParticipantId(roomId);
  const toIda = ida.client.myParticipantId(roomId);
  const atJon = next(jon.client, "message");
  const atIda = next(ida.client, "message");
  const sentBefore = { ida: ida.log.sent.length, jon: jon.log.sent.length };
  await ida.client.sendReliableMessage(roomId, toJon, Uint8Array.of(5, 6));
  await jon.client.sendReliableMessage(roomId, toIda, Uint8Array.of(8));
  assert.deepEqual([...(await atJon).data], [5, 6]);
  assert.deepEqual([...(await atIda).data], [8]);
  assert.deepEqual(ida.log.sent.slice(sentBefore.ida), ["binary:1"]); // ida sends SEND frames
  assert.deepEqual(jon.log.sent.slice(sentBefore.jon), ["text"]); // jon sends JSON
  assert.ok(jon.log.received.includes("binary:4")); // jon receives MESSAGE frames
  assert.ok(!ida.log.received.includes("binary:4")); // ida receives messages as JSON
  assert.ok(ida.log.received.includes("binary:2")); // ...and SENT for its binary send
});
