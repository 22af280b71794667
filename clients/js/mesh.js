// The optional WebRTC mesh (peerToPeer: true; docs/clients.md, "Peer-to-peer"): one PeerLink
// per pair of JOINED participants, signaled through rooms.signal, carrying unreliable traffic
// peer to peer. The relay stays each pair's fallback: a pair without an open link is reached
// through the relay, so the mesh only ever moves a peer from "relay" to "p2p" and back.

import { FRAME_DATA, MESH_SIGNAL, PeerLink } from "./peer_link.js";
import { Rooms } from "./rooms.js";

function linkKey(roomId, peerId) {
  return `${roomId}\u0000${peerId}`;
}

export class Mesh extends Rooms {
  constructor(options) {
    super(options);
    this.peerToPeer = Boolean(options.peerToPeer);
    this.p2pTimeoutMs = options.p2pTimeoutMs ?? 10000;
    // More RTCConfiguration for each pair (e.g. iceTransportPolicy "relay": TURN only, so no
    // address of the player reaches its peers); iceServers always come from roomsvc.
    this.rtcConfiguration = options.rtcConfiguration ?? {};
    this.RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.links = new Map(); // "roomId\u0000peerId" -> PeerLink
  }

  /** Closes every peer link, then the socket; pending calls are rejected; no reconnect. */
  close() {
    for (const link of this.links.values()) link.close();
    this.links.clear();
    super.close();
  }

  /** Asks roomsvc for a fresh ICE server list (TURN credentials expire). */
  async refreshIceServers() {
    const result = await this.call("rtc.iceServers", {});
    this.iceServers = result.iceServers ?? [];
    return result;
  }

  /** Sends an application signal to a participant (the mesh uses this channel too). */
  async signal(roomId, participantId, data) {
    return this.call("rooms.signal", { roomId, body: { recipientParticipantId: participantId, data } });
  }

  onSignal(params) {
    if (params.data?.roomsvc !== MESH_SIGNAL) {
      super.onSignal(params);
      return;
    }
    if (!this.peerToPeer || !this.rooms.has(params.roomId)) return;
    const link = this.openLink(params.roomId, params.senderParticipantId);
    if (link) link.onSignal(params.data);
  }

  peerAdded(roomId, peerId) {
    if (this.peerToPeer) this.openLink(roomId, peerId);
  }

  peerRemoved(roomId, peerId) {
    this.closeLink(roomId, peerId);
  }

  linkOf(roomId, peerId) {
    return this.links.get(linkKey(roomId, peerId));
  }

  openLink(roomId, peerId) {
    const key = linkKey(roomId, peerId);
    const existing = this.links.get(key);
    if (existing) return existing;
    if (typeof this.RTCPeerConnection !== "function") return null;
    const myId = this.myParticipantId(roomId);
    if (!myId) return null;
    const link = new PeerLink(this, roomId, peerId, myId < peerId);
    this.links.set(key, link);
    link.start();
    return link;
  }

  closeLink(roomId, peerId) {
    const key = linkKey(roomId, peerId);
    this.links.get(key)?.close();
    this.links.delete(key);
  }

  /** A link changed path: tell the listeners and the server (diagnostics, docs/spec.md §13). */
  onLinkChanged(link, via) {
    const reachable = this.reachable.get(link.roomId);
    if (!reachable || !reachable.has(link.peerId)) return;
    if (reachable.get(link.peerId) !== via) {
      reachable.set(link.peerId, via);
      this.emit("peerConnected", { roomId: link.roomId, participantId: link.peerId, via });
    }
    if (this.autoReportStatus) this.reportPeers(link.roomId);
  }

  onPeerData(link, bytes) {
    this.emit("message", {
      roomId: link.roomId,
      senderParticipantId: link.peerId,
      data: bytes,
      isReliable: false,
      via: "p2p",
    });
  }

  /** Sends over the pair's open data channel; false when the pair is on the relay. */
  sendPeerToPeer(roomId, peerId, bytes) {
    const link = this.linkOf(roomId, peerId);
    return link ? link.send(FRAME_DATA, bytes) : false;
  }
}
