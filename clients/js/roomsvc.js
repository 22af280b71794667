// roomsvc JavaScript client: one ES module, no build step, no dependency.
//
// Its surface mirrors GPGS's RealTimeMultiplayerClient (docs/clients.md has the table), over
// roomsvc's realtime channel: JSON-RPC 2.0 on a WebSocket (docs/clients.md). It
// reconnects by itself, rebuilds its state from each welcome, resumes every room's reliable
// messages, and can build a WebRTC mesh that carries unreliable traffic peer to peer, with the
// relay as the fallback of each pair.

export const MAX_RELIABLE_MESSAGE_LEN = 1400;
export const MAX_UNRELIABLE_MESSAGE_LEN = 1168;

const REALTIME_PATH = "/games/v1/realtime";
const EVENTS = [
  "roomStatus", "invitation", "invitationRemoved", "message", "signal",
  "peerConnected", "peerDisconnected", "disconnected", "reconnected", "error",
];
// Close codes after which reconnecting cannot help unless the token changes (README,
// "A socket lives as long as its token"): 1008 is policy, which includes an expired token.
const CLOSE_POLICY = 1008;
const CLOSE_LANGUAGE = 4000; // ours: setLanguage() reconnects at once
// Our own data channel frames (docs/clients.md, "Peer-to-peer"): one type byte, then the rest.
const FRAME_DATA = 0;
const FRAME_PING = 1;
const FRAME_PONG = 2;
const MESH_SIGNAL = "roomsvc-webrtc"; // data.roomsvc of the signals the mesh consumes itself

/** An error from roomsvc or from this client. `data` is the JSON-RPC error's `data`. */
export class RoomsvcError extends Error {
  constructor(message, { rpcCode = null, data = null, reason = null } = {}) {
    super(message);
    this.name = "RoomsvcError";
    this.rpcCode = rpcCode; // the JSON-RPC code (-32xxx), null for the client's own errors
    this.data = data ?? { reason };
    this.code = this.data.code ?? null; // the HTTP-like code (404, 409, 503...)
    this.status = this.data.status ?? null; // NOT_FOUND, FAILED_PRECONDITION...
    this.reason = this.data.reason ?? reason; // Google's reason, or the client's own
    this.gpgsStatus = this.data.gpgsStatus ?? null; // 7003, 7004, 7005 where GPGS had one
  }
}

function clientError(reason, message) {
  return new RoomsvcError(message, { reason });
}

export function bytesToBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export function base64ToBytes(b64) {
  // The server may use the URL-safe alphabet and leave padding out.
  let std = b64.replace(/-/g, "+").replace(/_/g, "/");
  while (std.length % 4) std += "=";
  const text = atob(std);
  const bytes = new Uint8Array(text.length);
  for (let i = 0; i < text.length; i++) bytes[i] = text.charCodeAt(i);
  return bytes;
}

/** A participant's id (GPGS's RoomParticipant calls it `id`). */
export function participantIdOf(participant) {
  return participant.id ?? participant.participantId;
}

// ---- binary frames (docs/messages.md "Binary frames") -------------------------------------
// Game traffic without JSON or base64. Integers big-endian; ids UTF-8 with a one-byte length.
//   SEND      0x01 | flags | u32 tag | id roomId | u8 n, n x id | payload   (client -> server)
//   SENT      0x02 | u32 tag | u32 tokenId                                   (server -> client)
//   REJECTED  0x03 | u32 tag | the JSON-RPC error object, UTF-8 JSON
//   MESSAGE   0x04 | flags | u64 seq (0: unreliable) | id roomId | id senderParticipantId | payload
// flags: bit 0 = reliable.
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

function binaryOption(option) {
  if (option === true || option === false || option === undefined) return { send: Boolean(option), receive: Boolean(option) };
  if (typeof option === "object" && option !== null) return { send: Boolean(option.send), receive: Boolean(option.receive) };
  throw new TypeError("binary must be true, false, or {send, receive}");
}

