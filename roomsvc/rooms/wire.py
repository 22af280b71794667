"""Wire types of the rooms API (docs/spec.md §3), field for field from the seed and the discovery
document (`games/v1`, revision 20200625).

Rules every Struct here follows:
- camelCase on the wire, except the seed's one snake_case `error_reason`;
- responses carry their exact `kind` (a msgspec tag, so it is always encoded) and omit unset
  fields, as Google's servers did;
- int64 fields (`format: int64` in the discovery document) go out as JSON strings; requests
  accept them as strings or numbers (`decode_json` decodes with `strict=False`);
- requests ignore unknown fields and their `kind` (schema evolution, msgspec docs).
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import msgspec

from roomsvc.rooms.doc import P2P

# int64 fields: numbers (or numeric strings) in, JSON strings out; the discovery document
# generator reads the format from this metadata.
# Ranges are checked at decode: a value outside them is a 400 naming the field, never an
# overflow deeper in (the discovery document says int64 and int32).
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1, extra={"format": "int64"})]
Int32 = Annotated[int, msgspec.Meta(ge=-(2**31), le=2**31 - 1, extra={"format": "int32"})]
Int64Str = Annotated[str, msgspec.Meta(extra={"format": "int64"})]
# What the server checks beyond a field's type, stated for the API documents (docs/api.md):
# `extra_json_schema` on a field, `schema_rules` on a Struct; discovery.py and openapi.py read
# both. The checks themselves stay where their messages are (rules.py, service.py).
PlayerId = Annotated[
    str, msgspec.Meta(extra_json_schema={"minLength": 1, "maxLength": 128, "pattern": "^[^{}: ]*$"})
]  # rules.validate_create
# A non-negative int64; service._criteria says so when it is negative.
Bitmask = Annotated[
    int, msgspec.Meta(le=2**63 - 1, extra={"format": "int64"}, extra_json_schema={"minimum": 0})
]
P2P_STATUSES = tuple(p.value for p in P2P)  # rules.report_status
P2P_ERRORS = ("P2P_FAILED", "PRESENCE_FAILED", "RELAY_SERVER_FAILED")  # service.report_status


def _camel(name: str) -> str:
    if name == "error_reason":  # the seed's one snake_case field
        return name
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


class _Out(msgspec.Struct, rename=_camel, omit_defaults=True, tag_field="kind", gc=False):
    pass


class _In(msgspec.Struct, rename=_camel, gc=False):  # trees: see rooms.RoomDoc
    kind: str | None = None


# ---- shared pieces -------------------------------------------------------------------------


class ClientAddressIn(_In):
    xmpp_address: str | None = None


class NetworkDiagnosticsIn(_In):
    android_network_subtype: Int32 | None = None
    android_network_type: Int32 | None = None
    ios_network_type: Int32 | None = None
    network_operator_code: str | None = None
    network_operator_name: str | None = None
    registration_latency_millis: Int32 | None = None


class AutoMatchingCriteriaIn(_In):
    # 1 <= min <= max, and the room's size: create_rules below.
    min_auto_matching_players: Int32 | None = None
    max_auto_matching_players: Int32 | None = None
    exclusive_bitmask: Bitmask | None = None


# ---- requests ------------------------------------------------------------------------------


class RoomCreateRequest(_In):
    auto_matching_criteria: AutoMatchingCriteriaIn | None = None
    capabilities: list[str] = []
    client_address: ClientAddressIn | None = None
    invited_player_ids: Annotated[
        list[PlayerId], msgspec.Meta(extra_json_schema={"uniqueItems": True})
    ] = []
    network_diagnostics: NetworkDiagnosticsIn | None = None
    request_id: Int64 | None = None
    variant: Int32 | None = None


class RoomJoinRequest(_In):
    capabilities: list[str] = []
    client_address: ClientAddressIn | None = None
    network_diagnostics: NetworkDiagnosticsIn | None = None


class AggregateStatsIn(_In):
    count: Int64 | None = None
    max: Int64 | None = None
    min: Int64 | None = None
    sum: Int64 | None = None


class PeerChannelDiagnosticsIn(_In):
    bytes_received: AggregateStatsIn | None = None
    bytes_sent: AggregateStatsIn | None = None
    num_messages_lost: Int32 | None = None
    num_messages_received: Int32 | None = None
    num_messages_sent: Int32 | None = None
    num_send_failures: Int32 | None = None
    roundtrip_latency_millis: AggregateStatsIn | None = None


class PeerSessionDiagnosticsIn(_In):
    connected_timestamp_millis: Int64 | None = None
    participant_id: str | None = None
    reliable_channel: PeerChannelDiagnosticsIn | None = None
    unreliable_channel: PeerChannelDiagnosticsIn | None = None


class RoomLeaveDiagnosticsIn(_In):
    android_network_subtype: Int32 | None = None
    android_network_type: Int32 | None = None
    ios_network_type: Int32 | None = None
    network_operator_code: str | None = None
    network_operator_name: str | None = None
    peer_session: list[PeerSessionDiagnosticsIn] = []
    sockets_used: bool | None = None


class RoomLeaveRequest(_In):
    leave_diagnostics: RoomLeaveDiagnosticsIn | None = None
    reason: str | None = None


class RoomP2PStatusIn(_In):
    schema_rules: ClassVar[dict[str, Any]] = {"required": ["participantId", "status"]}

    connection_setup_latency_millis: Int32 | None = None
    error: Annotated[str, msgspec.Meta(extra_json_schema={"enum": P2P_ERRORS})] | None = None
    error_reason: str | None = None
    participant_id: Annotated[
        str | None, msgspec.Meta(extra_json_schema={"type": "string", "minLength": 1})
    ] = None
    status: Annotated[
        str | None, msgspec.Meta(extra_json_schema={"type": "string", "enum": P2P_STATUSES})
    ] = None
    unreliable_roundtrip_latency_millis: Int32 | None = None


class RoomP2PStatuses(_In):
    updates: list[RoomP2PStatusIn] = []


def create_rules(max_players: int) -> dict[str, Any]:
    """rooms.create's rules across fields (docs/spec.md §4, rules.validate_create) as JSON Schema:
    at least one invitee or an autoMatchingCriteria; 1 <= min <= max (a missing one is the
    other); you + invitees + max <= `max_players`. One branch per number of auto-match slots."""
    seats = max_players - 1
    criteria: list[dict[str, Any]] = []
    for slots in range(1, seats + 1):
        at_most = {"type": ["integer", "null"], "minimum": 1, "maximum": slots}
        for given, other, rule in (
            ("maxAutoMatchingPlayers", "minAutoMatchingPlayers", at_most),
            ("minAutoMatchingPlayers", "maxAutoMatchingPlayers", {"type": "null"}),
        ):
            criteria.append({
                "required": ["autoMatchingCriteria"],
                "properties": {
                    "autoMatchingCriteria": {
                        "type": "object",
                        "required": [given],
                        "properties": {given: {"const": slots}, other: rule},
                    },
                    "invitedPlayerIds": {"maxItems": seats - slots},
                },
            })  # fmt: skip
    invitees_only = {
        "required": ["invitedPlayerIds"],
        "properties": {
            "invitedPlayerIds": {"minItems": 1, "maxItems": seats},
            "autoMatchingCriteria": {"type": "null"},
        },
    }
    return {"anyOf": [invitees_only, *criteria]}


class NoBody(_In):
    """decline and dismiss take no body; Google's client sends none (docs/spec.md §3)."""


