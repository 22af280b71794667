// Rooms as the client knows them: rebuilt from each welcome, each room's reliable messages
// resumed (docs/clients.md, "Reconnecting, state and resume"), GPGS's room calls (docs/clients.md,
// "Methods and events"), who of a room is reachable, and the status reports that make a room
// ACTIVE.
//
// Every peer is reachable through the relay; mesh.js adds peer-to-peer links through three
// hooks: peerAdded(), peerRemoved() and linkOf().

import { base64ToBytes } from "./base64.js";
import { Connection } from "./connection.js";

/** A participant's id (GPGS's RoomParticipant calls it `id`). */
export function participantIdOf(participant) {
  return participant.id ?? participant.participantId;
}

// What decides whether a peer's status is worth reporting again: not the latencies' values,
// which change with every ping, only whether they are known yet.
function reportKey(update) {
  return [update.status, update.error ?? "", "connectionSetupLatencyMillis" in update,
    "unreliableRoundtripLatencyMillis" in update].join("|");
}

export class Rooms extends Connection {
  constructor(options) {
    super(options);
    this.autoReportStatus = options.autoReportStatus ?? true;
    this.rooms = new Map(); // roomId -> the newest Room seen
    this.invitations = new Map(); // roomId -> Room, pending invitations of this player
    this.lastSeq = new Map(); // roomId -> the last reliable seq delivered to the listeners
    this.gates = new Map(); // roomId -> events held back while the room's messages resume
    this.reported = new Map(); // roomId -> Map(peerId -> what reportStatus last said)
    this.reporting = new Set(); // roomIds with a reportStatus in flight
    this.reachable = new Map(); // roomId -> Map(peerId -> "relay" | "p2p")
  }

  // ---- the welcome and resume ----------------------------------------------------------

  async restore(welcome, reworded) {
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

  onNotification(frame) {
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

  /** An application signal; mesh.js takes its own out first. */
  onSignal(params) {
    this.emit("signal", params);
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
      participantId, via, rttMs: this.linkOf(roomId, participantId)?.rttMs ?? null,
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

  // ---- peers and status reports ----------------------------------------------------------

  /** Hook: a peer became reachable (through the relay, for now). */
  peerAdded() {}

  /** Hook: a peer is no longer reachable. */
  peerRemoved() {}

  /** Hook: the peer-to-peer link of a pair (setupMs, rttMs, failed, failure), or undefined. */
  linkOf() {
    return undefined;
  }

  /** Peer bookkeeping after a room changed: who is reachable, links, status reports. */
  afterRoomChange(room) {
    const roomId = room.roomId;
    const peers = new Set(this.rooms.has(roomId) ? this.joinedPeerIds(room) : []);
    const reachable = this.reachable.get(roomId) ?? new Map();
    for (const peerId of [...reachable.keys()]) {
      if (!peers.has(peerId)) {
        reachable.delete(peerId);
        this.peerRemoved(roomId, peerId);
        this.emit("peerDisconnected", { roomId, participantId: peerId });
      }
    }
    for (const peerId of peers) {
      if (!reachable.has(peerId)) {
        reachable.set(peerId, "relay"); // the relay reaches every JOINED participant
        this.emit("peerConnected", { roomId, participantId: peerId, via: "relay" });
        this.peerAdded(roomId, peerId);
      }
    }
    if (reachable.size) this.reachable.set(roomId, reachable);
    else this.reachable.delete(roomId);
    if (this.autoReportStatus && peers.size) this.reportPeers(roomId);
  }

  forgetRoom(roomId) {
    for (const peerId of this.reachable.get(roomId)?.keys() ?? []) {
      this.peerRemoved(roomId, peerId);
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
    const link = this.linkOf(roomId, peerId);
    if (!link) return update;
    if (link.setupMs !== null) update.connectionSetupLatencyMillis = Math.round(link.setupMs);
    if (link.rttMs !== null) update.unreliableRoundtripLatencyMillis = Math.round(link.rttMs);
    if (link.failed) update.error = "P2P_FAILED";
    if (link.failed && link.failure) update.error_reason = link.failure;
    return update;
  }
}
