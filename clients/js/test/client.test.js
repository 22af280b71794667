// Unit tests of roomsvc.js on a fake transport: connection, calls, errors, reconnect, resume.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RoomsvcError, backoffDelay, base64ToBytes, bytesToBase64 } from "../roomsvc.js";
import { FakeNetwork, serve } from "../testkit/fakes.js";
import { ME, collect, joined, newClient, room, until, welcome } from "../testkit/helpers.js";

test("connect resolves with the welcome; the URL carries the token and language", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { url: "http://127.0.0.1:1", language: "es" });
  const connecting = client.connect();
  const socket = await network.socket(0);
  assert.equal(socket.url.protocol, "ws:");
  assert.equal(socket.url.pathname, "/games/v1/realtime");
  assert.equal(socket.url.searchParams.get("access_token"), "t0");
  assert.equal(socket.url.searchParams.get("language"), "es");
  socket.accept(welcome());
  const params = await connecting;
  assert.equal(params.playerId, ME);
  assert.equal(client.connected, true);
  client.close();
});

test("every welcome room is resumed before connect resolves, from seq 0", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const connecting = client.connect();
  const socket = await network.socket(0);
  serve(socket, { "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }) });
  socket.accept(welcome([room("r1", 3, [joined("p_a", ME)]), room("r2", 1, [joined("p_a", ME)])]));
  await connecting;
  const resumed = socket.requests("rooms.resumeMessages").map((r) => r.params);
  assert.deepEqual(resumed, [{ roomId: "r1", afterSeq: 0 }, { roomId: "r2", afterSeq: 0 }]);
  client.close();
});

test("a server error becomes a RoomsvcError carrying the JSON-RPC data", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome());
  await connecting;
  serve(socket, {
    "rooms.join": () => {
      throw { code: -32009, message: "The room is not active.", data: { code: 409, status: "FAILED_PRECONDITION", reason: "conflict", gpgsStatus: 7005 } };
    },
  });
  const err = await client.joinRoom("r1").catch((e) => e);
  assert.ok(err instanceof RoomsvcError && err instanceof Error);
  assert.equal(err.message, "The room is not active.");
  assert.equal(err.rpcCode, -32009);
  assert.equal(err.code, 409);
  assert.equal(err.status, "FAILED_PRECONDITION");
  assert.equal(err.reason, "conflict");
  assert.equal(err.gpgsStatus, 7005);
  assert.deepEqual(err.data, { code: 409, status: "FAILED_PRECONDITION", reason: "conflict", gpgsStatus: 7005 });
  client.close();
});

test("a call without a reply is rejected with a timeout error", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { requestTimeoutMs: 20 });
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome());
  await connecting;
  const err = await client.getRoom("r1").catch((e) => e);
  assert.equal(err.reason, "timeout");
  client.close();
});

test("calls pending when the socket drops are rejected as disconnected", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { reconnect: { maxAttempts: 0 } });
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome());
  await connecting;
  const pending = client.getRoom("r1").catch((e) => e);
  await socket.request("rooms.get");
  socket.drop(1006);
  const err = await pending;
  assert.equal(err.reason, "disconnected");
  assert.match(err.message, /may or may not have been applied/);
  const later = await client.getRoom("r1").catch((e) => e);
  assert.equal(later.reason, "disconnected");
});

test("after a drop it reconnects with a fresh token and resumes after the last seq it saw", async () => {
  const network = new FakeNetwork();
  let tokens = 0;
  const client = newClient(network, { token: async () => `t${++tokens}` });
  const disconnected = collect(client, "disconnected");
  const reconnected = collect(client, "reconnected");
  const messages = collect(client, "message");
  const r1 = room("r1", 2, [joined("p_a", ME), joined("p_b", "bob")]);
  const resumed = { kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true };
  const connecting = client.connect();
  const first = await network.socket(0);
  serve(first, { "rooms.resumeMessages": () => resumed });
  first.accept(welcome([r1]));
  await connecting;
  first.push("message", { roomId: "r1", senderParticipantId: "p_b", messageData: bytesToBase64(Uint8Array.of(7)), isReliable: true, seq: 41 });
  first.drop(1012, "server restarting; reconnect");
  assert.deepEqual(disconnected, [{ code: 1012, reason: "server restarting; reconnect", willReconnect: true }]);
  const second = await network.socket(1);
  assert.equal(second.url.searchParams.get("access_token"), "t2");
  serve(second, { "rooms.resumeMessages": () => resumed });
  second.accept(welcome([{ ...r1, roomStatusVersion: 3 }]));
  await until(() => reconnected.length === 1);
  assert.deepEqual(second.requests("rooms.resumeMessages").map((r) => r.params), [{ roomId: "r1", afterSeq: 41 }]);
  assert.deepEqual(messages.map((m) => [...m.data]), [[7]]);
  assert.equal(client.connected, true);
  client.close();
});

