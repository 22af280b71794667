// The binary frame codec of roomsvc.js against fixed byte vectors written out from
// docs/messages.md "Binary frames" (big-endian integers, ids UTF-8 with a one-byte length), and
// the client's binary option on a fake socket.
import assert from "node:assert/strict";
import { test } from "node:test";

import { RoomsvcError, decodeServerFrame, encodeSendFrame } from "../roomsvc.js";
import { FakeNetwork, serve } from "../testkit/fakes.js";
import { ME, collect, joined, newClient, room, until, welcome } from "../testkit/helpers.js";

const hex = (text) => Uint8Array.from(text.replace(/\s+/g, "").match(/../g)?.map((b) => parseInt(b, 16)) ?? []);
const toHex = (bytes) => Buffer.from(bytes).toString("hex");

test("SEND: type, flags, u32 tag, roomId, recipients, payload", () => {
  const reliableToOne = encodeSendFrame({ reliable: true, tag: 7, roomId: "r1", recipients: ["p_a"], payload: Uint8Array.of(1, 2) });
  //                         SEND rel  tag=7    len r 1  n=1 len p _ a  payload
  assert.equal(toHex(reliableToOne), toHex(hex("01 01 00000007 02 7231 01 03 705f61 0102")));
  const unreliableToOthers = encodeSendFrame({ reliable: false, tag: 0x01020304, roomId: "room", payload: new TextEncoder().encode("hi") });
  assert.equal(toHex(unreliableToOthers), toHex(hex("01 00 01020304 04 726f6f6d 00 6869")));
  const utf8Ids = encodeSendFrame({ reliable: true, tag: 1, roomId: "é", recipients: ["a", "bc"], payload: new Uint8Array(0) });
  assert.equal(toHex(utf8Ids), toHex(hex("01 01 00000001 02 c3a9 02 01 61 02 6263")));
});

test("SEND refuses what the format cannot carry, naming it", () => {
  const base = { reliable: true, tag: 1, roomId: "r", payload: new Uint8Array(0) };
  assert.throws(() => encodeSendFrame({ ...base, roomId: "x".repeat(256) }), /roomId is 256 bytes/);
  assert.throws(() => encodeSendFrame({ ...base, roomId: "" }), /roomId must be a non-empty string/);
  assert.throws(() => encodeSendFrame({ ...base, recipients: ["é".repeat(128)] }), /participantId is 256 bytes/);
  assert.throws(() => encodeSendFrame({ ...base, recipients: Array.from({ length: 256 }, (_, i) => `p${i}`) }), /at most 255 recipients/);
  assert.throws(() => encodeSendFrame({ ...base, tag: 2 ** 32 }), /tag must be a u32/);
  assert.throws(() => encodeSendFrame({ ...base, payload: [1, 2] }), /payload must be a Uint8Array/);
});

test("SENT, REJECTED and MESSAGE decode to their fields", () => {
  assert.deepEqual(decodeServerFrame(hex("02 00000009 00000003")), { type: "sent", tag: 9, tokenId: 3 });
  const error = { code: -32602, message: "bad", data: { code: 400, reason: "badFrame" } };
  const rejected = new Uint8Array([...hex("03 00000009"), ...new TextEncoder().encode(JSON.stringify(error))]);
  assert.deepEqual(decodeServerFrame(rejected.buffer), { type: "rejected", tag: 9, error });
  const reliable = decodeServerFrame(hex("04 01 0000000000000005 02 7231 03 705f61 01ff"));
  assert.deepEqual({ ...reliable, data: [...reliable.data] },
    { type: "message", isReliable: true, seq: 5, roomId: "r1", senderParticipantId: "p_a", data: [1, 255] });
  const unreliable = decodeServerFrame(hex("04 00 0000000000000000 02 7231 04 705fc3a9"));
  assert.equal(unreliable.isReliable, false);
  assert.equal(unreliable.seq, 0);
  assert.equal(unreliable.senderParticipantId, "p_é");
  assert.equal(unreliable.data.length, 0);
  const big = decodeServerFrame(hex("04 01 0000000100000002 01 72 01 70"));
  assert.equal(big.seq, 2 ** 32 + 2);
});

test("malformed server frames are RoomsvcErrors with reason badFrame", () => {
  for (const [bytes, problem] of [
    [hex(""), /unknown type \(empty frame\)/],
    [hex("09 00"), /unknown type 9/],
    [hex("02 000000"), /SENT truncated/],
    [hex("03 00000001 7b"), /not JSON/],
    [hex("04 01 0000000000000001 05 7231"), /roomId truncated/],
    [hex("04 01 0000000000000001 02 7231"), /senderParticipantId truncated/],
    [hex("04 01 0000000000000001 01 ff 01 70"), /roomId is not UTF-8/],
  ]) {
    const err = (() => {
      try {
        decodeServerFrame(bytes);
      } catch (e) {
        return e;
      }
      return null;
    })();
    assert.ok(err instanceof RoomsvcError, `no error for ${toHex(bytes)}`);
    assert.equal(err.reason, "badFrame");
    assert.match(err.message, problem);
  }
});

