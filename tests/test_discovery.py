"""The discovery document and OpenAPI description roomsvc serves (docs/spec.md §3), generated from
its routes and wire types. The expected paths, verbs and schemas are the GPGS games/v1 ones,
written here in the project's own words."""

from __future__ import annotations

import httpx
import pytest

from tests.support import ServerProcess

# method id -> (HTTP method, path, request schema, response schema, query parameters)
EXPECTED = {
    "games.rooms.create": ("POST", "rooms/create", "RoomCreateRequest", "Room", {"language"}),
    "games.rooms.decline": ("POST", "rooms/{roomId}/decline", None, "Room", {"language"}),
    "games.rooms.dismiss": ("POST", "rooms/{roomId}/dismiss", None, None, set()),
    "games.rooms.get": ("GET", "rooms/{roomId}", None, "Room", {"language"}),
    "games.rooms.join": ("POST", "rooms/{roomId}/join", "RoomJoinRequest", "Room", {"language"}),
    "games.rooms.leave": ("POST", "rooms/{roomId}/leave", "RoomLeaveRequest", "Room", {"language"}),
    "games.rooms.list": ("GET", "rooms", None, "RoomList", {"language", "maxResults", "pageToken"}),
    "games.rooms.reportStatus": (
        "POST", "rooms/{roomId}/reportstatus", "RoomP2PStatuses", "RoomStatus", {"language"}),
    "games.events.record": (
        "POST", "events", "EventRecordRequest", "EventUpdateResponse", {"language"}),
    "games.events.listByPlayer": (
        "GET", "events", None, "PlayerEventListResponse", {"language", "maxResults", "pageToken"}),
    "games.events.listDefinitions": (
        "GET", "eventDefinitions", None, "EventDefinitionListResponse",
        {"language", "maxResults", "pageToken"}),
}  # fmt: skip

INT64_FIELDS = [
    ("RoomModification", "modifiedTimestampMillis"),
    ("RoomAutoMatchingCriteria", "exclusiveBitmask"),
    ("RoomCreateRequest", "requestId"),
]


@pytest.fixture(scope="module")
def document(server: ServerProcess) -> dict:  # type: ignore[type-arg]
    response = httpx.get(f"{server.base_url}/discovery/v1/apis/games/v1/rest")
    assert response.status_code == 200
    return response.json()  # type: ignore[no-any-return]


def _methods(document: dict) -> dict:  # type: ignore[type-arg]
    return {
        method["id"]: method
        for resource in document["resources"].values()
        for method in resource["methods"].values()
    }


def test_root_url_is_the_server_itself(document: dict, server: ServerProcess) -> None:  # type: ignore[type-arg]
    """rootUrl points at the serving roomsvc, so Google's client calls it, not Google."""
    assert document["rootUrl"] == server.base_url + "/"
    assert document["servicePath"] == "games/v1/"
    assert document["name"] == "games" and document["version"] == "v1"
    assert {"alt", "fields", "key", "oauth_token", "prettyPrint", "quotaUser", "userIp"} <= set(
        document["parameters"]
    )


def test_every_method_matches_games_v1(document: dict) -> None:  # type: ignore[type-arg]
    """Each rooms and events method has the GPGS path, verb, body, response and parameters."""
    methods = _methods(document)
    for method_id, (verb, path, request, response, query) in EXPECTED.items():
        method = methods[method_id]
        assert (method["httpMethod"], method["path"]) == (verb, path), method_id
        assert method.get("request", {}).get("$ref") == request, method_id
        assert method.get("response", {}).get("$ref") == response, method_id
        params = method["parameters"]
        assert {n for n, p in params.items() if p["location"] == "query"} == query, method_id
        for name in method["parameterOrder"]:
            assert params[name]["location"] == "path" and params[name]["required"]
    rooms_list = methods["games.rooms.list"]["parameters"]["maxResults"]
    assert (rooms_list["minimum"], rooms_list["maximum"]) == ("1", "500")


def test_schemas_carry_kinds_and_int64_formats(document: dict) -> None:  # type: ignore[type-arg]
    """Resources have their fixed `kind`; int64 fields are strings with format int64."""
    schemas = document["schemas"]
    assert schemas["Room"]["properties"]["kind"]["default"] == "games#room"
    assert schemas["RoomStatus"]["properties"]["statusVersion"]["type"] == "integer"
    assert "roomStatusVersion" in schemas["Room"]["properties"]
    assert "error_reason" in schemas["RoomP2PStatus"]["properties"]
    for schema, field in INT64_FIELDS:
        assert schemas[schema]["properties"][field] == {"type": "string", "format": "int64"}
    for name, schema in schemas.items():
        for prop in schema["properties"].values():
            target = prop.get("$ref") or prop.get("items", {}).get("$ref")
            assert target is None or target in schemas, f"{name} refers to missing {target}"


def test_openapi_describes_the_same_api(server: ServerProcess) -> None:
    """/openapi.json is OpenAPI 3.1 with every method as an operation."""
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    assert spec["openapi"].startswith("3.1")
    operations = {op["operationId"] for path in spec["paths"].values() for op in path.values()}
    assert set(EXPECTED) <= operations
    create = spec["paths"]["/games/v1/rooms/create"]["post"]
    ref, _ = create["requestBody"]["content"]["application/json"]["schema"]["allOf"]
    assert ref["$ref"].rsplit("/", 1)[1] in spec["components"]["schemas"]


def test_both_documents_state_what_the_server_enforces(
    document: dict,  # type: ignore[type-arg]
    server: ServerProcess,
) -> None:
    """Required fields, ranges and opaque page tokens are in the documents, not only in the
    server: a client generated from them sends what the server accepts."""
    schemas = document["schemas"]
    assert schemas["RoomP2PStatus"]["properties"]["participantId"]["required"] is True
    assert schemas["EventPeriodRange"]["properties"]["periodStartMillis"]["required"] is True
    assert schemas["RoomCreateRequest"]["properties"]["variant"]["format"] == "int32"
    spec = httpx.get(f"{server.base_url}/openapi.json").json()
    paths, parts = spec["paths"], spec["components"]["schemas"]
    assert {"participantId", "status"} <= set(parts["RoomP2PStatusIn"]["required"])
    assert set(parts["EventPeriodRangeIn"]["required"]) == {"periodStartMillis", "periodEndMillis"}
    assert parts["EventPeriodUpdate"]["required"] == ["timePeriod"]
    variant = parts["RoomCreateRequest"]["properties"]["variant"]["anyOf"][0]
    assert (variant["minimum"], variant["maximum"]) == (-(2**31), 2**31 - 1)
    request_id = parts["RoomCreateRequest"]["properties"]["requestId"]["anyOf"][0]
    assert (request_id["minimum"], request_id["maximum"]) == (-(2**63), 2**63 - 1)
    create = paths["/games/v1/rooms/create"]["post"]["requestBody"]
    rules = create["content"]["application/json"]["schema"]["allOf"][1]["anyOf"]
    assert rules[0]["required"] == ["invitedPlayerIds"]  # an invitee, or auto-matching criteria
    assert all(rule["required"] == ["autoMatchingCriteria"] for rule in rules[1:])
    assert create["required"] is True
    tokens = {
        path: {p["name"]: p["schema"] for p in op["parameters"]}["pageToken"]["format"]
        for path, ops in paths.items()
        for op in ops.values()
        if any(p["name"] == "pageToken" for p in op["parameters"])
    }
    assert tokens == {
        "/games/v1/rooms": "rooms-page-token",
        "/games/v1/events": "playerEvents-page-token",
        "/games/v1/eventDefinitions": "eventDefinitions-page-token",
    }