function asBytes(bytes, limit) {
  if (!(bytes instanceof Uint8Array)) {
    throw new TypeError("message data must be a Uint8Array");
  }
  if (bytes.length > limit) {
    throw clientError("messageTooLarge", `message data is ${bytes.length} bytes; the limit is ${limit}`);
  }
  return bytes;
}

function realtimeUrl(base, token, language, binaryReceive) {
  const url = new URL(base);
  if (url.protocol === "http:") url.protocol = "ws:";
  if (url.protocol === "https:") url.protocol = "wss:";
  if (url.pathname === "/" || url.pathname === "") url.pathname = REALTIME_PATH;
  url.searchParams.set("access_token", token);
  if (language) url.searchParams.set("language", language);
  if (binaryReceive) url.searchParams.set("messageFormat", "binary");
  return url.toString();
}

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter
 * (uniform in [0, min(max, base * 2^attempt)]), so a server restart is not met by every client
 * at the same instant.
 */
export function backoffDelay(attempt, { baseMs, maxMs }, random = Math.random) {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** attempt));
}

export class RoomsvcClient {
  /**
   * @param {object} options see roomsvc.d.ts (RoomsvcClientOptions)
   */
  constructor(options) {
    if (!options || !options.url) throw new TypeError("RoomsvcClient needs {url, token}");
    this.url = options.url;
    this.token = options.token;
    this.language = options.language ?? null;
    this.peerToPeer = Boolean(options.peerToPeer);
    this.autoReportStatus = options.autoReportStatus ?? true;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this.reconnectPolicy = { baseMs: 500, maxMs: 30000, maxAttempts: Infinity, ...options.reconnect };
    this.p2pTimeoutMs = options.p2pTimeoutMs ?? 10000;
    // More RTCConfiguration for each pair (e.g. iceTransportPolicy "relay": TURN only, so no
    // address of the player reaches its peers); iceServers always come from roomsvc.
    this.rtcConfiguration = options.rtcConfiguration ?? {};
    // Game messages as binary frames (docs/messages.md): sent, and/or received (messageFormat).
    this.binary = binaryOption(options.binary);
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
    this.RTCPeerConnection = options.RTCPeerConnection ?? globalThis.RTCPeerConnection;
    this.random = options.random ?? Math.random;
    this.now = options.now ?? (() => (globalThis.performance ?? Date).now());

    this.listeners = new Map(EVENTS.map((name) => [name, new Set()]));
    this.socket = null;
    this.nextId = 1;
    this.pending = new Map(); // request id -> {resolve, reject, timer, method}
    this.nextTag = 1;
    this.pendingTags = new Map(); // binary SEND tag -> {resolve, reject, timer, method}
    this.closedByUser = false;
    this.live = false; // between a welcome and the close of its socket
    this.welcomeLanguage = null; // the language of the socket that sent the last welcome
    this.connectedOnce = false;
    this.attempt = 0;
    this.reconnectTimer = null;

    this.playerId = null;
    this.iceServers = [];
    this.rooms = new Map(); // roomId -> the newest Room seen
    this.invitations = new Map(); // roomId -> Room, pending invitations of this player
    this.lastSeq = new Map(); // roomId -> the last reliable seq delivered to the listeners
    this.gates = new Map(); // roomId -> events held back while the room's messages resume
    this.reported = new Map(); // roomId -> Map(peerId -> what reportStatus last said)
    this.reporting = new Set(); // roomIds with a reportStatus in flight
    this.reachable = new Map(); // roomId -> Map(peerId -> "relay" | "p2p")
    this.links = new Map(); // "roomId\u0000peerId" -> PeerLink
  }

  on(event, fn) {
    const set = this.listeners.get(event);
    if (!set) throw new TypeError(`unknown event ${event}; known: ${EVENTS.join(", ")}`);
    set.add(fn);
    return () => set.delete(fn);
  }

  off(event, fn) {
    this.listeners.get(event)?.delete(fn);
  }

  emit(event, payload) {
    for (const fn of this.listeners.get(event)) {
      try {
        fn(payload);
      } catch (err) {
        // A listener's bug must not break the client's own bookkeeping.
        if (event !== "error") this.emit("error", err);
      }
    }
  }

