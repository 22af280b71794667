// TypeScript declarations of roomsvc.js (the roomsvc JavaScript client).
// Resources (Room, RoomStatus, RoomList) are exactly the REST shapes of games/v1.

export const MAX_RELIABLE_MESSAGE_LEN: 1400;
export const MAX_UNRELIABLE_MESSAGE_LEN: 1168;

export type RoomStatusName =
  | "ROOM_INVITING" | "ROOM_AUTO_MATCHING" | "ROOM_CONNECTING" | "ROOM_ACTIVE" | "ROOM_DELETED";
export type ParticipantStatusName =
  | "PARTICIPANT_INVITED" | "PARTICIPANT_JOINED" | "PARTICIPANT_DECLINED" | "PARTICIPANT_LEFT";

export interface Player { kind?: "games#player"; playerId?: string; displayName?: string; avatarImageUrl?: string }
export interface AnonymousPlayer { kind?: "games#anonymousPlayer"; displayName?: string; avatarImageUrl?: string }

export interface RoomParticipant {
  kind?: "games#roomParticipant";
  id: string;
  status: ParticipantStatusName;
  autoMatched?: boolean;
  autoMatchedPlayer?: AnonymousPlayer;
  player?: Player;
  capabilities?: string[];
  connected?: boolean;
  leaveReason?: string;
}

export interface RoomModification { kind?: string; modifiedTimestampMillis?: string; participantId?: string }

export interface AutoMatchingCriteria {
  minAutoMatchingPlayers: number;
  maxAutoMatchingPlayers: number;
  exclusiveBitmask?: string | number;
}

export interface Room {
  kind: "games#room";
  applicationId: string;
  roomId: string;
  status: RoomStatusName;
  roomStatusVersion: number;
  variant?: number;
  description?: string;
  inviterId?: string;
  autoMatchingCriteria?: AutoMatchingCriteria;
  autoMatchingStatus?: { kind?: string; waitEstimateSeconds?: number };
  creationDetails?: RoomModification;
  lastUpdateDetails?: RoomModification;
  participants: RoomParticipant[];
  /** On the tombstone of a quick-match room that was merged into its match. */
  mergedIntoRoomId?: string;
}

export interface RoomStatus {
  kind: "games#roomStatus";
  roomId: string;
  status: RoomStatusName;
  statusVersion: number;
  autoMatchingStatus?: { kind?: string; waitEstimateSeconds?: number };
  participants?: RoomParticipant[];
}

export interface CreateRoomRequest {
  invitedPlayerIds?: string[];
  autoMatchingCriteria?: AutoMatchingCriteria;
  variant?: number;
  /** Makes create idempotent for 24 h: a retry with the same id returns the same room. */
  requestId?: string | number;
  capabilities?: string[];
}

export interface PeerStatusUpdate {
  participantId: string;
  status: "CONNECTION_ESTABLISHED" | "CONNECTION_FAILED";
  connectionSetupLatencyMillis?: number;
  unreliableRoundtripLatencyMillis?: number;
  error?: "P2P_FAILED" | "PRESENCE_FAILED" | "RELAY_SERVER_FAILED";
  error_reason?: string;
}

export interface IceServer { urls: string[]; username?: string; credential?: string }

export interface Welcome {
  playerId: string;
  applicationId: string;
  serverTimeMillis: string | number;
  rooms: Room[];
  invitations: Room[];
  iceServers?: IceServer[];
}

export type Path = "relay" | "p2p";

export interface RealTimeMessage {
  roomId: string;
  senderParticipantId: string;
  data: Uint8Array;
  isReliable: boolean;
  /** The room's message sequence number (reliable messages through the relay). */
  seq?: number;
  via: Path;
}

export interface Signal { roomId: string; senderParticipantId: string; data: Record<string, unknown> }
export interface PeerEvent { roomId: string; participantId: string; via?: Path }
export interface DisconnectedEvent { code: number; reason: string; willReconnect: boolean }

export interface RoomsvcEvents {
  roomStatus: Room;
  invitation: Room;
  invitationRemoved: Room;
  message: RealTimeMessage;
  signal: Signal;
  peerConnected: PeerEvent & { via: Path };
  peerDisconnected: PeerEvent;
  disconnected: DisconnectedEvent;
  reconnected: Welcome;
  error: Error;
}

export interface ReconnectPolicy {
  /** First backoff ceiling (ms); it doubles per attempt. Default 500. */
  baseMs?: number;
  /** Backoff ceiling (ms). Default 30000. */
  maxMs?: number;
  /** Attempts before giving up. Default Infinity. */
  maxAttempts?: number;
}

export interface RoomsvcClientOptions {
  /** ws(s)://host/games/v1/realtime, or the server's http(s) origin. */
  url: string;
  /** A bearer token, or a function returning one: called for every (re)connect. */
  token: string | (() => string | Promise<string>);
  /** en, es, hi (BCP 47): room descriptions and errors in this language. */
  language?: string;
  /** Build a WebRTC mesh for unreliable messages; the relay stays the fallback per pair. */
  peerToPeer?: boolean;
  /** Report CONNECTION_ESTABLISHED per reachable peer by itself (default true). */
  autoReportStatus?: boolean;
  requestTimeoutMs?: number;
  reconnect?: ReconnectPolicy;
  /** How long a pair may take to open its data channel before it stays on the relay. */
  p2pTimeoutMs?: number;
  /**
   * Game messages as binary frames (docs/messages.md "Binary frames"): true sends SEND frames
   * and receives MESSAGE frames (?messageFormat=binary); {send, receive} picks either.
   */
  binary?: boolean | { send?: boolean; receive?: boolean };
  /**
   * Added to each pair's RTCConfiguration (iceServers always come from roomsvc), e.g.
   * {iceTransportPolicy: "relay"}: TURN only.
   */
  rtcConfiguration?: Record<string, unknown>;
  /** A WebSocket constructor (default globalThis.WebSocket; Node 20: the `ws` package). */
  WebSocket?: unknown;
  RTCPeerConnection?: unknown;
  /** For tests: the jitter source (default Math.random) and the clock in ms. */
  random?: () => number;
  now?: () => number;
}

