"""Pure validation of an analytics batch (docs/spec.md §8): bytes in, stream records out, no I/O.

The whole batch is checked before anything is stored, so one bad item rejects the batch and
the error names that item's index and field. Time is an argument (`now_ms`), never read here.

Rules (docs/analytics.md has the user-facing version):

- `eventData` is a list of 1..`max_items` items (`AddEvent`: exactly one item, given as
  `eventData` (an object or a list of one) or as `Timestamp`/`Event`/`Data` at the top level).
- `Event`: a non-blank string of at most 256 characters.
- `Timestamp`: Unix time as a number or a decimal string, in seconds when below 10^11 and in
  milliseconds otherwise, or an RFC 3339 date-time (UTC when it has no offset); stored as
  Unix milliseconds. The seed's `"4315435114"` is seconds.
- `Data`: a list of objects whose keys are 1..256 characters and whose values are strings,
  numbers, booleans or null; one object counts as a list of one, null or missing as empty.
- `mediaInfo`: base64 (standard or URL-safe alphabet, padding optional) of a JSON object,
  attached to every item; empty or absent means none.
- `BatchId`: 1..128 printable characters; the same caller sending it again stores nothing.

Every rejection is a `RoomsvcError` whose `StatusCode` comes from `status_code_of`:

    StatusCode  HTTP  error                  when
    0           200   (success)              stored, or already stored under this BatchId
    10          400   InvalidBatch           body not a JSON object, a field of the wrong type,
                                             eventData missing/empty/not a list, bad BatchId
    11          400   InvalidItem            one item breaks a rule (index and field named)
    12          400   InvalidMediaInfo       mediaInfo is not base64 of a JSON object
    13          413   TooManyItems           more than max_items items
    14          413   PayloadTooLarge        body over analytics_max_body_bytes
    15          415   UnsupportedMediaType   Content-Type neither JSON nor text/plain
    20          401   Unauthenticated        token missing, malformed, invalid or expired
    21          403   PermissionDenied       player token without the games or games_lite scope
    29          429   RateLimited            (reserved)
    30          503   StoreUnavailable       store unreachable: retry (with the same BatchId)
    31          500   any other error        a bug: logged with the request id
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import math
import re
from datetime import UTC, datetime
from typing import Any

import msgspec

from roomsvc.analytics.wire import (
    MAX_TEXT,
    AddEventsRequest,
    DataEntry,
    EventItem,
    StoredItem,
    encoder,
    item_decoder,
    items_decoder,
    media_info_decoder,
    request_decoder,
)
from roomsvc.common.errors import (
    N_,
    InvalidArgument,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RoomsvcError,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)

MAX_BATCH_ID = 128
SECONDS_BELOW = 10**11  # Unix times below this are seconds (10^11 ms is March 1973)
MAX_TIMESTAMP_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z

STATUS_OK = 0
SEVERITY_INFO = 1
SEVERITY_ERROR = 3

_raw_list_decoder = msgspec.json.Decoder(list[msgspec.Raw])
# Malformed JSON as msgspec reports it: DecodeError, UnicodeDecodeError for invalid UTF-8 in
# a string, RecursionError past the recursion limit (RFC 8259 §9 allows a nesting limit).
_MALFORMED = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)
_PATH_RE = re.compile(r" - at (?:`key` in )?`\$\.?([^`]*)`")
_KEY_ERROR = " - at `key` in "
_MISSING_RE = re.compile(r"missing required field `([^`]+)`")
_DECIMAL_RE = re.compile(r"^[0-9]+(\.[0-9]+)?$")


_EVENT_RULE = N_(
    "Item {index} of eventData: {field} must be a non-blank text of at most {limit} characters."
)
_TIMESTAMP_RULE = N_(
    "Item {index} of eventData: {field} must be Unix seconds or milliseconds, or an RFC 3339 time."
)
_DATA_RULE = N_(
    "Item {index} of eventData: {field} must be objects of text, number, boolean or null values."
)
_KEY_RULE = N_("Item {index} of eventData: the keys of {field} must be 1 to {limit} characters.")


class InvalidBatch(InvalidArgument):
    default_msgid = N_("The request body must be a JSON object.")


class InvalidItem(InvalidArgument):
    default_msgid = N_("Item {index} of eventData is not an object.")


class InvalidMediaInfo(InvalidArgument):
    default_msgid = N_("mediaInfo must be a base64-encoded JSON object.")


class TooManyItems(PayloadTooLarge):
    default_msgid = N_("The batch holds {count} items; the limit is {limit}.")


# First match wins, so subclasses come before their parents.
_STATUS_CODES: tuple[tuple[type[RoomsvcError], int], ...] = (
    (InvalidItem, 11),
    (InvalidMediaInfo, 12),
    (TooManyItems, 13),
    (PayloadTooLarge, 14),
    (UnsupportedMediaType, 15),
    (InvalidArgument, 10),
    (Unauthenticated, 20),
    (PermissionDenied, 21),
    (RateLimited, 29),
    (StoreUnavailable, 30),
)


def status_code_of(error: RoomsvcError) -> int:
    """The envelope's non-zero `StatusCode` for `error` (table in the module docstring)."""
    for cls, code in _STATUS_CODES:
        if isinstance(error, cls):
            return code
    return 31


