// RoomsvcClient, GPGS's RealTimeMultiplayerClient over roomsvc (docs/clients.md, "Methods and
// events"). It is a stack of layers, each a class extending the one below:
//   connection.js  the socket: JSON-RPC calls, binary SEND frames, events, reconnect/backoff
//   rooms.js       rooms from each welcome, resume, GPGS's room calls, status reports
//   mesh.js        the optional WebRTC mesh (peer_link.js: one pair), the relay as fallback
//   client.js      the game messages, each sent on the path its pair has now

import { bytesToBase64 } from "./base64.js";
import { clientError } from "./errors.js";
import { Mesh } from "./mesh.js";

export const MAX_RELIABLE_MESSAGE_LEN = 1400;
export const MAX_UNRELIABLE_MESSAGE_LEN = 1168;

function asBytes(bytes, limit) {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError("message data must be a Uint8Array");
  }
  if (bytes.length > limit) {
    throw clientError("messageTooLarge", `message data is ${bytes.length} bytes; the limit is ${limit}`);
  }
  return bytes;
}

export class RoomsvcClient extends Mesh {
  sendToRelay(roomId, bytes, reliable, recipients) {
    if (this.binary.send) return this.sendFrame(roomId, bytes, reliable, recipients);
    const body = { messageData: bytesToBase64(bytes), reliable };
    if (recipients) body.recipientParticipantIds = recipients;
    return this.call("rooms.sendMessage", { roomId, body });
  }

  /**
   * Reliable messages always travel through the relay: it is the one path that keeps them in
   * order and exactly once across a switch of path and across reconnects (resume).
   */
  async sendReliableMessage(roomId, participantId, bytes) {
    asBytes(bytes, MAX_RELIABLE_MESSAGE_LEN);
    const sent = await this.sendToRelay(roomId, bytes, true, [participantId]);
    return sent.tokenId;
  }

  async sendUnreliableMessage(roomId, participantIds, bytes) {
    asBytes(bytes, MAX_UNRELIABLE_MESSAGE_LEN);
    const relayed = participantIds.filter((peerId) => !this.sendPeerToPeer(roomId, peerId, bytes));
    if (relayed.length) await this.sendToRelay(roomId, bytes, false, relayed);
  }

  async sendUnreliableMessageToOthers(roomId, bytes) {
    asBytes(bytes, MAX_UNRELIABLE_MESSAGE_LEN);
    const room = this.rooms.get(roomId);
    const peers = room ? this.joinedPeerIds(room) : [];
    const relayed = peers.filter((peerId) => !this.sendPeerToPeer(roomId, peerId, bytes));
    // Nobody on peer-to-peer: let the server address every other JOINED participant, which
    // also covers one that joined after our last status.
    if (relayed.length === peers.length) await this.sendToRelay(roomId, bytes, false, undefined);
    else if (relayed.length) await this.sendToRelay(roomId, bytes, false, relayed);
  }
}