export class RoomsvcError extends Error {
  name: "RoomsvcError";
  /** The JSON-RPC error code (-32xxx), or null for the client's own errors. */
  rpcCode: number | null;
  /** The JSON-RPC error's data: {code, status, reason, gpgsStatus?}. */
  data: { code?: number; status?: string; reason?: string; gpgsStatus?: number; [key: string]: unknown };
  /** The HTTP-like code (404, 409, 503...). */
  code: number | null;
  status: string | null;
  /**
   * Google's reason (notFound, conflict...), or the client's own: disconnected, closed,
   * timeout, connectFailed, messageTooLarge, alreadyConnected, noWebSocket, badFrame.
   */
  reason: string | null;
  /** 7003 participant not connected, 7004 room not joined, 7005 inactive room. */
  gpgsStatus: number | null;
  /** On connectFailed: the WebSocket close code. */
  closeCode?: number;
}

export function backoffDelay(
  attempt: number, policy: { baseMs: number; maxMs: number }, random?: () => number,
): number;
export function bytesToBase64(bytes: Uint8Array): string;
export function base64ToBytes(b64: string): Uint8Array;
export function participantIdOf(participant: RoomParticipant): string;

/** Binary frame types (docs/messages.md "Binary frames"). */
export const FRAME_SEND: 0x01;
export const FRAME_SENT: 0x02;
export const FRAME_REJECTED: 0x03;
export const FRAME_MESSAGE: 0x04;

export interface SendFrame {
  reliable: boolean;
  /** u32; 0 asks for no reply. */
  tag: number;
  roomId: string;
  /** Omitted or empty: every other JOINED participant. */
  recipients?: string[];
  payload: Uint8Array;
}

export type ServerFrame =
  | { type: "sent"; tag: number; tokenId: number }
  | { type: "rejected"; tag: number; error: { code: number; message: string; data?: Record<string, unknown> } }
  | { type: "message"; isReliable: boolean; /** 0: unreliable */ seq: number; roomId: string; senderParticipantId: string; data: Uint8Array };

/** A SEND frame; throws a TypeError for ids over 255 UTF-8 bytes or over 255 recipients. */
export function encodeSendFrame(frame: SendFrame): Uint8Array;
/** A server frame; throws a RoomsvcError with reason "badFrame" when it does not parse. */
export function decodeServerFrame(bytes: ArrayBuffer | Uint8Array): ServerFrame;

export class RoomsvcClient {
  constructor(options: RoomsvcClientOptions);

  /** The signed-in player (from the welcome). */
  readonly playerId: string | null;
  /** True between a welcome and the close of its socket. */
  readonly connected: boolean;
  /** ICE servers from the welcome (or refreshIceServers). */
  readonly iceServers: IceServer[];
  /** Pending invitations of this player, by room id. */
  readonly invitations: Map<string, Room>;

  on<E extends keyof RoomsvcEvents>(event: E, fn: (payload: RoomsvcEvents[E]) => void): () => void;
  off<E extends keyof RoomsvcEvents>(event: E, fn: (payload: RoomsvcEvents[E]) => void): void;

  /** Resolves with the welcome once every room's messages have resumed. */
  connect(): Promise<Welcome>;
  close(): void;
  setLanguage(language: string | null): void;

  createRoom(request: CreateRoomRequest): Promise<Room>;
  joinRoom(roomId: string): Promise<Room>;
  leaveRoom(roomId: string, reason?: string): Promise<Room>;
  declineInvitation(roomId: string): Promise<Room>;
  dismissInvitation(roomId: string): Promise<void>;
  listInvitations(): Promise<Room[]>;
  getRoom(roomId: string): Promise<Room>;
  reportStatus(roomId: string, updates: PeerStatusUpdate[]): Promise<RoomStatus>;

  /** Resolves with the message's tokenId. Always through the relay (in order, resumable). */
  sendReliableMessage(roomId: string, participantId: string, bytes: Uint8Array): Promise<number>;
  sendUnreliableMessage(roomId: string, participantIds: string[], bytes: Uint8Array): Promise<void>;
  sendUnreliableMessageToOthers(roomId: string, bytes: Uint8Array): Promise<void>;

  /** An application signal to one participant (rooms.signal). */
  signal(roomId: string, participantId: string, data: Record<string, unknown>): Promise<unknown>;
  refreshIceServers(): Promise<{ kind: "roomsvc#iceServers"; iceServers: IceServer[]; ttlSeconds: number }>;

  /** The newest Room seen for a room this player is JOINED in. */
  room(roomId: string): Room | undefined;
  /** The participant of this player in a Room. */
  me(room: Room | undefined): RoomParticipant | null;
  myParticipantId(roomId: string): string | null;
  /** The other JOINED participants and how each is reached. */
  peers(roomId: string): Array<{ participantId: string; via: Path; rttMs: number | null }>;
  /** One JSON-RPC call on the socket (any method of the realtime channel). */
  call(method: string, params?: Record<string, unknown>): Promise<any>;
}
