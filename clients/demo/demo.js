// The roomsvc demo: tic-tac-toe for two browser tabs, on the JavaScript client served at
// /sdk/roomsvc.js. Moves travel as reliable messages (the relay); the round-trip pings as
// unreliable ones (peer-to-peer when the pair's WebRTC link is up).
import { RoomsvcClient, participantIdOf } from "/sdk/roomsvc.js";
import { LANGUAGES, translate } from "./strings.js";
import * as ttt from "./game.js";

const query = new URLSearchParams(location.search);
const APP_ID = query.get("app") || "demo"; // tests use a fresh application each
const SESSION_KEY = `roomsvc-demo:${APP_ID}`; // per tab: a reload signs the tab back in
const PING_EVERY_MS = 1000;
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const $ = (id) => document.getElementById(id);

const state = {
  lang: pickLanguage(query.get("lang") || localStorage.getItem("roomsvc-demo-lang")),
  client: null,
  me: null, // {playerId, name}
  connection: "offline",
  roomId: null,
  game: { number: 0, moves: [] },
  rtt: null, // {ms, via}
};

function pickLanguage(lang) {
  return lang && lang in LANGUAGES ? lang : "en";
}

const t = (key, params) => translate(state.lang, key, params);

// ---- sign in -----------------------------------------------------------------------------

function playerIdFor(name) {
  const slug = name.toLowerCase().normalize("NFKD").replace(/[^a-z0-9_.-]+/g, "-")
    .replace(/^-+|-+$/g, "").slice(0, 32);
  return slug || `player-${Math.random().toString(36).slice(2, 8)}`;
}

async function devToken() {
  const reply = await fetch("/demo/token", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ playerId: state.me.playerId, name: state.me.name, applicationId: APP_ID }),
  });
  if (!reply.ok) throw new Error((await reply.json()).error?.message ?? `token: HTTP ${reply.status}`);
  return (await reply.json()).token;
}

async function signIn(name) {
  state.me = { name, playerId: playerIdFor(name) };
  sessionStorage.setItem(SESSION_KEY, JSON.stringify(state.me));
  const client = new RoomsvcClient({
    url: location.origin,
    token: devToken, // a function: each reconnect gets a fresh token
    language: state.lang,
    peerToPeer: $("p2p").checked,
  });
  state.client = client;
  client.on("roomStatus", onRoom);
  client.on("invitation", render);
  client.on("invitationRemoved", render);
  client.on("message", onMessage);
  client.on("peerConnected", ({ roomId, participantId }) => {
    if (roomId === state.roomId) sendState([participantId]); // a reloaded peer catches up
    render();
  });
  client.on("peerDisconnected", render);
  client.on("disconnected", ({ willReconnect }) => {
    state.connection = willReconnect ? "reconnecting" : "offline";
    render();
  });
  client.on("reconnected", () => {
    state.connection = "online";
    render();
  });
  client.on("error", (err) => console.warn("roomsvc:", err));
  state.connection = "connecting";
  render();
  try {
    const welcome = await client.connect();
    state.connection = "online";
    const room = welcome.rooms.find((r) => r.status !== "ROOM_DELETED");
    if (room && !state.roomId) state.roomId = room.roomId;
  } catch (err) {
    state.connection = "offline";
    showError(err);
  }
  render();
}

function signOut() {
  state.client?.close();
  state.client = null;
  state.me = null;
  state.roomId = null;
  state.connection = "offline";
  sessionStorage.removeItem(SESSION_KEY);
  render();
}

// ---- rooms -------------------------------------------------------------------------------

function onRoom(room) {
  const me = state.client.me(room);
  const inIt = me?.status === "PARTICIPANT_JOINED" && room.status !== "ROOM_DELETED";
  if (inIt && !state.roomId) {
    state.roomId = room.roomId;
    state.game = { number: 0, moves: [] };
  } else if (room.roomId === state.roomId && !inIt) {
    // A quick-match seeker's room is merged into its match: follow it.
    state.roomId = room.mergedIntoRoomId ?? (room.status === "ROOM_DELETED" ? null : state.roomId);
    if (me?.status === "PARTICIPANT_LEFT") state.roomId = null;
  }
  render();
}

function currentRoom() {
  return state.roomId ? state.client?.room(state.roomId) : undefined;
}

/** The two players of the room: participants who joined (even if they have left since). */
function players(room) {
  return (room?.participants ?? [])
    .filter((p) => p.status === "PARTICIPANT_JOINED" || p.status === "PARTICIPANT_LEFT")
    .slice(0, 2);
}

function opponent(room) {
  const mine = state.client.myParticipantId(room.roomId);
  return players(room).find((p) => participantIdOf(p) !== mine) ?? null;
}

