// Test doubles of the two browser APIs the client uses: WebSocket and RTCPeerConnection.
// The test plays roomsvc's side of each socket by hand, so every frame order is chosen by it;
// what the real server does is tested against the real server (tests/test_js_client.py and
// the browser test).

/** A WebSocket constructor whose sockets the test drives; `sockets` in creation order. */
export class FakeNetwork {
  constructor() {
    this.sockets = [];
    this.waiters = [];
    const network = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url) {
        this.url = new URL(url);
        this.readyState = 0;
        this.sent = [];
        this.sentWaiters = [];
        network.sockets.push(this);
        network.wake();
      }

      send(data) {
        if (this.readyState !== 1) throw new Error("send on a socket that is not open");
        // a text frame is JSON-RPC; a binary one is kept as {binary: bytes}
        this.sent.push(typeof data === "string" ? JSON.parse(data) : { binary: Uint8Array.from(data) });
        for (const wake of this.sentWaiters.splice(0)) wake();
      }

      close(code = 1000, reason = "") {
        if (this.readyState === 3) return;
        this.readyState = 3;
        queueMicrotask(() => this.onclose?.({ code, reason }));
      }

      // ---- the server's side ----
      accept(welcome) {
        this.readyState = 1;
        this.onopen?.({});
        if (welcome) this.push("welcome", welcome);
      }

      push(method, params) {
        this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", method, params }) });
      }

      /** A binary frame from the server (delivered as an ArrayBuffer, binaryType "arraybuffer"). */
      pushBinary(bytes) {
        this.onmessage?.({ data: Uint8Array.from(bytes).buffer });
      }

      /** The next binary frame this socket sends (waits for it). */
      async binaryFrame(from = 0) {
        for (;;) {
          const found = this.sent.slice(from).find((frame) => frame.binary);
          if (found) return found.binary;
          await new Promise((wake) => this.sentWaiters.push(wake));
        }
      }

      reply(request, result) {
        this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", id: request.id, result }) });
      }

      fail(request, code, message, data) {
        this.onmessage?.({ data: JSON.stringify({ jsonrpc: "2.0", id: request.id, error: { code, message, data } }) });
      }

      drop(code = 1006, reason = "") {
        this.readyState = 3;
        this.onclose?.({ code, reason });
      }

      /** The next request of `method` this socket sends (waits for it). */
      async request(method, from = 0) {
        for (;;) {
          const found = this.sent.slice(from).find((frame) => frame.method === method);
          if (found) return found;
          await new Promise((wake) => this.sentWaiters.push(wake));
        }
      }

      requests(method) {
        return this.sent.filter((frame) => frame.method === method);
      }
    };
  }

  wake() {
    for (const wake of this.waiters.splice(0)) wake();
  }

  /** The `n`th socket the client opened (0-based), once it exists. */
  async socket(n) {
    while (this.sockets.length <= n) await new Promise((wake) => this.waiters.push(wake));
    return this.sockets[n];
  }
}

/**
 * Answers every request of a socket with `handlers[method](params)` (a result, or a thrown
 * {code, message, data}); methods without a handler get the JSON-RPC "method not found".
 */
export function serve(socket, handlers) {
  let seen = 0;
  const loop = async () => {
    for (;;) {
      while (socket.sent.length <= seen) {
        if (socket.readyState === 3) return;
        await new Promise((wake) => socket.sentWaiters.push(wake));
      }
      const request = socket.sent[seen++];
      const handler = handlers[request.method];
      if (!handler) {
        socket.fail(request, -32601, `Unknown method ${request.method}.`, { code: 400, status: "INVALID_ARGUMENT", reason: "methodNotFound" });
        continue;
      }
      try {
        socket.reply(request, await handler(request.params));
      } catch (err) {
        socket.fail(request, err.code ?? -32000, err.message, err.data);
      }
    }
  };
  loop();
}

/** An RTCPeerConnection whose data channel opens when the test says so. */
export class FakePeerConnection {
  static all = [];

  constructor(config) {
    this.config = config;
    this.connectionState = "new";
    this.remote = null;
    this.local = null;
    this.candidates = [];
    this.closed = false;
    FakePeerConnection.all.push(this);
  }

  createDataChannel(label, options) {
    this.channel = {
      label, options, readyState: "connecting", sent: [],
      send(frame) { this.sent.push(Uint8Array.from(frame)); },
      close() { this.readyState = "closed"; },
    };
    return this.channel;
  }

  async createOffer() { return { type: "offer", sdp: "fake-offer" }; }
  async createAnswer() { return { type: "answer", sdp: "fake-answer" }; }
  async setLocalDescription(description) { this.local = description; this.localDescription = description; }
  async setRemoteDescription(description) { this.remote = description; }
  async addIceCandidate(candidate) { this.candidates.push(candidate); }
  close() { this.closed = true; }

  // ---- the network's side ----
  open() {
    this.channel.readyState = "open";
    this.channel.onopen?.();
  }

  deliver(bytes) {
    this.channel.onmessage?.({ data: Uint8Array.from(bytes).buffer });
  }
}