  // ---- the connection ------------------------------------------------------------------

  /** Opens the socket; resolves with the welcome's params once every room has resumed. */
  connect() {
    if (this.socket) return Promise.reject(clientError("alreadyConnected", "connect() was called twice"));
    if (typeof this.WebSocket !== "function") {
      return Promise.reject(clientError("noWebSocket", "no WebSocket: pass the WebSocket option"));
    }
    this.closedByUser = false;
    return this.open(true);
  }

  /** One socket; `initial`: connect()'s, whose failure rejects instead of reconnecting. */
  async open(initial = false) {
    const token = typeof this.token === "function" ? await this.token() : this.token;
    return new Promise((resolve, reject) => {
      const socket = new this.WebSocket(realtimeUrl(this.url, token, this.language, this.binary.receive));
      const language = this.language;
      this.socket = socket;
      socket.binaryType = "arraybuffer";
      let welcomed = false;
      socket.onmessage = (event) => {
        if (this.socket !== socket) return;
        if (typeof event.data !== "string") {
          if (welcomed) this.onBinary(event.data);
          return;
        }
        let frame;
        try {
          frame = JSON.parse(event.data);
        } catch {
          return;
        }
        if (!welcomed && frame.method === "welcome") {
          welcomed = true;
          this.onWelcome(frame.params, language).then(resolve, reject);
          return;
        }
        this.onFrame(frame);
      };
      socket.onerror = () => {}; // the close event that follows says everything we act on
      socket.onclose = (event) => {
        if (this.socket !== socket) return;
        this.socket = null;
        this.failPending(clientError("disconnected", "the connection closed before the reply; the call may or may not have been applied"));
        if (!welcomed) {
          const err = clientError("connectFailed", `the realtime socket closed before the welcome (code ${event.code})`);
          err.closeCode = event.code;
          if (initial || this.closedByUser) {
            reject(err);
            return;
          }
          resolve(null); // a failed reconnect attempt: the next one is scheduled below
        }
        this.onClosed(event.code, event.reason, welcomed);
      };
    });
  }

  /** After a socket closed: `disconnected` once per lost session, then the next attempt. */
  onClosed(code, reason, wasWelcomed) {
    if (this.closedByUser) return;
    const canRetry = code !== CLOSE_POLICY || typeof this.token === "function";
    const willReconnect = canRetry && this.attempt < this.reconnectPolicy.maxAttempts;
    if (wasWelcomed) {
      this.live = false;
      this.emit("disconnected", { code, reason, willReconnect });
    }
    if (!willReconnect) return;
    let delay = backoffDelay(this.attempt, this.reconnectPolicy, this.random);
    if (code === CLOSE_LANGUAGE) delay = 0;
    this.attempt += 1;
    this.reconnectTimer = setTimeout(() => {
      this.reconnectTimer = null;
      if (this.closedByUser) return;
      this.open().catch((err) => {
        this.emit("error", err);
        this.onClosed(1006, "reconnect failed", false);
      });
    }, delay);
  }

  /** Closes the socket and every peer link; pending calls are rejected; no reconnect. */
  close() {
    this.closedByUser = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
    for (const link of this.links.values()) link.close();
    this.links.clear();
    const socket = this.socket;
    this.socket = null;
    this.live = false;
    this.failPending(clientError("closed", "the client was closed"));
    if (socket) socket.close(1000, "client closed");
  }

  /**
   * Switches the language of every later call and, by reconnecting, of the pushes (the
   * server renders them in the socket's language). Seats are kept: it is a reconnect.
   */
  setLanguage(language) {
    this.language = language || null;
    if (this.live && this.socket) this.socket.close(CLOSE_LANGUAGE, "language changed");
  }

  get connected() {
    return this.live && this.socket !== null && this.socket.readyState === 1;
  }