@dataclasses.dataclass(frozen=True, slots=True)
class Source:
    """Who sent the batch: a player of `app_id`, or an anonymous session of it."""

    app_id: str
    player_id: str | None = None
    session_id: str | None = None

    @property
    def user_key(self) -> str:
        """Scopes BatchIds: two callers choosing the same BatchId never collide."""
        return f"p:{self.player_id}" if self.player_id is not None else f"a:{self.session_id}"


class Item(msgspec.Struct, frozen=True, gc=False):
    # A Struct, not a frozen dataclass: built once per item, it is ~5x cheaper (docs/spec.md §11).
    timestamp_ms: int
    event: str
    data: list[DataEntry]


class Batch(msgspec.Struct, frozen=True):
    items: list[Item]
    media_info: dict[str, Any] | None
    batch_id: str | None


def decode_request(raw: bytes) -> AddEventsRequest:
    """The body's envelope (token, mediaInfo, BatchId; items still raw)."""
    try:
        return request_decoder.decode(raw)
    except msgspec.ValidationError as exc:
        field = _path_of(exc)
        if field is None:
            raise InvalidBatch() from None
        if field.lower().startswith("mediainfo"):
            raise InvalidMediaInfo() from None
        raise InvalidBatch(
            N_("The field {field} of the request has the wrong type."), field=field
        ) from None
    except _MALFORMED:
        raise InvalidBatch(N_("The request body is not valid JSON.")) from None


def parse_batch(request: AddEventsRequest, raw: bytes, *, single: bool, max_items: int) -> Batch:
    """Validate every rule of the module docstring; raise on the first broken one."""
    batch_id = check_batch_id(request.batch_id)
    data = request.any_event_data().strip()
    decoded: list[EventItem] | None = None
    if data.startswith(b"[") and not single:
        # Fast path: one decode of the whole list. Any failure is re-examined item by item
        # below, which counts first (TooManyItems wins) and names the first bad item.
        try:
            decoded = items_decoder.decode(data)
        except _MALFORMED:
            decoded = None
    if decoded is None or not decoded:
        raw_items = _raw_items(request, raw, single=single)
        if len(raw_items) > max_items:
            raise TooManyItems(count=len(raw_items), limit=max_items)
        decoded = [_decode_item(item, index) for index, item in enumerate(raw_items)]
    if len(decoded) > max_items:
        raise TooManyItems(count=len(decoded), limit=max_items)
    items = [validate_item(item, index) for index, item in enumerate(decoded)]
    return Batch(items, decode_media_info(request.any_media_info()), batch_id)


def _raw_items(request: AddEventsRequest, raw: bytes, *, single: bool) -> list[bytes]:
    data = request.any_event_data().strip()
    if data in (b"", b"null"):
        if single:
            return [raw]  # AddEvent with Timestamp/Event/Data at the top level
        raise InvalidBatch(N_("eventData must hold at least one item."))
    if data.startswith(b"{"):
        return [data]
    try:
        items = [bytes(item) for item in _raw_list_decoder.decode(data)]
    except _MALFORMED:
        raise InvalidBatch(N_("eventData must be a list of items.")) from None
    if not items:
        raise InvalidBatch(N_("eventData must hold at least one item."))
    if single and len(items) != 1:
        raise InvalidBatch(
            N_("AddEvent takes exactly one item; send {count} items with AddEventBatch."),
            count=len(items),
        )
    return items