async function binaryClient(binary, handlers = {}) {
  const network = new FakeNetwork();
  const client = newClient(network, { binary });
  const connecting = client.connect();
  const socket = await network.socket(0);
  serve(socket, {
    "rooms.resumeMessages": () => ({ kind: "roomsvc#messagesResumed", replayed: 0, lastSeq: 0, complete: true }),
    ...handlers,
  });
  socket.accept(welcome([room("r1", 3, [joined("p_a", ME), joined("p_b", "bob")])]));
  await connecting;
  return { client, socket };
}

test("binary: true asks for binary messages and sends SEND frames, SENT resolving the tokenId", async () => {
  const { client, socket } = await binaryClient(true);
  assert.equal(socket.url.searchParams.get("messageFormat"), "binary");
  assert.equal(socket.binaryType, "arraybuffer");
  const sending = client.sendReliableMessage("r1", "p_b", Uint8Array.of(42));
  const frame = await socket.binaryFrame();
  assert.equal(toHex(frame), toHex(hex("01 01 00000001 02 7231 01 03 705f62 2a")));
  assert.equal(socket.requests("rooms.sendMessage").length, 0); // no JSON twin
  socket.pushBinary(hex("02 00000001 00000011"));
  assert.equal(await sending, 17);
  const refused = client.sendUnreliableMessageToOthers("r1", Uint8Array.of(1));
  const second = await socket.binaryFrame(socket.sent.indexOf(socket.sent.find((f) => f.binary)) + 1);
  assert.equal(toHex(second), toHex(hex("01 00 00000002 02 7231 00 01")));
  const error = { code: -32029, message: "Too many", data: { code: 429, status: "RESOURCE_EXHAUSTED", reason: "rateLimitExceeded" } };
  socket.pushBinary([...hex("03 00000002"), ...new TextEncoder().encode(JSON.stringify(error))]);
  const err = await refused.catch((e) => e);
  assert.ok(err instanceof RoomsvcError);
  assert.equal(err.code, 429);
  assert.equal(err.reason, "rateLimitExceeded");
  assert.equal(err.rpcCode, -32029);
  client.close();
});

test("binary MESSAGE frames are delivered like JSON ones, deduplicated by seq", async () => {
  const sent = [];
  const { client, socket } = await binaryClient({ receive: true }, {
    "rooms.sendMessage": (params) => {
      sent.push(params);
      return { kind: "roomsvc#messageSent", tokenId: 1 };
    },
  });
  const messages = collect(client, "message");
  const errors = collect(client, "error");
  socket.pushBinary(hex("04 01 0000000000000001 02 7231 03 705f62 0a0b"));
  socket.pushBinary(hex("04 01 0000000000000001 02 7231 03 705f62 0a0b")); // resumed twice
  socket.pushBinary(hex("04 00 0000000000000000 02 7231 03 705f62 0c"));
  socket.pushBinary(hex("04 01 00")); // malformed: an error event, nothing delivered
  await until(() => messages.length >= 2 && errors.length >= 1);
  assert.deepEqual(messages.map((m) => ({ ...m, data: [...m.data] })), [
    { roomId: "r1", senderParticipantId: "p_b", data: [10, 11], isReliable: true, seq: 1, via: "relay" },
    { roomId: "r1", senderParticipantId: "p_b", data: [12], isReliable: false, seq: undefined, via: "relay" },
  ]);
  assert.equal(errors[0].reason, "badFrame");
  // receive only: sends stay JSON
  assert.equal(await client.sendReliableMessage("r1", "p_b", Uint8Array.of(1)), 1);
  assert.deepEqual(sent, [{ roomId: "r1", body: { messageData: "AQ==", reliable: true, recipientParticipantIds: ["p_b"] } }]);
  assert.ok(!socket.sent.some((frame) => frame.binary));
  client.close();
});

test("a binary send pending at a disconnect is rejected; a bad binary option is refused", async () => {
  const { client, socket } = await binaryClient({ send: true });
  assert.equal(socket.url.searchParams.get("messageFormat"), null);
  const sending = client.sendReliableMessage("r1", "p_b", Uint8Array.of(1));
  await socket.binaryFrame();
  socket.drop(1006);
  assert.equal((await sending.catch((e) => e)).reason, "disconnected");
  client.close();
  assert.throws(() => newClient(new FakeNetwork(), { binary: "yes" }), /binary must be true, false, or \{send, receive\}/);
});

test("a binary message that arrives while its room resumes waits for the resume reply", async () => {
  const network = new FakeNetwork();
  const client = newClient(network, { binary: true });
  const messages = collect(client, "message");
  const connecting = client.connect();
  const socket = await network.socket(0);
  socket.accept(welcome([room("r1", 3, [joined("p_a", ME), joined("p_b", "bob")])]));
  const resume = await socket.request("rooms.resumeMessages");
  socket.pushBinary(hex("04 01 0000000000000001 02 7231 03 705f62 01")); // the replay
  socket.pushBinary(hex("04 01 0000000000000002 02 7231 03 705f62 02")); // live
  socket.pushBinary(hex("04 01 0000000000000001 02 7231 03 705f62 01")); // seq 1 again
  assert.equal(messages.length, 0); // held: the room has not resumed yet
  socket.reply(resume, { kind: "roomsvc#messagesResumed", replayed: 1, lastSeq: 2, complete: true });
  await connecting;
  // delivered in order once resumed, the duplicate dropped
  assert.deepEqual(messages.map((m) => [m.seq, ...m.data]), [[1, 1], [2, 2]]);
  client.close();
});
