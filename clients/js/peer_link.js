// One WebRTC pair of the mesh (docs/clients.md, "Peer-to-peer"; docs/messages.md, "Peer to
// peer"): its offer and answer, its data channel, its latency pings, and its fallback to the
// relay when it does not open or fails later.

// Our own data channel frames (docs/clients.md, "Peer-to-peer"): one type byte, then the rest.
export const FRAME_DATA = 0;
const FRAME_PING = 1;
const FRAME_PONG = 2;
export const MESH_SIGNAL = "roomsvc-webrtc"; // data.roomsvc of the signals the mesh consumes itself

/**
 * One WebRTC pair. The participant with the smaller id offers; candidates trickle through
 * rooms.signal. One negotiated unordered data channel without retransmits carries the pair's
 * unreliable messages and our latency pings. A pair that is not open within p2pTimeoutMs, or
 * that fails later, stays on the relay for the rest of the room.
 */
export class PeerLink {
  constructor(client, roomId, peerId, offerer) {
    this.client = client;
    this.roomId = roomId;
    this.peerId = peerId;
    this.offerer = offerer;
    this.startedAt = client.now();
    this.setupMs = null;
    this.rttMs = null;
    this.failed = false;
    this.failure = null;
    this.open = false;
    this.closed = false;
    this.remoteSet = false;
    this.earlyCandidates = [];
    this.timer = null;
    this.pinger = null;
  }

  start() {
    const client = this.client;
    try {
      this.pc = new client.RTCPeerConnection({ ...client.rtcConfiguration, iceServers: client.iceServers });
      this.channel = this.pc.createDataChannel("roomsvc", {
        negotiated: true, id: 0, ordered: false, maxRetransmits: 0,
      });
    } catch (err) {
      this.fail(`RTCPeerConnection: ${err.message}`);
      return;
    }
    this.channel.binaryType = "arraybuffer";
    this.channel.onopen = () => this.onOpen();
    this.channel.onclose = () => this.fail("data channel closed");
    this.channel.onmessage = (event) => this.onChannelMessage(event.data);
    this.pc.onicecandidate = (event) => {
      if (event.candidate) this.sendSignal({ type: "candidate", candidate: event.candidate.toJSON?.() ?? event.candidate });
    };
    this.pc.onconnectionstatechange = () => {
      if (this.pc.connectionState === "failed") this.fail("ICE failed");
    };
    this.timer = setTimeout(() => {
      if (!this.open) this.fail(`not connected within ${client.p2pTimeoutMs} ms`);
    }, client.p2pTimeoutMs);
    if (this.offerer) this.offer();
  }

  async offer() {
    try {
      const offer = await this.pc.createOffer();
      await this.pc.setLocalDescription(offer);
      this.sendSignal({ type: "offer", sdp: this.pc.localDescription.sdp });
    } catch (err) {
      this.fail(`offer: ${err.message}`);
    }
  }

  async onSignal(data) {
    if (this.closed || this.failed) return;
    try {
      if (data.type === "offer" && !this.offerer) {
        await this.pc.setRemoteDescription({ type: "offer", sdp: data.sdp });
        await this.flushCandidates();
        const answer = await this.pc.createAnswer();
        await this.pc.setLocalDescription(answer);
        this.sendSignal({ type: "answer", sdp: this.pc.localDescription.sdp });
      } else if (data.type === "answer" && this.offerer) {
        await this.pc.setRemoteDescription({ type: "answer", sdp: data.sdp });
        await this.flushCandidates();
      } else if (data.type === "candidate" && data.candidate) {
        if (this.remoteSet) await this.pc.addIceCandidate(data.candidate);
        else this.earlyCandidates.push(data.candidate);
      }
    } catch (err) {
      this.fail(`signaling: ${err.message}`);
    }
  }

  async flushCandidates() {
    this.remoteSet = true;
    const early = this.earlyCandidates;
    this.earlyCandidates = [];
    for (const candidate of early) await this.pc.addIceCandidate(candidate);
  }

  sendSignal(data) {
    this.client.signal(this.roomId, this.peerId, { roomsvc: MESH_SIGNAL, ...data }).catch((err) => {
      // Signals lost to a reconnect are not retried: the pair falls back to the relay.
      if (err.reason !== "disconnected" && err.reason !== "closed") this.client.emit("error", err);
    });
  }

  onOpen() {
    if (this.closed || this.failed) return;
    clearTimeout(this.timer);
    this.open = true;
    this.setupMs = this.client.now() - this.startedAt;
    this.ping();
    this.pinger = setInterval(() => this.ping(), 2000);
    this.client.onLinkChanged(this, "p2p");
  }

  ping() {
    const stamp = new Uint8Array(8);
    new DataView(stamp.buffer).setFloat64(0, this.client.now());
    this.send(FRAME_PING, stamp);
  }

  onChannelMessage(raw) {
    const bytes = raw instanceof ArrayBuffer ? new Uint8Array(raw) : new Uint8Array(raw.buffer ?? raw);
    if (!bytes.length) return;
    const payload = bytes.subarray(1);
    if (bytes[0] === FRAME_DATA) this.client.onPeerData(this, payload);
    else if (bytes[0] === FRAME_PING) this.send(FRAME_PONG, payload);
    else if (bytes[0] === FRAME_PONG && payload.length === 8) {
      const sent = new DataView(payload.buffer, payload.byteOffset, 8).getFloat64(0);
      const first = this.rttMs === null;
      this.rttMs = this.client.now() - sent;
      if (first) this.client.onLinkChanged(this, "p2p"); // report the first measurement
    }
  }

  send(type, payload) {
    if (!this.open || this.channel.readyState !== "open") return false;
    const frame = new Uint8Array(payload.length + 1);
    frame[0] = type;
    frame.set(payload, 1);
    try {
      this.channel.send(frame);
      return true;
    } catch {
      return false;
    }
  }

  fail(why) {
    if (this.failed || this.closed) return;
    this.failed = true;
    this.failure = why;
    this.shutdown();
    this.client.onLinkChanged(this, "relay");
  }

  close() {
    this.closed = true;
    this.shutdown();
  }

  shutdown() {
    this.open = false;
    clearTimeout(this.timer);
    clearInterval(this.pinger);
    try {
      this.channel?.close();
      this.pc?.close();
    } catch {
      // already closed
    }
  }
}
