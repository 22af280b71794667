"""JSON logs with bound context (docs/spec.md §10; docs/style.md habit 11).

`bind(request_id=..., room_id=...)` attaches fields to every record logged by the current task.
Tokens never appear: access logs carry the path without its query string.
"""

from __future__ import annotations

import contextvars
import logging
import re
import sys
import time
from typing import Any

import msgspec

_context: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "roomsvc_log", default=None
)
_encoder = msgspec.json.Encoder()
_STANDARD = set(logging.makeLogRecord({}).__dict__) | {
    "message",
    "asctime",
    "taskName",
    "color_message",
}


def bind(**fields: Any) -> contextvars.Token[dict[str, Any] | None]:
    return _context.set({**(_context.get() or {}), **fields})


def unbind(token: contextvars.Token[dict[str, Any] | None]) -> None:
    _context.reset(token)


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        event: dict[str, Any] = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **(_context.get() or {}),
        }
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                event[key] = value
        if record.exc_info:
            event["exc"] = self.formatException(record.exc_info)
        return redact(_encoder.encode(event).decode(errors="replace"))


# Tokens never reach a log (docs/spec.md §2), whoever logs: uvicorn's debug records print request
# lines with their query strings and the handshake headers, exceptions may quote a value. This runs
# on the encoded JSON line, so no pattern consumes a backslash (an escape stays whole).
_SECRETS = re.compile(
    r"((?:access_token|oauth_token)=)[^&\s\"\\]+"
    r"|((?i:bearer)\s+)(?!realm=)[\w.~+/=-]+"
    r"|((?i:authorization):\s*)[^\"\\]+"
    r"|eyJ[\w-]*\.[\w-]+\.[\w-]*"
)


def redact(text: str) -> str:
    if "=" not in text and "eyJ" not in text and "earer" not in text and "uthorization" not in text:
        return text  # the common case: nothing that could be a token, no regex work
    return _SECRETS.sub(
        lambda m: (m.group(1) or m.group(2) or m.group(3) or "") + "[redacted]", text
    )


_access = logging.getLogger("roomsvc.access")
_access_handler: logging.StreamHandler[Any] | None = None  # set by `configure`


def access(**fields: Any) -> None:
    """The access log line of one request (docs/spec.md §10), in the same JSON shape as any record
    of the `roomsvc.access` logger. One runs per request, so once `configure` has set up the
    process's one JSON handler the line is encoded and written directly, without a LogRecord and the
    handler chain (a third of the cost); otherwise it goes through `logging`."""
    if not _access.isEnabledFor(logging.INFO):
        return
    handler = _access_handler
    if handler is None:
        _access.info("request", extra=fields)
        return
    event = {"ts": round(time.time(), 3), "level": "info", "logger": "roomsvc.access",
             "event": "request", **(_context.get() or {}), **fields}  # fmt: skip
    handler.stream.write(redact(_encoder.encode(event).decode(errors="replace")) + "\n")


def configure(level: str = "INFO") -> None:
    global _access_handler
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    _access_handler = handler
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # uvicorn's own access log prints query strings (tokens may be there): ours replaces it.
    logging.getLogger("uvicorn.access").disabled = True
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True


class Repeats:
    """At most one record per `interval_s` for a warning that repeats while a condition lasts
    (the store unreachable: every background loop retries about once a second, and an outage
    of minutes would otherwise write thousands of identical lines). `due(key)` is None while
    the key's record is held back, else how many were held back since the last one."""

    def __init__(self, interval_s: float = 30.0, clock: Any = time.monotonic) -> None:
        self.interval_s = interval_s
        self._clock = clock
        self._last: dict[str, tuple[float, int]] = {}  # key -> (last written, held back)

    def due(self, key: str) -> int | None:
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last[0] < self.interval_s:
            self._last[key] = (last[0], last[1] + 1)
            return None
        self._last[key] = (now, 0)
        return 0 if last is None else last[1]

    def clear(self, key: str) -> bool:
        """Forget `key` (the condition ended); True if a record of it had been written."""
        return self._last.pop(key, None) is not None


OUTAGE = Repeats()  # the process's store-unavailable warnings


def outage_warning(logger: logging.Logger, key: str, message: str, **extra: Any) -> None:
    """`logger.warning(message)` for a store outage seen by the loop `key`, through OUTAGE."""
    held_back = OUTAGE.due(key)
    if held_back is not None:
        logger.warning(message, extra={**extra, "repeats_held_back": held_back})