def _decode_item(data: bytes, index: int) -> EventItem:
    try:
        return item_decoder.decode(data)
    except msgspec.ValidationError as exc:
        missing = _MISSING_RE.search(str(exc))
        path = _path_of(exc)
        if missing:
            field = missing.group(1) if not path else f"{path}.{missing.group(1)}"
            raise InvalidItem(
                N_("Item {index} of eventData lacks the required field {field}."),
                index=index,
                field=field,
            ) from None
        if not path:
            raise InvalidItem(index=index) from None
        if _KEY_ERROR in str(exc):
            raise InvalidItem(_KEY_RULE, index=index, field=path, limit=MAX_TEXT) from None
        raise _field_error(index, path.replace("[...]", "")) from None
    except _MALFORMED:  # the envelope skips items without checking their strings
        raise InvalidBatch(N_("The request body is not valid JSON.")) from None


def _field_error(index: int, field: str) -> InvalidItem:
    root = re.split(r"[.\[]", field, maxsplit=1)[0]
    msgid = (
        _EVENT_RULE if root == "Event" else _TIMESTAMP_RULE if root == "Timestamp" else _DATA_RULE
    )
    return InvalidItem(msgid, index=index, field=field, limit=MAX_TEXT)


def validate_item(item: EventItem, index: int) -> Item:
    """One decoded item, checked and normalized (module docstring rules; the decoder has
    checked the types and the Data keys). Written for the ingest rate (docs/spec.md §11): the common
    case costs a few C-level checks."""
    event = item.Event
    if not event or len(event) > MAX_TEXT or event.isspace():
        raise _field_error(index, "Event")
    stamp = item.Timestamp
    if type(stamp) is int and SECONDS_BELOW <= stamp <= MAX_TIMESTAMP_MS:
        timestamp_ms = stamp
    else:
        parsed = parse_timestamp(stamp)
        if parsed is None:
            raise _field_error(index, "Timestamp")
        timestamp_ms = parsed
    data = item.Data
    entries = [] if data is None else [data] if isinstance(data, dict) else data
    return Item(timestamp_ms, event, entries)


def parse_timestamp(value: int | float | str) -> int | None:
    """Unix milliseconds, or None when `value` is no time we accept (module docstring)."""
    number: float | int
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL_RE.match(text):
            number = int(text) if text.isdigit() else float(text)
        else:
            return _parse_rfc3339(text)
    else:
        number = value
    if isinstance(number, float) and not math.isfinite(number):
        return None
    if number < 0:
        return None
    millis = round(number * 1000) if number < SECONDS_BELOW else round(number)
    return millis if millis <= MAX_TIMESTAMP_MS else None


def _parse_rfc3339(text: str) -> int | None:
    if len(text) < 10 or not text[:4].isdigit() or text[4:5] != "-":
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    millis = round(moment.timestamp() * 1000)
    return millis if 0 <= millis <= MAX_TIMESTAMP_MS else None


def decode_media_info(value: str | None) -> dict[str, Any] | None:
    """The JSON object inside base64 `mediaInfo`; None when absent or empty."""
    if not value or not value.strip():
        return None
    text = value.strip().replace("-", "+").replace("_", "/")
    text += "=" * (-len(text) % 4)
    try:
        decoded = base64.b64decode(text, validate=True)
        return media_info_decoder.decode(decoded)
    except (binascii.Error, ValueError, *_MALFORMED):
        raise InvalidMediaInfo() from None


def check_batch_id(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if len(value) > MAX_BATCH_ID or not value.isprintable():
        raise InvalidBatch(
            N_("BatchId must be 1 to {limit} printable characters."), limit=MAX_BATCH_ID
        )
    return value


def records(batch: Batch, source: Source, now_ms: int) -> list[bytes]:
    """One JSON document per item, as stored in the stream and written by the export."""
    return [
        encoder.encode(
            StoredItem(
                application_id=source.app_id,
                player_id=source.player_id,
                session_id=source.session_id,
                anonymous=source.player_id is None,
                batch_id=batch.batch_id,
                index=index,
                received_at=now_ms,
                timestamp=item.timestamp_ms,
                event=item.event,
                data=item.data,
                media_info=batch.media_info,
            )
        )
        for index, item in enumerate(batch.items)
    ]


def _path_of(error: msgspec.ValidationError) -> str | None:
    match = _PATH_RE.search(str(error))
    return match.group(1) if match else None
