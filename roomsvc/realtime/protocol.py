"""JSON-RPC 2.0 frames of the realtime channel (docs/spec.md §6), pure: no I/O, no clock.

`parse(frame)` turns one text frame into a `Call` or raises an `RpcError` (one branch of the error
tree of errors.py); the encoders build the frames the server sends. Every input is either a
`Call` or a documented error (docs/style.md habit 12), so one bad frame gets an error reply and
the connection lives on:

    -32700  parse error       the frame is not JSON
    -32600  invalid request   not a JSON-RPC 2.0 request object (batches are not supported)
    -32601  method not found
    -32602  invalid params    params is not an object, or a field has the wrong type
    -32053  restarting        read while the server drains for a restart (SIGTERM): retry
    others                    application errors (errors.py): `data` = {code, status, reason}

Requests without an `id` are notifications: JSON-RPC forbids replying to them, so a valid
notification is executed silently; an invalid frame always gets an error with `id: null`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import msgspec

from roomsvc.common.errors import N_, RoomsvcError

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
UNAVAILABLE = -32053  # as errors.StoreUnavailable: a 503, retry later

RequestId = int | str | None


class RpcError(RoomsvcError):
    """A frame that is not a valid call: a JSON-RPC protocol error, in the one error tree
    (errors.py), answered with the request's id when it could be read."""

    http_status = 400
    status = "INVALID_ARGUMENT"

    def __init__(self, msgid: str, request_id: RequestId = None, /, **params: Any) -> None:
        super().__init__(msgid, **params)
        self.request_id = request_id

    @property
    def code(self) -> int:
        return self.rpc_code


class ParseError(RpcError):
    rpc_code = PARSE_ERROR
    reason = "parseError"


class InvalidRequest(RpcError):
    rpc_code = INVALID_REQUEST
    reason = "invalidRequest"


class MethodNotFound(RpcError):
    rpc_code = METHOD_NOT_FOUND
    reason = "methodNotFound"


class InvalidParams(RpcError):
    rpc_code = INVALID_PARAMS
    reason = "invalidParams"


class Restarting(RpcError):
    """A request read while the server drains for a restart: retry on a new connection."""

    http_status = 503
    status = "UNAVAILABLE"
    rpc_code = UNAVAILABLE
    reason = "restarting"

    def __init__(self, request_id: RequestId) -> None:
        super().__init__(
            N_("The server is restarting; send the request again on a new connection."),
            request_id,
        )


class _Envelope(msgspec.Struct):
    jsonrpc: Any = None
    method: Any = None
    id: Any = msgspec.UNSET
    params: msgspec.Raw = msgspec.Raw()


class Params(msgspec.Struct, rename="camel"):
    """The one params shape of every method (docs/spec.md §6); unknown fields are ignored."""

    room_id: str | None = None
    body: msgspec.Raw = msgspec.Raw()  # decoded by the method into its request type
    language: str | None = None
    max_results: int | str | None = None
    page_token: str | None = None
    after_seq: int | None = None  # rooms.resumeMessages (docs/messages.md "Resume")


@dataclasses.dataclass(frozen=True, slots=True)
class Call:
    method: str
    params: Params
    id: RequestId
    notification: bool


# Malformed JSON as msgspec reports it: besides DecodeError, invalid UTF-8 inside a string (a
# bytes frame) is a UnicodeDecodeError, and nesting deeper than the interpreter's recursion
# limit a RecursionError (RFC 8259 §9 lets a parser limit nesting). docs/spec.md §12 item 7.
_MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_envelope = msgspec.json.Decoder(_Envelope)
_params = msgspec.json.Decoder(Params, strict=False)
_encode = msgspec.json.Encoder().encode


def _request_id(value: Any) -> RequestId:
    # JSON-RPC: a String, a Number without fraction, or null (true/false are not numbers).
    if value is None or isinstance(value, str) or type(value) is int:
        return value
    raise InvalidRequest(N_("The request id must be a string, an integer or null."))


def parse(frame: str | bytes) -> Call:
    """One frame -> a `Call`, or `RpcError` carrying the request id when one was readable."""
    try:
        envelope = _envelope.decode(frame)
    except msgspec.ValidationError:
        raise InvalidRequest(N_("A request must be one JSON-RPC 2.0 object.")) from None
    except _MALFORMED:
        raise ParseError(N_("The frame is not valid JSON.")) from None
    notification = envelope.id is msgspec.UNSET
    request_id = None if notification else _request_id(envelope.id)
    if envelope.jsonrpc != "2.0":
        raise InvalidRequest(N_('The field jsonrpc must be "2.0".'), request_id)
    if not isinstance(envelope.method, str) or not envelope.method:
        raise InvalidRequest(N_("The field method must be a non-empty string."), request_id)
    params = Params()
    if envelope.params and bytes(envelope.params) != b"null":
        try:
            params = _params.decode(envelope.params)
        except msgspec.ValidationError as exc:
            detail = str(exc)
            if detail.startswith("Expected `object`"):
                raise InvalidParams(N_("The field params must be an object."), request_id) from None
            field = detail.rpartition("at `$.")[2].rstrip("`") if "at `$." in detail else "params"
            raise InvalidParams(
                N_("Invalid value for params.{field}."), request_id, field=field
            ) from None
        except _MALFORMED:  # the envelope skips params without checking their strings
            raise ParseError(N_("The frame is not valid JSON."), request_id) from None
    return Call(envelope.method, params, request_id, notification)


# ---- frames the server sends ---------------------------------------------------------------


class _Result(msgspec.Struct):
    jsonrpc: str
    id: RequestId
    result: Any


class _ErrorObject(msgspec.Struct, omit_defaults=True):
    code: int
    message: str
    data: dict[str, Any] | None = None


class _Error(msgspec.Struct):
    jsonrpc: str
    id: RequestId
    error: _ErrorObject


def result(request_id: RequestId, value: Any) -> str:
    return _encode(_Result("2.0", request_id, value)).decode()


def notification(method: str, params_json: bytes) -> str:
    """A notification whose params are already-encoded JSON (rendered once, sent to many)."""
    head = b'{"jsonrpc":"2.0","method":"' + method.encode() + b'","params":'
    return (head + params_json + b"}").decode()


def rpc_error(error: RpcError, locale: str) -> str:
    """The error frame of a protocol error, answering the request's id."""
    return app_error(error.request_id, error, locale)


def app_error(request_id: RequestId, error: RoomsvcError, locale: str) -> str:
    """An application error: its JSON-RPC code, and the HTTP-like code, status and reason."""
    return _encode(_Error("2.0", request_id, _app_error_object(error, locale))).decode()


def app_error_object(error: RoomsvcError, locale: str) -> bytes:
    """The error object alone (a REJECTED binary frame carries it, docs/messages.md)."""
    return _encode(_app_error_object(error, locale))


def _app_error_object(error: RoomsvcError, locale: str) -> _ErrorObject:
    data: dict[str, Any] = {
        "code": error.http_status,
        "status": error.status,
        "reason": error.reason,
    }
    retry_after = getattr(error, "retry_after", None)
    if retry_after is not None:
        data["retryAfter"] = retry_after
    gpgs_status = getattr(error, "gpgs_status", None)
    if gpgs_status is not None:  # GPGS's status code for the same case (docs/messages.md)
        data["gpgsStatus"] = gpgs_status
    return _ErrorObject(error.rpc_code, error.message(locale), data)