  async onWelcome(welcome, language) {
    const reconnect = this.connectedOnce;
    // Rooms are worded in the socket's language: a new one shows every room anew.
    const reworded = reconnect && language !== this.welcomeLanguage;
    this.welcomeLanguage = language;
    this.connectedOnce = true;
    this.live = true;
    this.attempt = 0;
    this.playerId = welcome.playerId;
    this.iceServers = welcome.iceServers ?? [];
    // The welcome is the whole truth after a reconnect: rooms not in it are gone for us.
    const before = new Map(this.rooms);
    this.rooms.clear();
    this.reporting.clear();
    this.reported.clear();
    for (const room of welcome.rooms ?? []) {
      this.rooms.set(room.roomId, room);
      this.gates.set(room.roomId, []);
    }
    const invitations = new Map((welcome.invitations ?? []).map((room) => [room.roomId, room]));
    for (const [roomId, room] of this.invitations) {
      if (!invitations.has(roomId)) this.emit("invitationRemoved", room);
    }
    for (const [roomId, room] of invitations) {
      if (!this.invitations.has(roomId)) this.emit("invitation", room);
    }
    this.invitations = invitations;
    const gone = [...before.keys()].filter((roomId) => !this.rooms.has(roomId));
    for (const roomId of gone) this.forgetRoom(roomId);
    // The server holds each room's live messages until we resume it (docs/clients.md, "Reconnecting, state and resume").
    await Promise.all([...this.rooms.values()].map((room) => {
      const known = before.get(room.roomId);
      return this.resume(room.roomId, reworded || !known || known.roomStatusVersion < room.roomStatusVersion);
    }));
    // A room we lost while away (e.g. the grace ran out): show its listeners how it ended.
    for (const roomId of gone) this.getRoom(roomId).catch(() => {});
    if (reconnect) this.emit("reconnected", welcome);
    // setLanguage() while this socket was opening: it speaks the old language.
    if (language !== this.language) this.setLanguage(this.language);
    return welcome;
  }

  /**
   * Resumes a welcome room's reliable messages; until the reply, the room's events are held
   * (the replay comes first), then: the welcome's Room when `announce`, the held events.
   */
  async resume(roomId, announce) {
    try {
      await this.call("rooms.resumeMessages", { roomId, afterSeq: this.lastSeq.get(roomId) ?? 0 });
    } catch (err) {
      // A room we no longer hold a seat in, or an older server: there is nothing to replay.
      if (err.reason !== "disconnected" && err.reason !== "closed") this.emit("error", err);
    } finally {
      const held = this.gates.get(roomId) ?? [];
      this.gates.delete(roomId);
      const room = this.rooms.get(roomId);
      if (room && announce) this.emit("roomStatus", room);
      if (room) this.afterRoomChange(room);
      for (const frame of held) this.onFrame(frame);
    }
  }

  onFrame(frame) {
    if (frame.method === undefined) {
      this.onReply(frame);
      return;
    }
    const roomId = frame.params?.roomId;
    const gate = roomId === undefined ? undefined : this.gates.get(roomId);
    if (gate) {
      gate.push(frame);
      return;
    }
    if (frame.method === "roomStatus") this.onRoom(frame.params);
    else if (frame.method === "message") this.onRelayedMessage(frame.params);
    else if (frame.method === "signal") this.onSignal(frame.params);
  }

  onReply(frame) {
    const call = this.pending.get(frame.id);
    if (!call) return;
    this.pending.delete(frame.id);
    clearTimeout(call.timer);
    if (frame.error) {
      const { code, message, data } = frame.error;
      call.reject(new RoomsvcError(message ?? `${call.method} failed`, { rpcCode: code, data }));
    } else {
      call.resolve(frame.result);
    }
  }

