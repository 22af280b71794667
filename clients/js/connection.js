// The realtime socket of the roomsvc client: JSON-RPC 2.0 on a WebSocket (docs/clients.md),
// the binary SEND frames and their replies, the events, and reconnecting with backoff
// (docs/clients.md, "Reconnecting, state and resume").
//
// It knows nothing of rooms. The layers above it (rooms.js, mesh.js, client.js) extend it and
// fill in two hooks: restore(), which rebuilds their state from each welcome, and
// onNotification(), which takes every push that is not a reply.

import { RoomsvcError, clientError } from "./errors.js";
import { decodeServerFrame, encodeSendFrame } from "./frames.js";

const REALTIME_PATH = "/games/v1/realtime";
// Every event of the client, whichever layer emits it (roomsvc.d.ts, RoomsvcEvents).
const EVENTS = [
  "roomStatus", "invitation", "invitationRemoved", "message", "signal",
  "peerConnected", "peerDisconnected", "disconnected", "reconnected", "error",
];
// Close codes after which reconnecting cannot help unless the token changes (README,
// "A socket lives as long as its token"): 1008 is policy, which includes an expired token.
const CLOSE_POLICY = 1008;
const CLOSE_LANGUAGE = 4000; // ours: setLanguage() reconnects at once

/**
 * Delay before reconnect attempt `attempt` (0-based): exponential backoff with full jitter
 * (uniform in [0, min(max, base * 2^attempt)]), so a server restart is not met by every client
 * at the same instant.
 */
export function backoffDelay(attempt, { baseMs, maxMs }, random = Math.random) {
  return Math.floor(random() * Math.min(maxMs, baseMs * 2 ** attempt));
}

function binaryOption(option) {
  if (option === true || option === false || option === undefined) return { send: Boolean(option), receive: Boolean(option) };
  if (typeof option === "object" && option !== null) return { send: Boolean(option.send), receive: Boolean(option.receive) };
  throw new TypeError("binary must be true, false, or {send, receive}");
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

export class Connection {
  /**
   * @param {object} options see roomsvc.d.ts (RoomsvcClientOptions)
   */
  constructor(options) {
    if (!options || !options.url) throw new TypeError("RoomsvcClient needs {url, token}");
    this.url = options.url;
    this.token = options.token;
    this.language = options.language ?? null;
    this.requestTimeoutMs = options.requestTimeoutMs ?? 15000;
    this.reconnectPolicy = { baseMs: 500, maxMs: 30000, maxAttempts: Infinity, ...options.reconnect };
    // Game messages as binary frames (docs/messages.md): sent, and/or received (messageFormat).
    this.binary = binaryOption(options.binary);
    this.WebSocket = options.WebSocket ?? globalThis.WebSocket;
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

  // ---- the socket ----------------------------------------------------------------------

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

  /** Closes the socket; pending calls are rejected; no reconnect. */
  close() {
    this.closedByUser = true;
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
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
    await this.restore(welcome, reworded);
    if (reconnect) this.emit("reconnected", welcome);
    // setLanguage() while this socket was opening: it speaks the old language.
    if (language !== this.language) this.setLanguage(this.language);
    return welcome;
  }

  /**
   * Hook `restore(welcome, reworded)`: rebuilds the upper layers' state from a welcome (the
   * whole truth after a reconnect); connect() resolves once it has. `reworded`: the socket's
   * language is not the last welcome's.
   */
  async restore() {}

  /** Hook `onNotification(frame)`: a push (a frame with a method) other than the welcome. */
  onNotification() {}

  // ---- calls and their replies ---------------------------------------------------------

  onFrame(frame) {
    if (frame.method === undefined) this.onReply(frame);
    else this.onNotification(frame);
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

  /** A binary frame: a message (a push like its JSON twin), or the reply to a SEND. */
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
}