test("events of a resuming room wait for its resume; replays are delivered once, in order", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const order = [];
  client.on("message", (m) => order.push(`message ${m.seq}`));
  client.on("roomStatus", (r) => order.push(`room v${r.roomStatusVersion}`));
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome([room("r1", 1, [joined("p_a", ME), joined("p_b", "bob")])]));
  const resume = await socket.request("rooms.resumeMessages");
  const relayed = (seq) => ({ roomId: "r1", senderParticipantId: "p_b", messageData: bytesToBase64(Uint8Array.of(seq)), isReliable: true, seq });
  socket.push("message", relayed(1));
  socket.push("roomStatus", room("r1", 2, [joined("p_a", ME), joined("p_b", "bob")]));
  socket.push("message", relayed(1)); // a replay the server sent twice
  assert.deepEqual(order, []); // nothing before the resume answered
  socket.reply(resume, { kind: "roomsvc#messagesResumed", replayed: 1, lastSeq: 1, complete: true });
  await connecting;
  socket.push("message", relayed(2));
  assert.deepEqual(order, ["room v1", "message 1", "room v2", "message 2"]);
  client.close();
});

test("a 1008 close with a fixed token does not reconnect", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const disconnected = collect(client, "disconnected");
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome());
  await connecting;
  socket.drop(1008, "access token expired; reconnect with a fresh token");
  assert.equal(disconnected[0].willReconnect, false);
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(network.sockets.length, 1);
});

test("the first connect rejects when the socket closes before the welcome", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.drop(1006);
  const err = await connecting.catch((e) => e);
  assert.equal(err.reason, "connectFailed");
  assert.equal(err.closeCode, 1006);
});

test("backoff is full jitter under a doubling, capped ceiling", () => {
  const policy = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(0, policy, () => 0), 0);
  assert.equal(backoffDelay(0, policy, () => 0.999999), 99);
  assert.equal(backoffDelay(3, policy, () => 0.999999), 799);
  assert.equal(backoffDelay(10, policy, () => 0.999999), 999);
  for (let attempt = 0; attempt < 20; attempt++) {
    const delay = backoffDelay(attempt, policy);
    assert.ok(delay >= 0 && delay < Math.min(1000, 100 * 2 ** attempt));
  }
});

test("base64 round-trips bytes, and URL-safe unpadded input is accepted", () => {
  const bytes = Uint8Array.from({ length: 300 }, (_, i) => (i * 7) % 256);
  assert.deepEqual(base64ToBytes(bytesToBase64(bytes)), bytes);
  assert.deepEqual([...base64ToBytes("-_8")], [251, 255]);
});

test("close() rejects pending calls and never reconnects", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome());
  await connecting;
  const pending = client.getRoom("r1").catch((e) => e);
  client.close();
  assert.equal((await pending).reason, "closed");
  await new Promise((resolve) => setTimeout(resolve, 20));
  assert.equal(network.sockets.length, 1);
});

test("setLanguage reconnects at once with the new language", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { language: "en" });
  const connecting = client.connect();
  const first = await network.socket(0);
  first.accept(welcome());
  await connecting;
  client.setLanguage("hi");
  const second = await network.socket(1);
  assert.equal(second.url.searchParams.get("language"), "hi");
  client.close();
});

test("setLanguage while a socket opens reconnects again once it is welcomed", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { language: "en" });
  const statuses = collect(client, "roomStatus");
  const r1 = room("r1", 2, [joined("p_a", ME)]);
  const connecting = client.connect();
  const first = await network.socket(0);
  serve(first, { "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }) });
  client.setLanguage("hi"); // not welcomed yet: nothing to close
  first.accept(welcome([r1]));
  await connecting;
  const second = await network.socket(1);
  assert.equal(second.url.searchParams.get("language"), "hi");
  serve(second, { "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }) });
  second.accept(welcome([{ ...r1, description: "in Hindi" }]));
  await until(() => statuses.length === 2);
  assert.equal(statuses[1].description, "in Hindi"); // same version, new words: shown again
  client.close();
});

test("connect() after close() is a fresh start: its failure rejects", async () => {
  const network = new FakeNetwork();
  const client = newClient(network);
  const connecting = client.connect();
  (await network.socket(0)).accept(welcome());
  await connecting;
  client.close();
  const again = client.connect();
  (await network.socket(1)).drop(1006);
  assert.equal((await again.catch((e) => e)).reason, "connectFailed");
});
