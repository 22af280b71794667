"""Leave reasons (docs/spec.md §4): what a leave request's `reason` becomes on the participant."""

from __future__ import annotations

# RoomLeaveRequest.reason -> RoomParticipant.leaveReason (docs/spec.md §4).
LEAVE_REASONS: dict[str, str] = {
    "PLAYER_LEFT": "PLAYER_LEFT",
    "GAME_LEFT": "GAME_LEFT",
    "REALTIME_ABANDONED": "ABANDONED",
    "REALTIME_PEER_CONNECTION_FAILURE": "PEER_CONNECTION_FAILURE",
    "REALTIME_SERVER_CONNECTION_FAILURE": "SERVER_ERROR",
    "REALTIME_SERVER_ERROR": "SERVER_ERROR",
    "REALTIME_TIMEOUT": "TIMEOUT",
    "REALTIME_CLIENT_DISCONNECTING": "PLAYER_LEFT",
    "REALTIME_SIGN_OUT": "PLAYER_LEFT",
    "REALTIME_GAME_CRASHED": "ABANDONED",
    "REALTIME_ROOM_SERVICE_CRASHED": "SERVER_ERROR",
    "REALTIME_DIFFERENT_CLIENT_ROOM_OPERATION": "PLAYER_LEFT",
    "REALTIME_SAME_CLIENT_ROOM_OPERATION": "PLAYER_LEFT",
}
PRESENCE_FAILURE = "PRESENCE_FAILURE"
TIMEOUT = "TIMEOUT"


def map_leave_reason(reason: str | None) -> str:
    """The participant's leaveReason for a request reason; unknown ones are PLAYER_LEFT."""
    return LEAVE_REASONS.get(reason or "PLAYER_LEFT", "PLAYER_LEFT")
