// Shared builders of the unit tests: resources in the REST shapes, and a client on fakes.
import { RoomsvcClient } from "../roomsvc.js";

export const ME = "alice";

export function room(roomId, version, participants, extra = {}) {
  return {
    kind: "games#room", applicationId: "app", roomId, status: "ROOM_ACTIVE",
    roomStatusVersion: version, participants, ...extra,
  };
}

export function joined(id, playerId, extra = {}) {
  return { id, status: "PARTICIPANT_JOINED", player: { playerId }, ...extra };
}

export function welcome(rooms = [], invitations = []) {
  return { playerId: ME, applicationId: "app", serverTimeMillis: "1", rooms, invitations, iceServers: [] };
}

export function newClient(network, options = {}) {
  return new RoomsvcClient({
    url: "ws://127.0.0.1:1/games/v1/realtime", token: "t0", WebSocket: network.WebSocket,
    reconnect: { baseMs: 1, maxMs: 4 }, autoReportStatus: false, ...options,
  });
}

/** Collects a client's events of one kind. */
export function collect(client, event) {
  const seen = [];
  client.on(event, (payload) => seen.push(payload));
  return seen;
}

export function until(predicate) {
  return new Promise((resolve) => {
    const check = () => (predicate() ? resolve() : setImmediate(check));
    check();
  });
}
