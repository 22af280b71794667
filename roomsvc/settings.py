"""Typed settings, read once from the environment (docs/spec.md §1).

The variable names are a contract with operators' deployment files. Every value is parsed and
validated up front; `Settings.from_env` collects *every* problem before raising, so
`roomsvc config check` and a failed start-up name all the bad variables at once.
Unknown `ROOMSVC_*` variables are errors too: a typo must not silently fall back to a default.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from roomsvc.auth.keys import load_public_keys

DEV_JWT_SECRET = "roomsvc-dev-secret-do-not-use-in-production"


class SettingsError(Exception):
    """One or more environment variables are missing, malformed or unknown."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


def _int_in(lo: int, hi: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if not lo <= value <= hi:
            raise ValueError(f"must be between {lo} and {hi}, got {value}")
        return value

    return parse


def _redis_url(raw: str) -> str:
    schemes = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")
    if not raw.startswith(schemes):
        raise ValueError(f"must start with one of {', '.join(schemes)}")
    return raw


def _origins(raw: str) -> tuple[str, ...]:
    origins = tuple(o.strip().rstrip("/") for o in raw.split(",") if o.strip())
    for origin in origins:
        if origin != "*" and not origin.startswith(("http://", "https://")):
            raise ValueError(f"origin {origin!r} must start with http:// or https://")
    return origins


def _key_files(raw: str) -> tuple[Path, ...]:
    paths = tuple(Path(p.strip()) for p in raw.replace(os.pathsep, ",").split(",") if p.strip())
    for path in paths:
        if not path.is_file():
            raise ValueError(f"no such file: {path}")
        try:
            load_public_keys((path,))  # a bad key must stop start-up here, not in a worker
        except (ValueError, TypeError, OSError) as exc:
            reason = str(exc).split(".")[0] if isinstance(exc, ValueError) else type(exc).__name__
            raise ValueError(
                f"{path} is not a PEM public key for RS256, ES256 (P-256) or EdDSA ({reason})"
            ) from None
    return paths


def _nonempty(raw: str) -> str:
    if not raw.strip():
        raise ValueError("must not be empty")
    return raw


def _uris(*schemes: str) -> Callable[[str], tuple[str, ...]]:
    def parse(raw: str) -> tuple[str, ...]:
        uris = tuple(u.strip() for u in raw.split(",") if u.strip())
        for uri in uris:
            if not uri.startswith(schemes) or len(uri) <= uri.index(":") + 1:
                raise ValueError(f"{uri!r} must start with {' or '.join(schemes)} and name a host")
        return uris

    return parse


def _log_level(raw: str) -> str:
    level = raw.strip().upper()
    if level not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR")
    return level


@dataclasses.dataclass(frozen=True, slots=True)
class Settings:
    redis_url: str | None = None
    jwt_secret: str = DEV_JWT_SECRET
    jwt_public_keys: tuple[Path, ...] = ()
    max_players: int = 8
    invite_timeout_seconds: int = 300
    automatch_timeout_seconds: int = 60
    fill_window_seconds: int = 0
    presence_grace_seconds: int = 20
    tombstone_seconds: int = 3600
    allowed_origins: tuple[str, ...] = ()
    events_rate_per_minute: int = 30
    events_max_updates: int = 200
    analytics_max_items: int = 1000
    analytics_max_body_bytes: int = 1 << 20
    analytics_stream_maxlen: int = 1_000_000
    max_body_bytes: int = 1 << 20
    data_dir: Path = Path(".roomsvc")
    config_path: Path | None = None
    log_level: str = "INFO"
    # realtime channel (docs/spec.md §6 limits)
    ws_max_connections: int = 20_000
    ws_max_connections_per_player: int = 8
    ws_rate_per_second: int = 20
    ws_send_timeout_seconds: int = 10
    ws_ping_seconds: int = 20
    # in-room messages (docs/messages.md)
    messages_per_second: int = 120
    message_backlog: int = 256
    stun_uris: tuple[str, ...] = ()
    turn_uris: tuple[str, ...] = ()
    turn_secret: str | None = None
    turn_ttl_seconds: int = 3600
    # failing fast (docs/spec.md §12 items 16-17; docs/store.md)
    store_deadline_ms: int = 1000
    max_calls_in_flight: int = 256

    @property
    def uses_dev_secret(self) -> bool:
        return self.jwt_secret == DEV_JWT_SECRET and not self.jwt_public_keys

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        problems: list[str] = []
        for var, (field, parse) in _VARIABLES.items():
            raw = env.get(var)
            if raw is None:
                continue
            try:
                values[field] = parse(raw)
            except ValueError as exc:
                problems.append(f"{var}: {exc}")
        unknown = sorted(v for v in env if v.startswith("ROOMSVC_") and v not in _VARIABLES)
        problems += [f"{v}: unknown setting (known: see README, Configuration)" for v in unknown]
        if values.get("turn_uris") and not values.get("turn_secret"):
            problems.append("ROOMSVC_TURN_SECRET: required when ROOMSVC_TURN_URIS is set "
                            "(the TURN credentials are signed with it)")  # fmt: skip
        if problems:
            raise SettingsError(problems)
        return cls(**values)


# variable -> (field, parser). Order is the order problems are reported in.
_VARIABLES: dict[str, tuple[str, Callable[[str], Any]]] = {
    "REDIS_URL": ("redis_url", _redis_url),
    "ROOMSVC_JWT_SECRET": ("jwt_secret", _nonempty),
    "ROOMSVC_JWT_PUBLIC_KEYS": ("jwt_public_keys", _key_files),
    "ROOMSVC_MAX_PLAYERS": ("max_players", _int_in(2, 256)),
    "ROOMSVC_INVITE_TIMEOUT_SECONDS": ("invite_timeout_seconds", _int_in(1, 86_400 * 30)),
    "ROOMSVC_AUTOMATCH_TIMEOUT_SECONDS": ("automatch_timeout_seconds", _int_in(1, 86_400)),
    "ROOMSVC_FILL_WINDOW_SECONDS": ("fill_window_seconds", _int_in(0, 3600)),
    "ROOMSVC_PRESENCE_GRACE_SECONDS": ("presence_grace_seconds", _int_in(1, 3600)),
    "ROOMSVC_TOMBSTONE_SECONDS": ("tombstone_seconds", _int_in(1, 86_400 * 30)),
    "ROOMSVC_ALLOWED_ORIGINS": ("allowed_origins", _origins),
    "ROOMSVC_EVENTS_RATE_PER_MINUTE": ("events_rate_per_minute", _int_in(1, 1_000_000)),
    "ROOMSVC_EVENTS_MAX_UPDATES": ("events_max_updates", _int_in(1, 10_000)),
    "ROOMSVC_ANALYTICS_MAX_ITEMS": ("analytics_max_items", _int_in(1, 1_000_000)),
    "ROOMSVC_ANALYTICS_MAX_BODY_BYTES": ("analytics_max_body_bytes", _int_in(1024, 1 << 30)),
    "ROOMSVC_ANALYTICS_STREAM_MAXLEN": ("analytics_stream_maxlen", _int_in(1, 1 << 40)),
    "ROOMSVC_MAX_BODY_BYTES": ("max_body_bytes", _int_in(1024, 1 << 30)),
    "ROOMSVC_DATA_DIR": ("data_dir", lambda raw: Path(_nonempty(raw))),
    "ROOMSVC_CONFIG": ("config_path", lambda raw: Path(_nonempty(raw))),
    "ROOMSVC_LOG_LEVEL": ("log_level", _log_level),
    "ROOMSVC_WS_MAX_CONNECTIONS": ("ws_max_connections", _int_in(1, 10_000_000)),
    "ROOMSVC_WS_MAX_CONNECTIONS_PER_PLAYER": ("ws_max_connections_per_player", _int_in(1, 1000)),
    "ROOMSVC_WS_RATE_PER_SECOND": ("ws_rate_per_second", _int_in(1, 1_000_000)),
    "ROOMSVC_WS_SEND_TIMEOUT_SECONDS": ("ws_send_timeout_seconds", _int_in(1, 600)),
    "ROOMSVC_WS_PING_SECONDS": ("ws_ping_seconds", _int_in(1, 3600)),
    "ROOMSVC_MESSAGES_PER_SECOND": ("messages_per_second", _int_in(1, 100_000)),
    "ROOMSVC_MESSAGE_BACKLOG": ("message_backlog", _int_in(1, 100_000)),
    "ROOMSVC_STUN_URIS": ("stun_uris", _uris("stun:", "stuns:")),
    "ROOMSVC_TURN_URIS": ("turn_uris", _uris("turn:", "turns:")),
    "ROOMSVC_TURN_SECRET": ("turn_secret", _nonempty),
    "ROOMSVC_TURN_TTL_SECONDS": ("turn_ttl_seconds", _int_in(60, 86_400 * 7)),
    "ROOMSVC_STORE_DEADLINE_MS": ("store_deadline_ms", _int_in(50, 60_000)),
    "ROOMSVC_MAX_CALLS_IN_FLIGHT": ("max_calls_in_flight", _int_in(1, 1_000_000)),
}