# ---- responses -----------------------------------------------------------------------------


class RoomModification(_Out, tag="games#roomModification"):
    modified_timestamp_millis: Int64Str | None = None
    participant_id: str | None = None


class RoomClientAddress(_Out, tag="games#roomClientAddress"):
    xmpp_address: str | None = None


class RoomAutoMatchingCriteria(_Out, tag="games#roomAutoMatchingCriteria"):
    min_auto_matching_players: int | None = None
    max_auto_matching_players: int | None = None
    exclusive_bitmask: Int64Str | None = None


class RoomAutoMatchStatus(_Out, tag="games#roomAutoMatchStatus"):
    wait_estimate_seconds: int | None = None


class Player(_Out, tag="games#player"):
    player_id: str | None = None
    display_name: str | None = None
    avatar_image_url: str | None = None


class AnonymousPlayer(_Out, tag="games#anonymousPlayer"):
    display_name: str | None = None
    avatar_image_url: str | None = None


class RoomParticipant(_Out, tag="games#roomParticipant"):
    id: str | None = None
    status: str | None = None
    auto_matched: bool | None = None
    auto_matched_player: AnonymousPlayer | None = None
    player: Player | None = None
    capabilities: list[str] | None = None
    client_address: RoomClientAddress | None = None
    connected: bool | None = None
    leave_reason: str | None = None


class Room(_Out, tag="games#room"):
    application_id: str | None = None
    room_id: str | None = None
    status: str | None = None
    room_status_version: int | None = None
    variant: int | None = None
    description: str | None = None
    inviter_id: str | None = None
    auto_matching_criteria: RoomAutoMatchingCriteria | None = None
    auto_matching_status: RoomAutoMatchStatus | None = None
    creation_details: RoomModification | None = None
    last_update_details: RoomModification | None = None
    participants: list[RoomParticipant] | None = None
    # roomsvc's one addition (docs/spec.md §5): on the tombstone of a seeker room that was matched.
    merged_into_room_id: str | None = None


class RoomStatus(_Out, tag="games#roomStatus"):
    room_id: str | None = None
    status: str | None = None
    status_version: int | None = None
    auto_matching_status: RoomAutoMatchStatus | None = None
    participants: list[RoomParticipant] | None = None


class RoomList(_Out, tag="games#roomList"):
    items: list[Room] = []
    next_page_token: str | None = None
