"""Settings from the environment (docs/spec.md §1): typed, validated, every problem named."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.settings import DEV_JWT_SECRET, Settings, SettingsError


def test_defaults_match_the_spec_table() -> None:
    """With nothing set, the docs/spec.md §1 defaults apply and the dev secret is flagged."""
    s = Settings.from_env({})
    assert s.redis_url is None
    assert (s.max_players, s.invite_timeout_seconds, s.automatch_timeout_seconds) == (8, 300, 60)
    assert (s.fill_window_seconds, s.presence_grace_seconds, s.tombstone_seconds) == (0, 20, 3600)
    assert s.allowed_origins == () and s.events_rate_per_minute == 30
    assert s.jwt_secret == DEV_JWT_SECRET and s.uses_dev_secret
    assert s.data_dir == Path(".roomsvc")


def test_values_are_parsed_to_types() -> None:
    """Numbers, origin lists and URLs come out typed."""
    s = Settings.from_env(
        {
            "REDIS_URL": "redis://10.0.0.1:6379/0",
            "ROOMSVC_MAX_PLAYERS": " 4 ",
            "ROOMSVC_ALLOWED_ORIGINS": "https://a.example, https://b.example/",
            "ROOMSVC_JWT_SECRET": "s3cret",
        }
    )
    assert s.redis_url == "redis://10.0.0.1:6379/0"
    assert s.max_players == 4
    assert s.allowed_origins == ("https://a.example", "https://b.example")
    assert not s.uses_dev_secret


def test_every_bad_value_is_named_at_once() -> None:
    """Malformed, out-of-range and unknown variables are all reported together."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env(
            {
                "ROOMSVC_MAX_PLAYERS": "eight",
                "ROOMSVC_PRESENCE_GRACE_SECONDS": "0",
                "REDIS_URL": "http://nope",
                "ROOMSVC_ALLOWED_ORIGINS": "evil.example",
                "ROOMSVC_MAX_PLAYER": "8",
            }
        )
    text = "\n".join(info.value.problems)
    for name in (
        "ROOMSVC_MAX_PLAYERS",
        "ROOMSVC_PRESENCE_GRACE_SECONDS",
        "REDIS_URL",
        "ROOMSVC_ALLOWED_ORIGINS",
        "ROOMSVC_MAX_PLAYER:",
    ):
        assert name in text
    assert len(info.value.problems) == 5


def test_public_key_files_must_exist(tmp_path: Path) -> None:
    """ROOMSVC_JWT_PUBLIC_KEYS names files; a missing one is an error naming the variable."""
    with pytest.raises(SettingsError, match="ROOMSVC_JWT_PUBLIC_KEYS: no such file"):
        Settings.from_env({"ROOMSVC_JWT_PUBLIC_KEYS": str(tmp_path / "missing.pem")})
