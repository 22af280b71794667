"""The `roomsvc` command (docs/spec.md §1): token, config check, and `serve` failing with one clear
line."""

from __future__ import annotations

import socket
from pathlib import Path

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from roomsvc.auth.tokens import SCOPE_GAMES, SCOPE_GAMES_LITE
from roomsvc.store.embedded import free_port
from tests.support import JWT_SECRET, roomsvc_cli

GOOD_TOML = """
[[applications]]
id = "studio"

[[applications.events]]
id = "ev_wins"
display_name = { en = "Wins", es = "Victorias" }
"""

BAD_TOML = """
colour = "blue"

[[applications]]
id = "bad id"
secret = "nope"

[[applications.events]]
id = "ev_1"
bogus_key = 1
display_name = { fr = "Victoires" }
"""


def assert_one_clear_failure(result, *needles: str) -> None:  # type: ignore[no-untyped-def]
    """Non-zero exit, no traceback, and stderr names what went wrong."""
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "no message on stderr"
    assert all(line.startswith("roomsvc: ") for line in lines), result.stderr
    for needle in needles:
        assert needle in result.stderr, (needle, result.stderr)


# roomsvc token


def test_token_prints_a_verifiable_jwt() -> None:
    """`roomsvc token` prints a JWT signed with ROOMSVC_JWT_SECRET carrying sub/app/name/scope."""
    result = roomsvc_cli(
        "token", "--player", "p1", "--app", "studio", "--name", "Ana",
        "--scope", "games", "--scope", "games_lite",
        env={"ROOMSVC_JWT_SECRET": JWT_SECRET},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    claims = jwt.decode(token, JWT_SECRET, algorithms=["HS256"])
    assert (claims["sub"], claims["app"], claims["name"]) == ("p1", "studio", "Ana")
    assert set(claims["scope"].split()) == {SCOPE_GAMES, SCOPE_GAMES_LITE}
    assert claims["exp"] > claims["iat"]


def test_token_default_scope_is_games() -> None:
    """Without --scope, the token carries the games scope."""
    result = roomsvc_cli(
        "token", "--player", "p1", "--app", "a", env={"ROOMSVC_JWT_SECRET": JWT_SECRET}
    )
    claims = jwt.decode(result.stdout.strip(), JWT_SECRET, algorithms=["HS256"])
    assert claims["scope"] == SCOPE_GAMES
    assert "name" not in claims


def test_token_refuses_bad_settings() -> None:
    """A bad environment stops `roomsvc token` with the variable named."""
    result = roomsvc_cli("token", "--player", "p", "--app", "a", env={"ROOMSVC_JWT_SECRET": " "})
    assert_one_clear_failure(result, "ROOMSVC_JWT_SECRET")


# roomsvc config check


def test_config_check_passes_on_a_good_environment(tmp_path: Path) -> None:
    """A valid environment and config file: exit 0."""
    config = tmp_path / "good.toml"
    config.write_text(GOOD_TOML)
    result = roomsvc_cli(
        "config", "check",
        env={"ROOMSVC_JWT_SECRET": JWT_SECRET, "ROOMSVC_MAX_PLAYERS": "4",
             "REDIS_URL": "redis://127.0.0.1:6379/0", "ROOMSVC_CONFIG": str(config)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "ok" in result.stdout


def test_config_check_passes_with_defaults() -> None:
    """With nothing set, the shipped config and defaults are valid."""
    assert roomsvc_cli("config", "check").returncode == 0


def test_config_check_names_every_bad_variable() -> None:
    """Malformed, out-of-range and unknown variables are all named, exit 1."""
    result = roomsvc_cli(
        "config", "check",
        env={
            "ROOMSVC_MAX_PLAYERS": "many",
            "ROOMSVC_INVITE_TIMEOUT_SECONDS": "-5",
            "REDIS_URL": "mysql://db",
            "ROOMSVC_ALLOWED_ORIGINS": "game.example",
            "ROOMSVC_LOG_LEVEL": "LOUD",
            "ROOMSVC_MAXPLAYERS": "4",
            "ROOMSVC_TYPO": "1",
        },
    )  # fmt: skip
    assert result.returncode == 1
    assert_one_clear_failure(
        result,
        "ROOMSVC_MAX_PLAYERS",
        "ROOMSVC_INVITE_TIMEOUT_SECONDS",
        "REDIS_URL",
        "ROOMSVC_ALLOWED_ORIGINS",
        "ROOMSVC_LOG_LEVEL",
        "ROOMSVC_MAXPLAYERS",
        "ROOMSVC_TYPO",
    )
    assert len(result.stderr.strip().splitlines()) == 7


def test_config_check_names_every_bad_toml_key(tmp_path: Path) -> None:
    """Every bad key of the ROOMSVC_CONFIG file is named with its path, exit 1."""
    config = tmp_path / "bad.toml"
    config.write_text(BAD_TOML)
    result = roomsvc_cli("config", "check", env={"ROOMSVC_CONFIG": str(config)})
    assert result.returncode == 1
    assert_one_clear_failure(
        result,
        str(config),
        "colour",
        "applications[0].secret",
        "applications[0].id",
        "applications[0].events[0].bogus_key",
        "applications[0].events[0].display_name",
    )


def test_config_check_reports_settings_and_toml_together(tmp_path: Path) -> None:
    """A bad variable and a bad config file are reported in one run."""
    config = tmp_path / "broken.toml"
    config.write_text("[[applications]\nid=")
    result = roomsvc_cli(
        "config", "check", env={"ROOMSVC_CONFIG": str(config), "ROOMSVC_MAX_PLAYERS": "1"}
    )
    assert_one_clear_failure(result, "ROOMSVC_MAX_PLAYERS", "not valid TOML")


def test_config_check_names_a_missing_config_file(tmp_path: Path) -> None:
    """ROOMSVC_CONFIG naming no file is reported, not a traceback."""
    result = roomsvc_cli("config", "check", env={"ROOMSVC_CONFIG": str(tmp_path / "none.toml")})
    assert_one_clear_failure(result, "none.toml", "cannot read")


def test_config_check_rejects_key_files_that_are_not_usable_public_keys(tmp_path: Path) -> None:
    """A key file that is not a PEM public key, or a P-384 key, is named by config check."""
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello")
    p384 = tmp_path / "p384.pem"
    p384.write_bytes(
        ec.generate_private_key(ec.SECP384R1())
        .public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    for path in (not_pem, p384):
        result = roomsvc_cli("config", "check", env={"ROOMSVC_JWT_PUBLIC_KEYS": str(path)})
        assert_one_clear_failure(result, "ROOMSVC_JWT_PUBLIC_KEYS", str(path))


# roomsvc serve: start-up failures


def test_serve_with_a_bad_setting_fails_clearly(tmp_path: Path) -> None:
    """A bad env value stops `serve` with one line naming the variable, no traceback."""
    result = roomsvc_cli(
        "serve", "--port", "1", env={"ROOMSVC_PRESENCE_GRACE_SECONDS": "soon"}, cwd=tmp_path
    )
    assert_one_clear_failure(result, "ROOMSVC_PRESENCE_GRACE_SECONDS")
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / ".roomsvc").exists()  # nothing started


def test_serve_with_a_bad_public_key_file_fails_clearly(tmp_path: Path) -> None:
    """A key file that is not a PEM public key stops `serve` before any worker starts."""
    bad = tmp_path / "studio.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nnope\n-----END PUBLIC KEY-----\n")
    result = roomsvc_cli(
        "serve", "--port", str(free_port()), cwd=tmp_path,
        env={"ROOMSVC_JWT_PUBLIC_KEYS": str(bad), "REDIS_URL": "redis://127.0.0.1:1/0"},
    )  # fmt: skip
    assert_one_clear_failure(result, "ROOMSVC_JWT_PUBLIC_KEYS", "studio.pem")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_with_an_unknown_variable_fails_clearly(tmp_path: Path) -> None:
    """A misspelt ROOMSVC_* variable stops `serve` instead of being ignored."""
    result = roomsvc_cli("serve", env={"ROOMSVC_MAX_PLAYER": "4"}, cwd=tmp_path)
    assert_one_clear_failure(result, "ROOMSVC_MAX_PLAYER")


def test_serve_with_a_bad_config_file_fails_clearly(tmp_path: Path) -> None:
    """A bad ROOMSVC_CONFIG stops `serve` with the file and the key named."""
    config = tmp_path / "bad.toml"
    config.write_text(BAD_TOML)
    result = roomsvc_cli("serve", env={"ROOMSVC_CONFIG": str(config)}, cwd=tmp_path)
    assert_one_clear_failure(result, "bad.toml", "colour")


def test_serve_on_a_port_in_use_fails_clearly(tmp_path: Path) -> None:
    """A port already taken gives one clear line naming it and a non-zero exit."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = roomsvc_cli(
            "serve", "--port", str(port), env={"ROOMSVC_DATA_DIR": str(tmp_path / "d")}
        )
    assert_one_clear_failure(result, str(port), "in use")
    assert len(result.stderr.strip().splitlines()) == 1


def test_serve_with_an_unwritable_data_dir_fails_clearly(tmp_path: Path) -> None:
    """A data dir that cannot be created (a file is in the way) is one clear line, exit 1."""
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    for data_dir in (blocker / "store", blocker):
        result = roomsvc_cli("serve", "--port", "0", env={"ROOMSVC_DATA_DIR": str(data_dir)})
        assert_one_clear_failure(result, str(data_dir), "ROOMSVC_DATA_DIR")
        assert len(result.stderr.strip().splitlines()) == 1


def test_serve_rejects_zero_workers() -> None:
    """`--workers 0` is a usage error, not a hang."""
    result = roomsvc_cli("serve", "--workers", "0")
    assert_one_clear_failure(result, "--workers")
