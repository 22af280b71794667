"""The discovery document and the OpenAPI 3.1 description, generated from the method tables
(docs/api.md) and the msgspec wire types (docs/spec.md §3).

`GET /discovery/v1/apis/games/v1/rest` serves a Google discovery document (`rootUrl` = the
server's own URL) so `googleapiclient.discovery.build("games", "v1", discoveryServiceUrl=...)`
works against roomsvc; `GET /openapi.json` serves the same API as OpenAPI 3.1. Both state what
the server enforces: a field's constraints come from its wire type (`msgspec.Meta`), an object's
required fields from the Struct's `schema_rules`, a method's own rules from its table row. Each
document is built once per app, with a placeholder where the server's own URL goes: a request
only puts in the URL it reached the server by.
"""

from __future__ import annotations

import weakref
from typing import Any

import msgspec
import msgspec.inspect as mi
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roomsvc.http.api_spec import Method, Param, rules_of
from roomsvc.http.openapi import openapi_document
from roomsvc.http.routing import ApiRoute

API_PREFIX = "/games/v1/"
GLOBAL_PARAMS: dict[str, dict[str, Any]] = {
    "alt": {"type": "string", "default": "json", "enum": ["json"], "location": "query",
            "description": "Data format for the response."},
    "fields": {"type": "string", "location": "query",
               "description": "Selector specifying which fields to include in a partial response."},
    "key": {"type": "string", "location": "query", "description": "API key (accepted, unused)."},
    "oauth_token": {"type": "string", "location": "query",
                    "description": "OAuth 2.0 token for the current user."},
    "prettyPrint": {"type": "boolean", "default": "false", "location": "query",
                    "description": "Returns response with indentations and line breaks."},
    "quotaUser": {"type": "string", "location": "query",
                  "description": "Opaque user id for quota purposes (accepted, unused)."},
    "userIp": {"type": "string", "location": "query", "description": "Deprecated; accepted."},
}  # fmt: skip

# Request and response Structs that share one schema name in the discovery document.
_SCHEMA_NAMES = {
    "AutoMatchingCriteriaIn": "RoomAutoMatchingCriteria",
    "ClientAddressIn": "RoomClientAddress",
    "NetworkDiagnosticsIn": "NetworkDiagnostics",
    "AggregateStatsIn": "AggregateStats",
    "PeerChannelDiagnosticsIn": "PeerChannelDiagnostics",
    "PeerSessionDiagnosticsIn": "PeerSessionDiagnostics",
    "RoomLeaveDiagnosticsIn": "RoomLeaveDiagnostics",
    "RoomP2PStatusIn": "RoomP2PStatus",
    "EventPeriodRangeIn": "EventPeriodRange",
}
# JSON Schema keywords a discovery schema carries too (its numbers are strings).
_DISCOVERY_KEYWORDS = ("enum", "pattern", "minimum", "maximum")


def schema_name(cls: type) -> str:
    name = cls.__name__
    return _SCHEMA_NAMES.get(name, name)


class _Schemas:
    """Discovery schemas of Structs, collected recursively."""

    def __init__(self) -> None:
        self.schemas: dict[str, dict[str, Any]] = {}

    def ref(self, cls: type) -> dict[str, str]:
        self._add(cls)
        return {"$ref": schema_name(cls)}

    def _add(self, cls: type) -> None:
        info = mi.type_info(cls)
        if not isinstance(info, mi.StructType):
            raise TypeError(f"{cls!r} is not a Struct")
        name = schema_name(cls)
        schema = self.schemas.setdefault(name, {"id": name, "type": "object", "properties": {}})
        properties = schema["properties"]
        if info.tag_field and info.tag:
            properties[info.tag_field] = {
                "type": "string",
                "default": info.tag,
                "description": f"Value is always the fixed string {info.tag}.",
            }
        required = set(rules_of(cls).get("required", ()))
        for field in info.fields:
            if field.encode_name == "kind" and "kind" in properties:
                continue
            prop = self._type(field.type)
            if field.encode_name in required:
                prop["required"] = True
            properties[field.encode_name] = {**properties.get(field.encode_name, {}), **prop}

    def _type(self, t: mi.Type) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        stated: dict[str, Any] = {}
        if isinstance(t, mi.Metadata):
            extra = dict(t.extra or {})
            stated = dict(t.extra_json_schema or {})
            t = t.type
        if isinstance(t, mi.UnionType):
            non_null = [x for x in t.types if not isinstance(x, mi.NoneType)]
            t = non_null[0] if len(non_null) == 1 else mi.AnyType()
        if isinstance(t, mi.Metadata):
            extra = {**dict(t.extra or {}), **extra}
            stated = {**dict(t.extra_json_schema or {}), **stated}
            t = t.type
        if isinstance(t, mi.StructType):
            return self.ref(t.cls)
        if isinstance(t, mi.ListType):
            return {"type": "array", "items": self._type(t.item_type)}
        if isinstance(t, mi.DictType):
            return {"type": "object", "additionalProperties": self._type(t.value_type)}
        if extra.get("format") == "int64":
            return {"type": "string", "format": "int64"}  # its range is the format's
        out: dict[str, Any]
        if isinstance(t, mi.IntType):
            out = {"type": "integer", "format": "int32"}
        elif isinstance(t, mi.FloatType):
            out = {"type": "number", "format": "double"}
        elif isinstance(t, mi.BoolType):
            out = {"type": "boolean"}
        elif isinstance(t, mi.StrType | mi.LiteralType | mi.EnumType):
            out = {"type": "string"}
        else:
            return {"type": "any"}
        for keyword in _DISCOVERY_KEYWORDS:
            if keyword in stated:
                value = stated[keyword]
                out[keyword] = value if keyword in ("enum", "pattern") else str(value)
        return out