  /** A binary frame: a message (held like its JSON twin while its room resumes), or a reply. */
  onBinary(data) {
    let frame;
    try {
      frame = decodeServerFrame(data instanceof ArrayBuffer || ArrayBuffer.isView(data) ? data : new Uint8Array(0));
    } catch (err) {
      this.emit("error", err);
      return;
    }
    if (frame.type === "message") {
      const { roomId, senderParticipantId, isReliable, seq, data: bytes } = frame;
      const params = { roomId, senderParticipantId, isReliable, data: bytes };
      if (seq) params.seq = seq;
      this.onFrame({ method: "message", params });
      return;
    }
    const call = this.pendingTags.get(frame.tag);
    if (!call) return;
    this.pendingTags.delete(frame.tag);
    clearTimeout(call.timer);
    if (frame.type === "sent") {
      call.resolve({ tokenId: frame.tokenId });
    } else {
      const { code, message, data: errorData } = frame.error ?? {};
      call.reject(new RoomsvcError(message ?? `${call.method} failed`, { rpcCode: code ?? null, data: errorData }));
    }
  }

  failPending(err) {
    const calls = [...this.pending.values(), ...this.pendingTags.values()];
    this.pending.clear();
    this.pendingTags.clear();
    for (const call of calls) {
      clearTimeout(call.timer);
      call.reject(err);
    }
  }