function nameOf(participant) {
  return participant.player?.displayName ?? participant.autoMatchedPlayer?.displayName
    ?? participantIdOf(participant);
}

async function act(promise) {
  try {
    hideError();
    return await promise;
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    render();
  }
}

function variant() {
  return Number($("variant").value);
}

function quickMatch() {
  const criteria = { minAutoMatchingPlayers: 1, maxAutoMatchingPlayers: 1 };
  return act(state.client.createRoom({ autoMatchingCriteria: criteria, variant: variant() }));
}

function invite(playerId) {
  return act(state.client.createRoom({ invitedPlayerIds: [playerId], variant: variant() }));
}

async function accept(roomId) {
  const room = await act(state.client.joinRoom(roomId));
  if (room) {
    state.roomId = room.roomId;
    state.game = { number: 0, moves: [] };
    render();
  }
}

async function leave() {
  const roomId = state.roomId;
  state.roomId = null;
  state.rtt = null;
  await act(state.client.leaveRoom(roomId, "PLAYER_LEFT"));
}

// ---- the game over messages --------------------------------------------------------------

function send(participantIds, message, reliable) {
  const bytes = encoder.encode(JSON.stringify(message));
  const client = state.client;
  if (!client || !state.roomId || !participantIds.length) return Promise.resolve();
  if (reliable) {
    return Promise.all(participantIds.map((id) => client.sendReliableMessage(state.roomId, id, bytes)));
  }
  return client.sendUnreliableMessage(state.roomId, participantIds, bytes);
}

function sendState(to) {
  const { number, moves } = state.game;
  return send(to, { t: "state", game: number, moves }, true).catch(showError);
}

function onMessage({ roomId, senderParticipantId, data, via }) {
  if (roomId !== state.roomId) return;
  let message;
  try {
    message = JSON.parse(decoder.decode(data));
  } catch {
    return; // not ours
  }
  if (message.t === "ping") {
    send([senderParticipantId], { t: "pong", at: message.at }, false).catch(() => {});
  } else if (message.t === "pong" && typeof message.at === "number") {
    state.rtt = { ms: performance.now() - message.at, via };
    renderRoundTrip();
  } else if (message.t === "state") {
    adopt(message, senderParticipantId);
  }
}

/** The longer history of the newer game wins; a peer that is behind is sent ours. */
function adopt({ game, moves }, from) {
  if (!Number.isInteger(game) || !Array.isArray(moves)) return;
  const legal = moves.every((cell, i) => ttt.canPlay(moves.slice(0, i), cell));
  if (!legal) return;
  const mine = state.game;
  if (game > mine.number || (game === mine.number && moves.length > mine.moves.length)) {
    state.game = { number: game, moves: [...moves] };
    render();
  } else if (game < mine.number || moves.length < mine.moves.length) {
    sendState([from]);
  }
}

function myMark(room) {
  const ids = players(room).map(participantIdOf);
  return ttt.markOf(state.client.myParticipantId(room.roomId), ids, state.game.number);
}

function play(cell) {
  const room = currentRoom();
  const other = room && opponent(room);
  if (!other || other.status !== "PARTICIPANT_JOINED") return;
  const { moves } = state.game;
  if (ttt.toMove(moves) !== myMark(room) || !ttt.canPlay(moves, cell)) return;
  moves.push(cell);
  render();
  sendState([participantIdOf(other)]);
}

function newGame() {
  const room = currentRoom();
  const other = room && opponent(room);
  state.game = { number: state.game.number + 1, moves: [] };
  render();
  if (other) sendState([participantIdOf(other)]);
}

setInterval(() => {
  const room = currentRoom();
  const other = room && opponent(room);
  if (!state.client?.connected || !other || other.status !== "PARTICIPANT_JOINED") return;
  send([participantIdOf(other)], { t: "ping", at: performance.now() }, false).catch(() => {});
}, PING_EVERY_MS);

// ---- rendering ---------------------------------------------------------------------------

function showError(err) {
  $("error").textContent = err.message ?? String(err);
  $("error").hidden = false;
}

function hideError() {
  $("error").hidden = true;
}

function element(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  node.append(...children);
  return node;
}

function renderStatic() {
  document.documentElement.lang = state.lang;
  for (const node of document.querySelectorAll("[data-i18n]")) node.textContent = t(node.dataset.i18n);
  for (const node of document.querySelectorAll("[data-i18n-placeholder]")) {
    node.placeholder = t(node.dataset.i18nPlaceholder);
  }
  const selected = $("variant").value || "1";
  $("variant").replaceChildren(...[1, 2, 3].map((v) => element("option", { value: v }, t(`variants.${v}`))));
  $("variant").value = selected;
}

