// The binary frame codec (docs/messages.md "Binary frames", docs/clients.md "Binary frames"):
// game traffic without JSON or base64. Pure functions, no socket: the connection sends what
// encodeSendFrame builds and hands what arrives to decodeServerFrame.
//
// Integers big-endian; ids UTF-8 with a one-byte length.
//   SEND      0x01 | flags | u32 tag | id roomId | u8 n, n x id | payload   (client -> server)
//   SENT      0x02 | u32 tag | u32 tokenId                                   (server -> client)
//   REJECTED  0x03 | u32 tag | the JSON-RPC error object, UTF-8 JSON
//   MESSAGE   0x04 | flags | u64 seq (0: unreliable) | id roomId | id senderParticipantId | payload
// flags: bit 0 = reliable.

import { RoomsvcError } from "./errors.js";

export const FRAME_SEND = 0x01;
export const FRAME_SENT = 0x02;
export const FRAME_REJECTED = 0x03;
export const FRAME_MESSAGE = 0x04;
const FLAG_RELIABLE = 0x01;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder("utf-8", { fatal: true });

function shortId(value, what) {
  if (typeof value !== "string" || !value) throw new TypeError(`${what} must be a non-empty string`);
  const raw = utf8.encode(value);
  if (raw.length > 255) throw new TypeError(`${what} is ${raw.length} bytes in UTF-8; binary frames allow 255`);
  return raw;
}

/** A SEND frame: {reliable, tag (u32; 0 asks for no reply), roomId, recipients?, payload}. */
export function encodeSendFrame({ reliable, tag, roomId, recipients, payload }) {
  if (!Number.isInteger(tag) || tag < 0 || tag > 0xffffffff) throw new TypeError("tag must be a u32");
  if (!(payload instanceof Uint8Array)) throw new TypeError("payload must be a Uint8Array");
  const ids = [shortId(roomId, "roomId"), ...(recipients ?? []).map((id) => shortId(id, "participantId"))];
  if (ids.length - 1 > 255) throw new TypeError("binary frames address at most 255 recipients");
  const size = 6 + ids.reduce((n, id) => n + 1 + id.length, 0) + 1 + payload.length;
  const frame = new Uint8Array(size);
  const view = new DataView(frame.buffer);
  frame[0] = FRAME_SEND;
  frame[1] = reliable ? FLAG_RELIABLE : 0;
  view.setUint32(2, tag);
  let at = 6;
  const put = (id) => {
    frame[at] = id.length;
    frame.set(id, at + 1);
    at += 1 + id.length;
  };
  put(ids[0]);
  frame[at++] = ids.length - 1; // 0: every other JOINED participant
  ids.slice(1).forEach(put);
  frame.set(payload, at);
  return frame;
}

function badFrame(problem) {
  return new RoomsvcError(`Malformed binary frame: ${problem}.`, { reason: "badFrame" });
}

/**
 * A server frame -> {type: "sent", tag, tokenId} | {type: "rejected", tag, error} |
 * {type: "message", isReliable, seq (0: unreliable), roomId, senderParticipantId, data}.
 * A malformed one throws a RoomsvcError with reason "badFrame".
 */
export function decodeServerFrame(input) {
  const bytes = input instanceof Uint8Array ? input : new Uint8Array(input);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const need = (n, what) => {
    if (bytes.length < n) throw badFrame(`${what} truncated`);
  };
  const type = bytes[0];
  if (type === FRAME_SENT) {
    need(9, "SENT");
    return { type: "sent", tag: view.getUint32(1), tokenId: view.getUint32(5) };
  }
  if (type === FRAME_REJECTED) {
    need(5, "REJECTED");
    let error;
    try {
      error = JSON.parse(fromUtf8.decode(bytes.subarray(5)));
    } catch {
      throw badFrame("REJECTED error is not JSON");
    }
    return { type: "rejected", tag: view.getUint32(1), error };
  }
  if (type === FRAME_MESSAGE) {
    need(10, "MESSAGE");
    let at = 10;
    const id = (what) => {
      need(at + 1, what);
      const end = at + 1 + bytes[at];
      need(end, what);
      let text;
      try {
        text = fromUtf8.decode(bytes.subarray(at + 1, end));
      } catch {
        throw badFrame(`${what} is not UTF-8`);
      }
      at = end;
      return text;
    };
    const roomId = id("roomId");
    const senderParticipantId = id("senderParticipantId");
    return {
      type: "message", isReliable: Boolean(bytes[1] & FLAG_RELIABLE), seq: Number(view.getBigUint64(2)),
      roomId, senderParticipantId, data: bytes.slice(at),
    };
  }
  throw badFrame(`unknown type ${type ?? "(empty frame)"}`);
}
