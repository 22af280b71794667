"""The one error tree of roomsvc (docs/spec.md §3, §6).

Every error a user can see is a `RoomsvcError`. Each class knows, in one place, its HTTP
status, Google's canonical status string and `reason`, and its JSON-RPC code; each instance
carries a gettext message id (English source text with `{name}` fields) and the values for
those fields, so the transport renders the message in the caller's language::

    RoomsvcError
    ├── InvalidArgument         400  INVALID_ARGUMENT    invalid             -32602
    │   ├── PayloadTooLarge     413  INVALID_ARGUMENT    payloadTooLarge     -32600
    │   └── UnsupportedMediaType 415 INVALID_ARGUMENT    unsupportedMediaType -32600
    ├── Unauthenticated         401  UNAUTHENTICATED     authError           -32001
    ├── PermissionDenied        403  PERMISSION_DENIED   insufficientPermissions -32003
    ├── NotFound                404  NOT_FOUND           notFound            -32004
    ├── MethodNotAllowed        405  INVALID_ARGUMENT    httpMethodNotAllowed -32601
    ├── Conflict                409  ABORTED             conflict            -32009
    ├── RateLimited             429  RESOURCE_EXHAUSTED  rateLimitExceeded   -32029
    ├── StoreUnavailable        503  UNAVAILABLE         backendError        -32053
    │   ├── OutcomeUnknown      503  UNAVAILABLE         outcomeUnknown      -32053
    │   └── Overloaded          503  UNAVAILABLE         overloaded          -32053
    └── InternalError           500  INTERNAL            backendError        -32603

Message ids are marked with `N_()` so Babel's extractor finds them; the catalogs under
`roomsvc/common/i18n/locale/` translate them (a test fails when es or hi lacks one).
"""

from __future__ import annotations

from typing import Any, ClassVar


def N_(msgid: str) -> str:
    """Mark a message id for extraction; it is translated when rendered, not here."""
    return msgid


class RoomsvcError(Exception):
    http_status: ClassVar[int] = 500
    status: ClassVar[str] = "INTERNAL"
    reason: ClassVar[str] = "backendError"
    rpc_code: ClassVar[int] = -32603
    default_msgid: ClassVar[str] = N_("Internal error.")

    def __init__(self, msgid: str | None = None, /, **params: Any) -> None:
        self.msgid = msgid or self.default_msgid
        self.params = params
        super().__init__(self.msgid.format(**params) if params else self.msgid)

    def message(self, locale: str) -> str:
        from roomsvc.common.i18n import gettext

        return gettext(locale, self.msgid, **self.params)

    def headers(self) -> dict[str, str]:
        return {}


class InvalidArgument(RoomsvcError):
    http_status = 400
    status = "INVALID_ARGUMENT"
    reason = "invalid"
    rpc_code = -32602
    default_msgid = N_("Invalid request.")


class PayloadTooLarge(InvalidArgument):
    http_status = 413
    reason = "payloadTooLarge"
    rpc_code = -32600
    default_msgid = N_("The request body is larger than {limit} bytes.")


class UnsupportedMediaType(InvalidArgument):
    http_status = 415
    reason = "unsupportedMediaType"
    rpc_code = -32600
    default_msgid = N_("The request body must be JSON (Content-Type: application/json).")


class Unauthenticated(RoomsvcError):
    http_status = 401
    status = "UNAUTHENTICATED"
    reason = "authError"
    rpc_code = -32001
    default_msgid = N_("Missing or invalid credentials.")

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": 'Bearer realm="roomsvc"'}


class PermissionDenied(RoomsvcError):
    http_status = 403
    status = "PERMISSION_DENIED"
    reason = "insufficientPermissions"
    rpc_code = -32003
    default_msgid = N_("The token lacks the scope {scope}.")


class NotFound(RoomsvcError):
    http_status = 404
    status = "NOT_FOUND"
    reason = "notFound"
    rpc_code = -32004
    default_msgid = N_("Not found.")


class MethodNotAllowed(RoomsvcError):
    http_status = 405
    status = "INVALID_ARGUMENT"
    reason = "httpMethodNotAllowed"
    rpc_code = -32601
    default_msgid = N_("The HTTP method is not allowed on this path.")


class Conflict(RoomsvcError):
    """An illegal transition for the resource's current state (docs/spec.md §3: 409)."""

    http_status = 409
    status = "ABORTED"
    reason = "conflict"
    rpc_code = -32009
    default_msgid = N_("The request conflicts with the current state.")


class _RetryLater(RoomsvcError):
    def __init__(self, msgid: str | None = None, /, retry_after: int = 1, **params: Any) -> None:
        self.retry_after = max(1, int(retry_after))
        params.setdefault("seconds", self.retry_after)
        super().__init__(msgid, **params)

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)}


class RateLimited(_RetryLater):
    http_status = 429
    status = "RESOURCE_EXHAUSTED"
    reason = "rateLimitExceeded"
    rpc_code = -32029
    default_msgid = N_("Too many requests; retry after {seconds} seconds.")


class StoreUnavailable(_RetryLater):
    http_status = 503
    status = "UNAVAILABLE"
    reason = "backendError"
    rpc_code = -32053
    default_msgid = N_("The store is unavailable; retry shortly.")


class OutcomeUnknown(StoreUnavailable):
    """A change the store did not confirm in time: it may have been applied, now or later
    (docs/store.md "Retries never double-apply" says which retries are safe)."""

    reason = "outcomeUnknown"
    default_msgid = N_("The change may or may not have been applied; read it back or retry.")


class Overloaded(StoreUnavailable):
    """Refused at once, before any work: the process has as much in flight as it takes
    (ROOMSVC_MAX_CALLS_IN_FLIGHT). Nothing was applied; retry after Retry-After."""

    reason = "overloaded"
    default_msgid = N_("The server is busy; nothing was changed. Retry after {seconds} seconds.")


class InternalError(RoomsvcError):
    pass
