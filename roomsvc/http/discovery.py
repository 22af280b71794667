"""The discovery document and the OpenAPI 3.1 description, generated from the app's routes
(`@api_method`) and the msgspec wire types (docs/spec.md §3).

`GET /discovery/v1/apis/games/v1/rest` serves a Google discovery document (`rootUrl` = the
server's own URL) so `googleapiclient.discovery.build("games", "v1", discoveryServiceUrl=...)`
works against roomsvc; `GET /openapi.json` serves the same API as OpenAPI 3.1.
"""

from __future__ import annotations

import re
from typing import Any

import msgspec
import msgspec.inspect as mi
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from roomsvc.http.api_spec import ApiMethod, Param, method_of

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
        for field in info.fields:
            if field.encode_name == "kind" and "kind" in properties:
                continue
            properties[field.encode_name] = self._type(field.type)

    def _type(self, t: mi.Type) -> dict[str, Any]:
        extra: dict[str, Any] = {}
        if isinstance(t, mi.UnionType):
            non_null = [x for x in t.types if not isinstance(x, mi.NoneType)]
            t = non_null[0] if len(non_null) == 1 else mi.AnyType()
        if isinstance(t, mi.Metadata):
            extra = dict(t.extra or {})
            t = t.type
        if isinstance(t, mi.StructType):
            return self.ref(t.cls)
        if isinstance(t, mi.ListType):
            return {"type": "array", "items": self._type(t.item_type)}
        if isinstance(t, mi.DictType):
            return {"type": "object", "additionalProperties": self._type(t.value_type)}
        if extra.get("format") == "int64":
            return {"type": "string", "format": "int64"}
        if isinstance(t, mi.IntType):
            return {"type": "integer", "format": "int32"}
        if isinstance(t, mi.FloatType):
            return {"type": "number", "format": "double"}
        if isinstance(t, mi.BoolType):
            return {"type": "boolean"}
        if isinstance(t, mi.StrType | mi.LiteralType | mi.EnumType):
            return {"type": "string"}
        return {"type": "any"}


def api_routes(routes: list[BaseRoute]) -> list[tuple[Route, ApiMethod]]:
    found = []
    for route in routes:
        spec = method_of(getattr(route, "endpoint", None))
        if isinstance(route, Route) and spec is not None:
            found.append((route, spec))
    return found


def _param(p: Param, location: str, required: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {"type": p.type, "location": location}
    if p.description:
        out["description"] = p.description
    if p.format:
        out["format"] = p.format
    if p.minimum is not None:
        out["minimum"] = str(p.minimum)
    if p.maximum is not None:
        out["maximum"] = str(p.maximum)
    if required:
        out["required"] = True
    return out


def _path_params(path: str) -> list[str]:
    return re.findall(r"{([A-Za-z]+)(?::[a-z]+)?}", path)


def discovery_document(routes: list[BaseRoute], root_url: str) -> dict[str, Any]:
    schemas = _Schemas()
    resources: dict[str, dict[str, Any]] = {}
    scopes: set[str] = set()
    for route, spec in api_routes(routes):
        relative = route.path.removeprefix(API_PREFIX)
        path_names = _path_params(relative)
        parameters = {
            n: _param(Param(n, description=f"The {n}."), "path", True) for n in path_names
        }
        parameters.update({p.name: _param(p, "query") for p in spec.query})
        method: dict[str, Any] = {
            "id": spec.id,
            "path": relative,
            "flatPath": relative,
            "httpMethod": sorted(route.methods or {"GET"} - {"HEAD"})[0],
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


def openapi_document(routes: list[BaseRoute], root_url: str) -> dict[str, Any]:
    """OpenAPI 3.1 of the same methods; component schemas come from msgspec."""
    pairs = api_routes(routes)
    types = sorted(
        {t for _, s in pairs for t in (s.request, s.response) if t is not None},
        key=lambda t: t.__name__,
    )
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    paths: dict[str, dict[str, Any]] = {}
    for route, spec in pairs:
        params = [
            {"name": n, "in": "path", "required": True, "schema": {"type": "string"}}
            for n in _path_params(route.path)
        ]
        for p in spec.query:
            schema: dict[str, Any] = {"type": p.type}
            if p.minimum is not None:
                schema["minimum"] = p.minimum
            if p.maximum is not None:
                schema["maximum"] = p.maximum
            params.append({"name": p.name, "in": "query", "schema": schema})
        operation: dict[str, Any] = {
            "operationId": spec.id,
            "summary": spec.description,
            "parameters": params,
            "security": [{"bearer": list(spec.scopes)}],
            "responses": {"default": {"description": "Google JSON error"}},
        }
        if spec.request is not None:
            operation["requestBody"] = {
                "required": False,
                "content": {"application/json": {"schema": _ref(spec.request)}},
            }
        if spec.response is not None:
            operation["responses"]["200"] = {
                "description": "OK",
                "content": {"application/json": {"schema": _ref(spec.response)}},
            }
        else:
            operation["responses"][str(spec.empty_status or 204)] = {"description": "No content"}
        http = sorted(route.methods or {"GET"} - {"HEAD"})[0].lower()
        openapi_path = re.sub(r"{([A-Za-z]+):[a-z]+}", r"{\1}", route.path)
        paths.setdefault(openapi_path, {})[http] = operation
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomsvc", "version": "v1"},
        "servers": [{"url": root_url.rstrip("/")}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _ref(t: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


_encoder = msgspec.json.Encoder()


def _root_url(request: Request) -> str:
    return str(request.base_url).rstrip("/")


async def discovery_endpoint(request: Request) -> Response:
    doc = discovery_document(request.app.routes, _root_url(request))
    return Response(_encoder.encode(doc), media_type="application/json")


async def openapi_endpoint(request: Request) -> Response:
    doc = openapi_document(request.app.routes, _root_url(request))
    return Response(_encoder.encode(doc), media_type="application/json")


routes = [
    Route("/discovery/v1/apis/games/v1/rest", discovery_endpoint, methods=["GET"]),
    Route("/openapi.json", openapi_endpoint, methods=["GET"]),
]
duties: list[Any] = []
