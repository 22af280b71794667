"""REST plumbing shared by every route (docs/spec.md §2, §3, §9): auth, language, bodies, responses,
and Google's JSON error shape. Routes stay thin: authenticate, read the body, call one service
function, `respond`.
"""

from __future__ import annotations

import logging
import re
from typing import Any, TypeVar

import msgspec
from starlette.requests import HTTPConnection, Request
from starlette.responses import Response

from roomsvc.auth.tokens import Principal, bearer_token
from roomsvc.common import i18n
from roomsvc.common.errors import (
    N_,
    InternalError,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RoomsvcError,
    StoreUnavailable,
    UnsupportedMediaType,
)
from roomsvc.common.metrics import STORE_ERRORS
from roomsvc.common.partial import apply_fields, parse_fields
from roomsvc.store.connection import UNAVAILABLE_ERRORS

T = TypeVar("T")
log = logging.getLogger("roomsvc.web")

JSON = "application/json; charset=UTF-8"
_encoder = msgspec.json.Encoder()
_PATH_RE = re.compile(r"at `\$\.?([^`]*)`")


def locale_of(conn: HTTPConnection) -> str:
    """en, es or hi from `language`, else Accept-Language (docs/spec.md §9); cached on the
    request."""
    cached = conn.scope.get("roomsvc.locale")
    if cached is None:
        cached = i18n.negotiate(
            conn.query_params.get("language"), conn.headers.get("accept-language")
        )
        conn.scope["roomsvc.locale"] = cached
    return str(cached)


def base_url_of(conn: HTTPConnection) -> str:
    """Our public base URL as this request reached us (scheme, Host, root path), no trailing
    slash: what Starlette's `request.base_url` says, without building a URL object per
    request (it is only needed for links such as anonymous avatars)."""
    scope = conn.scope
    host = conn.headers.get("host")
    if not host:
        server = scope.get("server") or ("localhost", None)
        host = server[0] if server[1] is None else f"{server[0]}:{server[1]}"
    return f"{scope['scheme']}://{host}{scope.get('root_path', '')}".rstrip("/")


def authenticate(conn: HTTPConnection, *scopes: str) -> Principal:
    """The caller, or 401; 403 unless the token has one of `scopes`."""
    header = conn.headers.get("authorization")
    # The query string is parsed only when it can hold the token (a third of this call's CPU)
    token = bearer_token(header, {} if header else conn.query_params)
    principal: Principal = conn.app.state.verifier.verify(token)
    if scopes:
        principal.require_scope(*scopes)
    conn.scope["roomsvc.principal"] = principal
    return principal


def field_of(error: msgspec.ValidationError) -> str:
    """The JSON path of a msgspec validation error, e.g. `autoMatchingCriteria.variant`."""
    match = _PATH_RE.search(str(error))
    return match.group(1) if match and match.group(1) else "body"


def decode_json(raw: bytes, typ: type[T]) -> T:
    """Decode one request body: ints may arrive as strings (int64 on the wire, docs/spec.md §3),
    unknown fields are ignored, a wrong type is a 400 naming the field."""
    try:
        return msgspec.json.decode(raw, type=typ, strict=False)
    except msgspec.ValidationError as exc:
        raise InvalidArgument(
            N_("Invalid value for field {field}: {detail}"),
            field=field_of(exc),
            detail=str(exc).split(" - at ")[0],
        ) from None
    except (msgspec.DecodeError, UnicodeDecodeError, RecursionError):
        # msgspec reports invalid UTF-8 in a string and nesting deeper than the recursion limit
        # (RFC 8259 §9 allows one) outside DecodeError; all are malformed JSON (docs/spec.md §12).
        raise InvalidArgument(N_("The request body is not valid JSON.")) from None


async def read_raw(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(limit=limit)
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(limit=limit)
        chunks.append(chunk)
    return b"".join(chunks)


async def read_body(request: Request, typ: type[T], *, limit: int | None = None) -> T:
    """The JSON body as `typ`; an empty body decodes as `{}` (Google's client sends none on
    some calls). A body that is not JSON by content type is a 415."""
    raw = await read_raw(request, limit or request.app.state.settings.max_body_bytes)
    if not raw.strip():
        raw = b"{}"
    else:
        content_type = request.headers.get("content-type", "application/json").lower()
        if "json" not in content_type.split(";")[0]:
            raise UnsupportedMediaType()
    return decode_json(raw, typ)


def _pretty(conn: HTTPConnection) -> bool:
    # Google's default is pretty; we print compact unless asked, to save CPU and bytes
    # (README: "prettyPrint").
    return conn.query_params.get("prettyPrint", "false").lower() in ("true", "1")


def respond(conn: HTTPConnection, value: Any, status: int = 200) -> Response:
    fields = conn.query_params.get("fields")
    if not fields and not _pretty(conn):
        return Response(_encoder.encode(value), status, media_type=JSON)
    data: Any = msgspec.to_builtins(value)
    if fields:
        data = apply_fields(data, parse_fields(fields))
    body = _encoder.encode(data)
    if _pretty(conn):
        body = msgspec.json.format(body, indent=2)
    return Response(body, status, media_type=JSON)


def error_body(error: RoomsvcError, locale: str) -> dict[str, Any]:
    message = error.message(locale)
    return {
        "error": {
            "code": error.http_status,
            "status": error.status,
            "message": message,
            "errors": [{"domain": "global", "reason": error.reason, "message": message}],
        }
    }


def as_roomsvc_error(exc: BaseException) -> RoomsvcError:
    """Any exception as the error the user sees; unknown ones are logged as internal."""
    if isinstance(exc, RoomsvcError):
        return exc
    if isinstance(exc, UNAVAILABLE_ERRORS):
        # One line, no traceback: an outage is an operational event, not a bug.
        STORE_ERRORS.labels(type(exc).__name__).inc()
        log.warning("store unavailable", extra={"error": type(exc).__name__})
        return StoreUnavailable(retry_after=2)
    log.exception("internal error", exc_info=exc)
    return InternalError()


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's routing errors (unknown path, wrong verb) in Google's JSON error shape."""
    status = getattr(exc, "status_code", 500)
    error: RoomsvcError
    if status == 404:
        error = NotFound()
    elif status == 405:
        error = MethodNotAllowed()
    else:
        error = as_roomsvc_error(exc)
    body = _encoder.encode(error_body(error, locale_of(request)))
    headers = {**dict(getattr(exc, "headers", None) or {}), **error.headers()}
    return Response(body, error.http_status, headers=headers, media_type=JSON)


def error_response(error: RoomsvcError, locale: str) -> Response:
    body = _encoder.encode(error_body(error, locale))
    return Response(body, error.http_status, headers=error.headers(), media_type=JSON)


async def handle_error(request: Request, exc: Exception) -> Response:
    return error_response(as_roomsvc_error(exc), locale_of(request))
