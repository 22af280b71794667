"""The applications file (docs/spec.md §1, §7): `ROOMSVC_CONFIG`, default the shipped
`roomsvc.toml`.

It holds applications and their event definitions, never secrets. `load_config` parses and
validates it whole and reports every bad key with its path (`applications[0].events[2].id`).
An application with no entry is still a tenant; it simply has no event definitions.
"""

from __future__ import annotations

import re
import tomllib
import typing
from pathlib import Path
from typing import Any, Literal

import msgspec

from roomsvc.common.i18n import LOCALES

DEFAULT_CONFIG = Path(__file__).with_name("roomsvc.toml")
_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")


class ConfigError(Exception):
    def __init__(self, path: Path, problems: list[str]) -> None:
        super().__init__(f"{path}: " + "; ".join(problems))
        self.path = path
        self.problems = problems


class EventDefinitionConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    display_name: dict[str, str]
    visibility: Literal["REVEALED", "HIDDEN"] = "REVEALED"
    image_url: str | None = None
    description: dict[str, str] = {}

    def localized(self, table: dict[str, str], locale: str) -> str:
        return table.get(locale) or table.get("en") or next(iter(table.values()), "")


class ApplicationConfig(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    id: str
    name: str = ""
    events: list[EventDefinitionConfig] = []

    def event(self, definition_id: str) -> EventDefinitionConfig | None:
        return _event_index(self).get(definition_id)


class Config(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    applications: list[ApplicationConfig] = []

    def application(self, app_id: str) -> ApplicationConfig | None:
        for app in self.applications:
            if app.id == app_id:
                return app
        return None


# Keyed by id(app); the entry keeps the app itself, so an id reused by a newer object after
# garbage collection is recognised as a different application.
_EVENT_INDEXES: dict[int, tuple[ApplicationConfig, dict[str, EventDefinitionConfig]]] = {}


def _event_index(app: ApplicationConfig) -> dict[str, EventDefinitionConfig]:
    entry = _EVENT_INDEXES.get(id(app))
    if entry is None or entry[0] is not app:
        entry = (app, {event.id: event for event in app.events})
        _EVENT_INDEXES[id(app)] = entry
    return entry[1]


def _check(config: Config) -> list[str]:
    problems: list[str] = []
    seen_apps: set[str] = set()
    for a, app in enumerate(config.applications):
        where = f"applications[{a}]"
        if not _ID_RE.match(app.id):
            problems.append(f"{where}.id: {app.id!r} must be 1-128 of A-Z a-z 0-9 _ . -")
        if app.id in seen_apps:
            problems.append(f"{where}.id: duplicate application {app.id!r}")
        seen_apps.add(app.id)
        seen_events: set[str] = set()
        for e, event in enumerate(app.events):
            at = f"{where}.events[{e}]"
            if not _ID_RE.match(event.id):
                problems.append(f"{at}.id: {event.id!r} must be 1-128 of A-Z a-z 0-9 _ . -")
            if event.id in seen_events:
                problems.append(f"{at}.id: duplicate event {event.id!r}")
            seen_events.add(event.id)
            problems += _check_event(event, at)
    return problems


def _drop_unknown_keys(raw: Any, typ: type[msgspec.Struct], where: str, problems: list[str]) -> Any:
    """`raw` without the keys `typ` does not know, each one reported with its path."""
    if not isinstance(raw, dict):
        return raw
    fields = {f.encode_name: f.type for f in msgspec.structs.fields(typ)}
    cleaned: dict[str, Any] = {}
    for key, value in raw.items():
        at = f"{where}.{key}" if where else key
        if key not in fields:
            problems.append(f"{at}: unknown key")
            continue
        args = typing.get_args(fields[key])
        item = args[0] if typing.get_origin(fields[key]) is list and args else None
        if isinstance(item, type) and issubclass(item, msgspec.Struct) and isinstance(value, list):
            value = [
                _drop_unknown_keys(element, item, f"{at}[{i}]", problems)
                for i, element in enumerate(value)
            ]
        cleaned[key] = value
    return cleaned


def _check_event(event: EventDefinitionConfig, at: str) -> list[str]:
    """Problems of one event definition (docs/spec.md §7): every text a player may see must exist in
    English (the fallback of es and hi) and be non-empty; images are absolute http(s) URLs."""
    problems: list[str] = []
    url = event.image_url
    if url is not None and (
        not url.startswith(("https://", "http://")) or len(url) <= len("https://") or " " in url
    ):
        problems.append(f"{at}.image_url: must be an http(s) URL")
    for field in ("display_name", "description"):
        table: dict[str, str] = getattr(event, field)
        if "en" not in table and (field == "display_name" or table):
            problems.append(f"{at}.{field}: needs at least an 'en' text")
        for lang, text in table.items():
            if lang not in LOCALES:
                problems.append(f"{at}.{field}.{lang}: language must be one of {LOCALES}")
            elif not text.strip():
                problems.append(f"{at}.{field}.{lang}: must not be empty")
    return problems


def load_config(path: Path | None = None) -> Config:
    path = path or DEFAULT_CONFIG
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(path, [f"not valid TOML: {exc}"]) from None
    # Unknown keys are collected (and dropped) first, so every one of them is named even
    # though msgspec stops at the first error it meets.
    problems: list[str] = []
    cleaned = _drop_unknown_keys(raw, Config, "", problems)
    try:
        config = msgspec.convert(cleaned, Config)
    except msgspec.ValidationError as exc:
        message = str(exc)
        detail, _, where = message.partition(" - at `$")
        key = where.rstrip("`").lstrip(".") or "(top level)"
        raise ConfigError(path, [*problems, f"{key}: {detail}"]) from None
    problems += _check(config)
    if problems:
        raise ConfigError(path, problems)
    return config
