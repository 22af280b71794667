"""The events methods, independent of transport (docs/spec.md §3, §7, §9): REST routes and the
JSON-RPC socket both call these functions, through the method table of roomsvc/events/routes.py
(which checks the scopes), with the caller, its locale and the method's parameters.

Each call reads the clock once and passes `now` down; the pure rules (roomsvc/events/rules.py)
decide what may be applied, the store (roomsvc/events/store.py) applies it in one atomic script
and adds the failures that need state. Every user-visible text comes from the config (names,
descriptions) or the gettext catalogs (errors); numbers are formatted by Babel.

The request's `currentTimeMillis` is accepted and not used: the server's clock alone decides
TIME_PERIOD_EXPIRED, so a client clock set back cannot make old data fresh.

`HIDDEN` definitions (discovery: "should only be shown to users that have recorded this event at
least once") are listed only to players whose counter for them is not zero; recording one works for
everybody.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Generic, TypeVar

import msgspec

from roomsvc.auth.tokens import Principal
from roomsvc.common.clock import now_ms
from roomsvc.common.i18n import format_number
from roomsvc.common.metrics import EVENTS_RECORDED
from roomsvc.config import ApplicationConfig, Config, EventDefinitionConfig
from roomsvc.events import store as events_store
from roomsvc.events import wire
from roomsvc.events.rules import (
    BatchFailure,
    BatchFailureCause,
    decode_index_token,
    decode_page_token,
    encode_page_token,
    page_size,
    plan_record,
)
from roomsvc.events.store import RecordStatus
from roomsvc.settings import Settings
from roomsvc.store.connection import Store

_PLAYER_EVENTS = "playerEvents"
_DEFINITIONS = "eventDefinitions"


def _definitions(config: Config, app_id: str) -> list[EventDefinitionConfig]:
    app: ApplicationConfig | None = config.application(app_id)
    return list(app.events) if app is not None else []


def _player_event(principal: Principal, locale: str, def_id: str, count: int) -> wire.PlayerEvent:
    return wire.PlayerEvent(def_id, principal.player_id, str(count), format_number(count, locale))


async def record(
    store: Store,
    settings: Settings,
    config: Config,
    principal: Principal,
    locale: str,
    body: wire.EventRecordRequest | Mapping[str, Any] | None,
    *,
    now: int | None = None,
) -> wire.EventUpdateResponse:
    """events.record: apply every valid update at once, report every failure (docs/spec.md §7)."""
    request = wire.request_from(body)
    periods = wire.periods_of(request)
    now = now_ms() if now is None else now
    app = config.application(principal.app_id)
    known: set[str] = {event.id for event in app.events} if app is not None else set()
    plan = plan_record(periods, known, now, settings.events_max_updates)
    batch_failures = [wire.batch_failure_out(f) for f in plan.batch_failures]
    player_events: list[wire.PlayerEvent] = []
    if plan.apply:
        outcome = await events_store.record(
            store,
            principal.app_id,
            principal.player_id,
            plan.apply,
            request.request_id,
            now,
            settings.events_rate_per_minute,
        )
        if outcome.status is RecordStatus.REQUEST_REPLAYED:
            batch_failures.append(wire.EventBatchRecordFailure(BatchFailureCause.ALREADY_UPDATED))
        for index in outcome.already:
            failure = BatchFailure(BatchFailureCause.ALREADY_UPDATED, plan.apply[index].period)
            batch_failures.append(wire.batch_failure_out(failure))
        if outcome.status is RecordStatus.RATE_LIMITED:
            batch_failures.append(wire.EventBatchRecordFailure(BatchFailureCause.RECORD_RATE_HIGH))
        if outcome.applied_updates:
            EVENTS_RECORDED.inc(outcome.applied_updates)
        player_events = [
            _player_event(principal, locale, def_id, count)
            for def_id, count in outcome.counters.items()
        ]
    return wire.EventUpdateResponse(
        batch_failures, [wire.update_failure_out(f) for f in plan.update_failures], player_events
    )


def _definition(event: EventDefinitionConfig, locale: str) -> wire.EventDefinition:
    return wire.EventDefinition(
        id=event.id,
        visibility=event.visibility,
        display_name=event.localized(event.display_name, locale),
        description=event.localized(event.description, locale),
        is_default_image_url=event.image_url is None,
        image_url=event.image_url,
    )


Cursor = TypeVar("Cursor")
Item = TypeVar("Item")
Page = TypeVar("Page", bound=msgspec.Struct)
# What a list holds past a page token: (position its own page token would carry, item), in order.
Positioned = list[tuple[str, Item]]


@dataclasses.dataclass(frozen=True, slots=True)
class _List(Generic[Cursor, Item, Page]):
    """One list method (docs/spec.md §3 paging): `maxResults` items past `pageToken`, and a token
    for the next page only when more follow. Tokens name their list, so one list's token is a 400 on
    the other."""

    name: str
    decode: Callable[[str, str | None], Cursor]  # the token -> where the page starts
    items: Callable[[Store, Config, Principal, Cursor], Awaitable[Positioned[Item]]]
    render: Callable[[Principal, str, Item], Any]
    page: Callable[[list[Any], str | None], Page]

    async def __call__(
        self,
        store: Store,
        settings: Settings,
        config: Config,
        principal: Principal,
        locale: str,
        max_results: int | str | None = None,
        page_token: str | None = None,
    ) -> Page:
        size = page_size(max_results)
        after = self.decode(self.name, page_token)
        found = await self.items(store, config, principal, after)
        shown = found[:size]
        token = encode_page_token(self.name, shown[-1][0]) if len(found) > size else None
        return self.page([self.render(principal, locale, item) for _, item in shown], token)


async def _counters_after(
    store: Store, config: Config, principal: Principal, after: str | None
) -> Positioned[tuple[str, int]]:
    """The caller's counters, by definition id, past the id `after`."""
    counters = await events_store.counters(store, principal.app_id, principal.player_id)
    ids = sorted(d for d in counters if after is None or d > after)
    return [(d, (d, counters[d])) for d in ids]


async def _definitions_from(
    store: Store, config: Config, principal: Principal, start: int
) -> Positioned[EventDefinitionConfig]:
    """The app's definitions in config order from index `start`; a HIDDEN one only once the
    caller's counter for it is not zero."""
    definitions = _definitions(config, principal.app_id)
    hidden = [d.id for d in definitions[start:] if d.visibility == "HIDDEN"]
    seen = await events_store.counters_of(store, principal.app_id, principal.player_id, hidden)
    return [
        (str(index + 1), d)
        for index, d in enumerate(definitions)
        if index >= start and (d.visibility != "HIDDEN" or seen.get(d.id, 0) > 0)
    ]


# events.listByPlayer: the caller's counters, by definition id, a page at a time.
list_by_player = _List(
    _PLAYER_EVENTS,
    decode_page_token,
    _counters_after,
    lambda principal, locale, item: _player_event(principal, locale, *item),
    wire.PlayerEventListResponse,
)
# events.listDefinitions: the app's definitions in config order, localized.
list_definitions = _List(
    _DEFINITIONS,
    decode_index_token,
    _definitions_from,
    lambda principal, locale, event: _definition(event, locale),
    wire.EventDefinitionListResponse,
)
