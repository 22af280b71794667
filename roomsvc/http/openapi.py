"""The OpenAPI 3.1 description of the method tables (docs/api.md; docs/spec.md §3).

Component schemas come from msgspec (each field's type and `msgspec.Meta` constraints), merged
with each Struct's `schema_rules` (its required fields); a request body also meets its method's
`rules`, built from the settings the server runs with (e.g. rooms.create's player limit). Error
answers are documented in Google's JSON error shape. A page token is a string of a format named
after its list: opaque, only ever a `nextPageToken` of that list, as each list's `links` say.
"""

from __future__ import annotations

from typing import Any

import msgspec
import msgspec.inspect as mi

from roomsvc.http.api_spec import Method, Param, rules_of

_ERROR = "GoogleError"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "status", "message", "errors"],
            "properties": {
                "code": {"type": "integer", "minimum": 400, "maximum": 599},
                "status": {"type": "string"},
                "message": {"type": "string"},
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["domain", "reason", "message"],
                        "properties": {
                            "domain": {"type": "string"},
                            "reason": {"type": "string"},
                            "message": {"type": "string"},
                        },
                    },
                },
            },
        }
    },
}


def _ref(t: type) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{t.__name__}"}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _query(p: Param) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": p.type}
    if p.format is not None:
        schema["format"] = p.format
    if p.minimum is not None:
        schema["minimum"] = p.minimum
    if p.maximum is not None:
        schema["maximum"] = p.maximum
    return {"name": p.name, "in": "query", "description": p.description, "schema": schema}


def _links(spec: Method, table: list[Method]) -> dict[str, Any]:
    """Where a response's values go next: a list's nextPageToken into its pageToken; a created
    room's roomId into the room's methods."""
    links: dict[str, Any] = {}
    if spec.paged:
        page = {"pageToken": "$response.body#/nextPageToken"}
        links["nextPage"] = {"operationId": spec.id, "parameters": page}
    if spec.id == "games.rooms.create":
        room = {"roomId": "$response.body#/roomId"}
        for other in table:
            if "roomId" in other.path_params:
                links[other.name] = {"operationId": other.id, "parameters": room}
    return links


def _operation(spec: Method, table: list[Method], settings: Any) -> dict[str, Any]:
    params: list[dict[str, Any]] = [
        {"name": n, "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}
        for n in spec.path_params
    ]
    params += [_query(p) for p in spec.query]
    error = {"description": "Google JSON error", "content": _json(_ref_name(_ERROR))}
    operation: dict[str, Any] = {
        "operationId": spec.id,
        "summary": spec.description,
        "parameters": params,
        "security": [{"bearer": list(spec.scopes)}],
        "responses": {"default": error},
    }
    if spec.request is not None:
        body: dict[str, Any] = _ref(spec.request)
        if spec.rules is not None:
            body = {"allOf": [body, spec.rules(settings)]}
        # No body reads as `{}` (docs/spec.md §3): optional unless the rules refuse `{}`.
        operation["requestBody"] = {"required": spec.rules is not None, "content": _json(body)}
    if spec.response is not None:
        ok: dict[str, Any] = {"description": "OK", "content": _json(_ref(spec.response))}
        links = _links(spec, table)
        if links:
            ok["links"] = links
        operation["responses"]["200"] = ok
    else:
        operation["responses"][str(spec.empty_status or 204)] = {"description": "No content"}
    return operation


def _ref_name(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def openapi_document(table: list[Method], settings: Any, root_url: str) -> dict[str, Any]:
    types = sorted(
        {t for s in table for t in (s.request, s.response) if t is not None},
        key=lambda t: t.__name__,
    )
    _, components = msgspec.json.schema_components(
        types, ref_template="#/components/schemas/{name}"
    )
    for name, cls in _structs(types).items():
        components[name].update(rules_of(cls))
    components[_ERROR] = ERROR_SCHEMA
    paths: dict[str, dict[str, Any]] = {}
    for spec in table:
        paths.setdefault(spec.path, {})[spec.verb.lower()] = _operation(spec, table, settings)
    return {
        "openapi": "3.1.0",
        "info": {"title": "roomsvc", "version": "v1"},
        "servers": [{"url": root_url}],
        "paths": paths,
        "components": {
            "schemas": dict(sorted(components.items())),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT"}
            },
        },
    }


def _structs(types: list[type]) -> dict[str, type]:
    """Every Struct reachable from `types`, by name (as msgspec names their components)."""
    found: dict[str, type] = {}

    def walk(t: mi.Type) -> None:
        if isinstance(t, mi.Metadata):
            walk(t.type)
        elif isinstance(t, mi.StructType) and t.cls.__name__ not in found:
            found[t.cls.__name__] = t.cls
            for field in t.fields:
                walk(field.type)
        elif isinstance(t, mi.ListType):
            walk(t.item_type)
        elif isinstance(t, mi.DictType):
            walk(t.value_type)
        elif isinstance(t, mi.UnionType):
            for member in t.types:
                walk(member)

    for info in mi.multi_type_info(types):
        walk(info)
    return found
