// roomsvc JavaScript client: ES modules, no build step, no dependency. This is its entry point
// and its whole public surface (roomsvc.d.ts declares it; docs/clients.md describes it); the
// modules it re-exports from are its parts, imported relatively so that they load the same
// from node and from /sdk/.
//
// Its surface mirrors GPGS's RealTimeMultiplayerClient (docs/clients.md has the table), over
// roomsvc's realtime channel: JSON-RPC 2.0 on a WebSocket (docs/clients.md). It
// reconnects by itself, rebuilds its state from each welcome, resumes every room's reliable
// messages, and can build a WebRTC mesh that carries unreliable traffic peer to peer, with the
// relay as the fallback of each pair. client.js says which module holds which layer.

export { base64ToBytes, bytesToBase64 } from "./base64.js";
export { MAX_RELIABLE_MESSAGE_LEN, MAX_UNRELIABLE_MESSAGE_LEN, RoomsvcClient } from "./client.js";
export { backoffDelay } from "./connection.js";
export { RoomsvcError } from "./errors.js";
export {
  FRAME_MESSAGE, FRAME_REJECTED, FRAME_SEND, FRAME_SENT, decodeServerFrame, encodeSendFrame,
} from "./frames.js";
export { participantIdOf } from "./rooms.js";