  /** One JSON-RPC call; rejects with a RoomsvcError (timeout, disconnect, or the server's). */
  call(method, params = {}) {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) {
      return Promise.reject(clientError("disconnected", `not connected; ${method} was not sent (wait for "reconnected")`));
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(clientError("timeout", `${method}: no reply within ${this.requestTimeoutMs} ms; it may or may not have been applied`));
      }, this.requestTimeoutMs);
      this.pending.set(id, { resolve, reject, timer, method });
      socket.send(JSON.stringify({ jsonrpc: "2.0", id, method, params }));
    });
  }

  // ---- rooms ---------------------------------------------------------------------------

  async roomCall(method, roomId, body) {
    const params = roomId === null ? {} : { roomId };
    if (body !== undefined) params.body = body;
    if (this.language) params.language = this.language;
    const result = await this.call(method, params);
    if (result && result.kind === "games#room") this.onRoom(result);
    return result;
  }

  createRoom(request) {
    return this.roomCall("rooms.create", null, request);
  }

  joinRoom(roomId) {
    return this.roomCall("rooms.join", roomId, {});
  }

  leaveRoom(roomId, reason = "PLAYER_LEFT") {
    return this.roomCall("rooms.leave", roomId, { reason });
  }

  declineInvitation(roomId) {
    return this.roomCall("rooms.decline", roomId);
  }

  async dismissInvitation(roomId) {
    await this.roomCall("rooms.dismiss", roomId);
    const room = this.invitations.get(roomId);
    if (room) {
      this.invitations.delete(roomId);
      this.emit("invitationRemoved", room);
    }
  }

  async listInvitations() {
    const list = await this.roomCall("rooms.list", null);
    return list.items ?? [];
  }

  getRoom(roomId) {
    return this.roomCall("rooms.get", roomId);
  }

  async reportStatus(roomId, updates) {
    const status = await this.roomCall("rooms.reportStatus", roomId, { updates });
    const room = this.rooms.get(roomId);
    if (room && status && status.statusVersion > room.roomStatusVersion) {
      this.onRoom({
        ...room,
        status: status.status,
        roomStatusVersion: status.statusVersion,
        autoMatchingStatus: status.autoMatchingStatus,
        participants: status.participants ?? room.participants,
      });
    }
    return status;
  }

  /** The newest Room this client has seen, or undefined. */
  room(roomId) {
    return this.rooms.get(roomId);
  }

  /** This player's participant id in a room, or null. */
  myParticipantId(roomId) {
    const me = this.me(this.rooms.get(roomId));
    return me ? participantIdOf(me) : null;
  }

  /** Each other JOINED participant of a room and how it is reached ("relay" | "p2p"). */
  peers(roomId) {
    const reachable = this.reachable.get(roomId) ?? new Map();
    return [...reachable].map(([participantId, via]) => ({
      participantId, via, rttMs: this.links.get(linkKey(roomId, participantId))?.rttMs ?? null,
    }));
  }

  me(room) {
    return room?.participants?.find((p) => p.player?.playerId === this.playerId) ?? null;
  }

  joinedPeerIds(room) {
    const me = this.me(room);
    if (!me || me.status !== "PARTICIPANT_JOINED" || room.status === "ROOM_DELETED") return [];
    return room.participants
      .filter((p) => p !== me && p.status === "PARTICIPANT_JOINED")
      .map(participantIdOf);
  }

  onRoom(room) {
    const previous = this.rooms.get(room.roomId) ?? this.invitations.get(room.roomId);
    if (previous && previous.roomStatusVersion >= room.roomStatusVersion) return;
    const me = this.me(room);
    const invited = me?.status === "PARTICIPANT_INVITED" && room.status !== "ROOM_DELETED";
    if (invited) {
      this.invitations.set(room.roomId, room);
      if (!previous) this.emit("invitation", room);
    } else if (this.invitations.delete(room.roomId)) {
      this.emit("invitationRemoved", room);
    }
    if (me?.status === "PARTICIPANT_JOINED" && room.status !== "ROOM_DELETED") {
      this.rooms.set(room.roomId, room);
    } else {
      this.rooms.delete(room.roomId);
    }
    this.emit("roomStatus", room);
    this.afterRoomChange(room, previous);
    if (!this.rooms.has(room.roomId) && !invited) this.forgetRoom(room.roomId);
  }

  /** Peer bookkeeping after a room changed: who is reachable, links, status reports. */
  afterRoomChange(room) {
    const roomId = room.roomId;
    const peers = new Set(this.rooms.has(roomId) ? this.joinedPeerIds(room) : []);
    const reachable = this.reachable.get(roomId) ?? new Map();
    for (const peerId of [...reachable.keys()]) {
      if (!peers.has(peerId)) {
        reachable.delete(peerId);
        this.closeLink(roomId, peerId);
        this.emit("peerDisconnected", { roomId, participantId: peerId });
      }
    }
    for (const peerId of peers) {
      if (!reachable.has(peerId)) {
        reachable.set(peerId, "relay"); // the relay reaches every JOINED participant
        this.emit("peerConnected", { roomId, participantId: peerId, via: "relay" });
        if (this.peerToPeer) this.openLink(roomId, peerId);
      }
    }
    if (reachable.size) this.reachable.set(roomId, reachable);
    else this.reachable.delete(roomId);
    if (this.autoReportStatus && peers.size) this.reportPeers(roomId);
  }

  forgetRoom(roomId) {
    for (const peerId of this.reachable.get(roomId)?.keys() ?? []) {
      this.closeLink(roomId, peerId);
      this.emit("peerDisconnected", { roomId, participantId: peerId });
    }
    this.reachable.delete(roomId);
    this.reported.delete(roomId);
    this.lastSeq.delete(roomId);
    this.gates.delete(roomId);
  }

  /**
   * Reports CONNECTION_ESTABLISHED for each reachable peer not yet reported (the relay is a
   * connection: a room becomes ACTIVE without peer-to-peer), with the mesh's diagnostics.
   * One report in flight per room; a change during it is picked up by the next.
   */
  async reportPeers(roomId) {
    if (this.reporting.has(roomId) || !this.connected) return;
    const room = this.rooms.get(roomId);
    if (!room) return;
    let reported = this.reported.get(roomId);
    if (!reported) {
      reported = new Map();
      this.reported.set(roomId, reported);
      // Reported before a reconnect: the server still holds it (the seat was kept).
      if (this.me(room)?.connected) {
        for (const peerId of this.joinedPeerIds(room)) reported.set(peerId, reportKey({ status: "CONNECTION_ESTABLISHED" }));
      }
    }
    const due = this.joinedPeerIds(room)
      .map((peerId) => this.statusUpdate(roomId, peerId))
      .filter((update) => reported.get(update.participantId) !== reportKey(update));
    if (!due.length) return;
    this.reporting.add(roomId);
    try {
      await this.reportStatus(roomId, due);
      for (const update of due) reported.set(update.participantId, reportKey(update));
    } catch (err) {
      if (err.reason !== "disconnected" && err.reason !== "closed") this.emit("error", err);
      return;
    } finally {
      this.reporting.delete(roomId);
    }
    this.reportPeers(roomId);
  }

  statusUpdate(roomId, peerId) {
    const update = { participantId: peerId, status: "CONNECTION_ESTABLISHED" };
    const link = this.links.get(linkKey(roomId, peerId));
    if (!link) return update;
    if (link.setupMs !== null) update.connectionSetupLatencyMillis = Math.round(link.setupMs);
    if (link.rttMs !== null) update.unreliableRoundtripLatencyMillis = Math.round(link.rttMs);
    if (link.failed) update.error = "P2P_FAILED";
    if (link.failed && link.failure) update.error_reason = link.failure;
    return update;
  }

  // ---- messages ------------------------------------------------------------------------

  onRelayedMessage(params) {
    if (params.isReliable && typeof params.seq === "number") {
      if (params.seq <= (this.lastSeq.get(params.roomId) ?? 0)) return; // resumed twice
      this.lastSeq.set(params.roomId, params.seq);
    }
    this.emit("message", {
      roomId: params.roomId,
      senderParticipantId: params.senderParticipantId,
      data: params.data ?? base64ToBytes(params.messageData), // binary frame, or JSON
      isReliable: Boolean(params.isReliable),
      seq: params.seq,
      via: "relay",
    });
  }

  sendToRelay(roomId, bytes, reliable, recipients) {
    if (this.binary.send) return this.sendFrame(roomId, bytes, reliable, recipients);
    const body = { messageData: bytesToBase64(bytes), reliable };
    if (recipients) body.recipientParticipantIds = recipients;
    return this.call("rooms.sendMessage", { roomId, body });
  }

  /** One binary SEND frame; resolves with {tokenId} from its SENT, rejects on REJECTED. */
  sendFrame(roomId, bytes, reliable, recipients) {
    const socket = this.socket;
    if (!socket || socket.readyState !== 1) {
      return Promise.reject(clientError("disconnected", "not connected; the message was not sent (wait for \"reconnected\")"));
    }
    const tag = this.nextTag;
    this.nextTag = tag >= 0xffffffff ? 1 : tag + 1; // u32, never 0 (0 asks for no reply)
    let frame;
    try {
      frame = encodeSendFrame({ reliable, tag, roomId, recipients, payload: bytes });
    } catch (err) {
      return Promise.reject(err);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pendingTags.delete(tag);
        reject(clientError("timeout", `binary send: no reply within ${this.requestTimeoutMs} ms; it may or may not have been applied`));
      }, this.requestTimeoutMs);
      this.pendingTags.set(tag, { resolve, reject, timer, method: "rooms.sendMessage" });
      socket.send(frame);
    });
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

  /** Sends over the pair's open data channel; false when the pair is on the relay. */
  sendPeerToPeer(roomId, peerId, bytes) {
    const link = this.links.get(linkKey(roomId, peerId));
    return link ? link.send(FRAME_DATA, bytes) : false;
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

  // ---- the peer-to-peer mesh -----------------------------------------------------------

  onSignal(params) {
    if (params.data?.roomsvc !== MESH_SIGNAL) {
      this.emit("signal", params);
      return;
    }
    if (!this.peerToPeer || !this.rooms.has(params.roomId)) return;
    const link = this.openLink(params.roomId, params.senderParticipantId);
    if (link) link.onSignal(params.data);
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
}

// What decides whether a peer's status is worth reporting again: not the latencies' values,
// which change with every ping, only whether they are known yet.
function reportKey(update) {
  return [update.status, update.error ?? "", "connectionSetupLatencyMillis" in update,
    "unreliableRoundtripLatencyMillis" in update].join("|");
}

function linkKey(roomId, peerId) {
  return `${roomId}\u0000${peerId}`;
}

/**
 * One WebRTC pair. The participant with the smaller id offers; candidates trickle through
 * rooms.signal. One negotiated unordered data channel without retransmits carries the pair's
 * unreliable messages and our latency pings. A pair that is not open within p2pTimeoutMs, or
 * that fails later, stays on the relay for the rest of the room.
 */
class PeerLink {
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
