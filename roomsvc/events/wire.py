"""Wire shapes of the events methods (docs/spec.md §3, §7), exactly as the seeds and the discovery
document spell them: camelCase fields, fixed `kind` strings, int64 values as JSON strings.

Requests are decoded leniently (`strict=False`): an int64 arrives as a string or a number,
unknown fields and any `kind` are ignored, a wrong type is a 400 naming the field. Responses
carry `kind` as a msgspec tag, so it is always written first and can never be forgotten;
optional fields are omitted when absent (Google's style), the three arrays of
EventUpdateResponse and `items` of the list responses are always present.

The discovery schema EventPeriodRange has two Structs here: `EventPeriodRangeIn` (request side,
ints) and `EventPeriodRange` (response side, strings); roomsvc/http/discovery.py maps both to one
name.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, ClassVar

import msgspec

from roomsvc.common.errors import N_, InvalidArgument
from roomsvc.events.rules import BatchFailure, Period, PeriodUpdates, Update, UpdateFailure

# int64 fields: numbers or numeric strings in, JSON strings out (`format: int64` in discovery).
Int64 = Annotated[int, msgspec.Meta(ge=-(2**63), le=2**63 - 1, extra={"format": "int64"})]
Int64Str = Annotated[str, msgspec.Meta(extra={"format": "int64"})]
NOT_NULL = msgspec.Meta(extra_json_schema={"type": "integer"})  # for the API documents only

# -- requests ---------------------------------------------------------------------------------


# What periods_of checks, stated for the API documents (docs/api.md): both bounds of every
# period are required; the message naming the missing one stays in periods_of.
class EventPeriodRangeIn(msgspec.Struct, rename="camel"):
    schema_rules: ClassVar[dict[str, Any]] = {"required": ["periodStartMillis", "periodEndMillis"]}

    kind: str = "games#eventPeriodRange"
    period_start_millis: Annotated[Int64 | None, NOT_NULL] = None
    period_end_millis: Annotated[Int64 | None, NOT_NULL] = None


class EventUpdateRequest(msgspec.Struct, rename="camel"):
    kind: str = "games#eventUpdateRequest"
    definition_id: str = ""
    update_count: Int64 = 0  # missing counts as 0: INVALID_UPDATE_VALUE, not a 400


class EventPeriodUpdate(msgspec.Struct, rename="camel"):
    schema_rules: ClassVar[dict[str, Any]] = {"required": ["timePeriod"]}

    kind: str = "games#eventPeriodUpdate"
    time_period: Annotated[
        EventPeriodRangeIn | None, msgspec.Meta(extra_json_schema={"type": "object"})
    ] = None
    updates: list[EventUpdateRequest] = []


class EventRecordRequest(msgspec.Struct, rename="camel"):
    kind: str = "games#eventRecordRequest"
    request_id: Int64 | None = None
    current_time_millis: Int64 | None = None
    time_periods: list[EventPeriodUpdate] = []


# -- responses --------------------------------------------------------------------------------


class EventPeriodRange(
    msgspec.Struct, tag_field="kind", tag="games#eventPeriodRange", rename="camel"
):
    period_start_millis: Int64Str
    period_end_millis: Int64Str


class EventBatchRecordFailure(
    msgspec.Struct,
    tag_field="kind",
    tag="games#eventBatchRecordFailure",
    rename="camel",
    omit_defaults=True,
):
    failure_cause: str
    range: EventPeriodRange | None = None  # absent for a request-wide failure


class EventRecordFailure(
    msgspec.Struct, tag_field="kind", tag="games#eventRecordFailure", rename="camel"
):
    event_id: str
    failure_cause: str


class PlayerEvent(msgspec.Struct, tag_field="kind", tag="games#playerEvent", rename="camel"):
    definition_id: str
    player_id: str
    num_events: Int64Str
    formatted_num_events: str


class EventUpdateResponse(
    msgspec.Struct, tag_field="kind", tag="games#eventUpdateResponse", rename="camel"
):
    batch_failures: list[EventBatchRecordFailure]
    event_failures: list[EventRecordFailure]
    player_events: list[PlayerEvent]


class PlayerEventListResponse(
    msgspec.Struct,
    tag_field="kind",
    tag="games#playerEventListResponse",
    rename="camel",
    omit_defaults=True,
):
    items: list[PlayerEvent]
    next_page_token: str | None = None


class EventDefinition(
    msgspec.Struct,
    tag_field="kind",
    tag="games#eventDefinition",
    rename="camel",
    omit_defaults=True,
):
    id: str
    visibility: str
    display_name: str
    description: str
    is_default_image_url: bool
    image_url: str | None = None


class EventDefinitionListResponse(
    msgspec.Struct,
    tag_field="kind",
    tag="games#eventDefinitionListResponse",
    rename="camel",
    omit_defaults=True,
):
    items: list[EventDefinition]
    next_page_token: str | None = None


# -- conversions ------------------------------------------------------------------------------


def request_from(body: EventRecordRequest | Mapping[str, Any] | None) -> EventRecordRequest:
    """The request from a decoded REST body or a JSON-RPC `params.body` object."""
    if isinstance(body, EventRecordRequest):
        return body
    try:
        return msgspec.convert(body or {}, EventRecordRequest, strict=False)
    except msgspec.ValidationError as exc:
        message = str(exc)
        detail, _, where = message.partition(" - at `$")
        raise InvalidArgument(
            N_("Invalid value for field {field}: {detail}"),
            field=where.rstrip("`").lstrip(".") or "body",
            detail=detail,
        ) from None


def periods_of(request: EventRecordRequest) -> list[PeriodUpdates]:
    """The pure core's view of the request; a period without both bounds is a 400."""
    periods: list[PeriodUpdates] = []
    for index, entry in enumerate(request.time_periods):
        bounds = entry.time_period or EventPeriodRangeIn()
        start, end = bounds.period_start_millis, bounds.period_end_millis
        if start is None or end is None:
            missing = "periodStartMillis" if start is None else "periodEndMillis"
            raise InvalidArgument(
                N_("Field {field} is required."), field=f"timePeriods[{index}].timePeriod.{missing}"
            )
        updates = tuple(Update(u.definition_id, u.update_count) for u in entry.updates)
        periods.append(PeriodUpdates(Period(start, end), updates))
    return periods


def range_out(period: Period) -> EventPeriodRange:
    return EventPeriodRange(str(period.start_ms), str(period.end_ms))


def batch_failure_out(failure: BatchFailure) -> EventBatchRecordFailure:
    rng = None if failure.period is None else range_out(failure.period)
    return EventBatchRecordFailure(str(failure.cause), rng)


def update_failure_out(failure: UpdateFailure) -> EventRecordFailure:
    return EventRecordFailure(failure.definition_id, str(failure.cause))