def table_of(routes: list[BaseRoute]) -> list[Method]:
    """Every method of the app's tables, in route order."""
    return [m for route in routes if isinstance(route, ApiRoute) for m in route.api_methods]


def _param(p: Param, location: str, required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.type, "location": location}
    if p.description:
        out["description"] = p.description
    if p.format and p.type == "integer":  # a page token's format is for OpenAPI (docs/api.md)
        out["format"] = p.format
    if p.minimum is not None:
        out["minimum"] = str(p.minimum)
    if p.maximum is not None:
        out["maximum"] = str(p.maximum)
    if required:
        out["required"] = True
    return out


def discovery_document(table: list[Method], root_url: str) -> dict[str, Any]:
    schemas = _Schemas()
    resources: dict[str, dict[str, Any]] = {}
    scopes: set[str] = set()
    for spec in table:
        relative = spec.path.removeprefix(API_PREFIX)
        path_names = spec.path_params
        parameters = {
            n: _param(Param(n, description=f"The {n}."), "path", True) for n in path_names
        }
        parameters.update({p.name: _param(p, "query") for p in spec.query})
        method: dict[str, Any] = {
            "id": spec.id,
            "path": relative,
            "flatPath": relative,
            "httpMethod": spec.verb,
            "description": spec.description,
            "parameters": parameters,
            "parameterOrder": path_names,
            "scopes": list(spec.scopes),
        }
        if spec.request is not None:
            method["request"] = schemas.ref(spec.request)
        if spec.response is not None:
            method["response"] = schemas.ref(spec.response)
        scopes.update(spec.scopes)
        resources.setdefault(spec.resource, {"methods": {}})["methods"][spec.name] = method
    root = root_url.rstrip("/") + "/"
    return {
        "kind": "discovery#restDescription",
        "discoveryVersion": "v1",
        "id": "games:v1",
        "name": "games",
        "version": "v1",
        "revision": "20200625",
        "title": "roomsvc games/v1 API",
        "description": "Rooms, auto-matching and game events, GPGS games/v1 compatible.",
        "protocol": "rest",
        "rootUrl": root,
        "servicePath": API_PREFIX.lstrip("/"),
        "baseUrl": root + API_PREFIX.lstrip("/"),
        "basePath": API_PREFIX,
        "batchPath": "batch/games/v1",
        "parameters": GLOBAL_PARAMS,
        "auth": {"oauth2": {"scopes": {s: {"description": s} for s in sorted(scopes)}}},
        "schemas": dict(sorted(schemas.schemas.items())),
        "resources": resources,
    }


_ROOT = "https://root.roomsvc.invalid"  # where the server's own URL goes (no trailing slash)
_built: weakref.WeakKeyDictionary[Starlette, tuple[bytes, bytes]] = weakref.WeakKeyDictionary()
_encode = msgspec.json.Encoder().encode


def _documents(app: Starlette) -> tuple[bytes, bytes]:
    """(discovery, OpenAPI) of this app, encoded, with `_ROOT` for the server's URL."""
    documents = _built.get(app)
    if documents is None:
        table = table_of(app.routes)
        documents = (
            _encode(discovery_document(table, _ROOT)),
            _encode(openapi_document(table, app.state.settings, _ROOT)),
        )
        _built[app] = documents
    return documents


def _with_root(document: bytes, request: Request) -> Response:
    root = _encode(str(request.base_url).rstrip("/"))[1:-1]  # JSON-escaped, unquoted
    return Response(document.replace(_ROOT.encode(), root), media_type="application/json")


async def discovery_endpoint(request: Request) -> Response:
    return _with_root(_documents(request.app)[0], request)


async def openapi_endpoint(request: Request) -> Response:
    return _with_root(_documents(request.app)[1], request)


routes = [
    Route("/discovery/v1/apis/games/v1/rest", discovery_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi_endpoint, methods=["GET"]),
]
duties: list[Any] = []