function renderRoundTrip() {
  $("rtt").textContent = state.rtt
    ? `${Math.round(state.rtt.ms)} ms (${t(`via.${state.rtt.via}`)})` : "–";
  $("rtt").dataset.via = state.rtt?.via ?? "";
}

function render() {
  renderStatic();
  const client = state.client;
  $("connection").dataset.state = state.connection;
  $("connection").textContent = t(state.connection);
  $("signin").hidden = Boolean(client);
  $("lobby").hidden = !client;
  if (!client) {
    $("room").hidden = true;
    return;
  }
  $("me").textContent = t("signedInAs", { name: state.me.name, id: state.me.playerId });
  $("me").dataset.playerId = state.me.playerId;
  const invitations = [...client.invitations.values()];
  $("invitations").replaceChildren(...(invitations.length ? invitations.map((room) => element("li",
    { "data-room-id": room.roomId },
    `${room.description ?? room.roomId} `,
    element("button", { type: "button", class: "accept", onclick: () => accept(room.roomId) }, t("accept")),
    " ",
    element("button", { type: "button", class: "decline", onclick: () => act(client.declineInvitation(room.roomId)) }, t("decline")),
  )) : [element("li", { class: "empty" }, t("noInvitations"))]));
  renderRoom(client);
}

function renderRoom(client) {
  const room = currentRoom();
  $("room").hidden = !room;
  $("quick-match").disabled = Boolean(room);
  $("invite-button").disabled = Boolean(room);
  if (!room) return;
  $("room-id").textContent = room.roomId;
  $("room-status").textContent = t(`roomStatus.${room.status}`);
  $("room-status").dataset.status = room.status;
  const mine = client.myParticipantId(room.roomId);
  const via = new Map(client.peers(room.roomId).map((p) => [p.participantId, p.via]));
  $("participants").replaceChildren(...room.participants.map((p) => {
    const id = participantIdOf(p);
    const bits = [t(`participantStatus.${p.status}`)];
    if (p.leaveReason) bits.push(p.leaveReason);
    if (id === mine) bits.push(t("you"));
    else if (via.has(id)) bits.push(t(`via.${via.get(id)}`));
    return element("li", { "data-participant-id": id, "data-status": p.status, "data-leave-reason": p.leaveReason ?? "" },
      `${nameOf(p)} (${bits.join(", ")})`);
  }));
  if (opponent(room)?.status !== "PARTICIPANT_JOINED") state.rtt = null; // nobody to ping
  renderBoard(room);
  renderRoundTrip();
}

function renderBoard(room) {
  const other = opponent(room);
  const { moves } = state.game;
  const cells = ttt.board(moves);
  const mark = other ? myMark(room) : null;
  const result = ttt.outcome(moves);
  const live = other?.status === "PARTICIPANT_JOINED";
  const myTurn = live && !result && ttt.toMove(moves) === mark;
  $("board").replaceChildren(...cells.map((cell, i) => element("button", {
    type: "button", "data-cell": i, "data-mark": cell ?? "", onclick: () => play(i),
    ...(myTurn && !cell ? {} : { disabled: "" }),
  }, cell ?? "")));
  let turn;
  if (!other) turn = t("waiting");
  else if (other.status !== "PARTICIPANT_JOINED") turn = t("opponentLeft", { name: nameOf(other) });
  else if (result === "draw") turn = t("draw");
  else if (result) turn = result === mark ? t("youWon") : t("youLost");
  else if (myTurn) turn = t("yourTurn", { mark });
  else turn = t("theirTurn", { name: nameOf(other), mark: mark === "X" ? "O" : "X" });
  $("turn").textContent = turn;
  $("turn").dataset.result = result ?? "";
  $("new-game").disabled = !live || !result;
}

// ---- wiring ------------------------------------------------------------------------------

$("language").replaceChildren(...Object.entries(LANGUAGES).map(([code, label]) => element("option", { value: code }, label)));
$("language").value = state.lang;
$("language").addEventListener("change", () => {
  state.lang = pickLanguage($("language").value);
  localStorage.setItem("roomsvc-demo-lang", state.lang);
  state.client?.setLanguage(state.lang); // server strings (descriptions, errors) follow
  render();
});
$("signin-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const name = $("name").value.trim();
  if (name) signIn(name);
});
$("signout").addEventListener("click", signOut);
$("quick-match").addEventListener("click", quickMatch);
$("invite-form").addEventListener("submit", (event) => {
  event.preventDefault();
  const invitee = $("invitee").value.trim();
  if (invitee) invite(invitee);
});
$("leave").addEventListener("click", leave);
$("new-game").addEventListener("click", newGame);

render();
const saved = sessionStorage.getItem(SESSION_KEY);
if (saved) signIn(JSON.parse(saved).name);
