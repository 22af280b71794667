"""Event definitions in the applications file (docs/spec.md §7): validation and `roomsvc config
check`."""

from __future__ import annotations

from pathlib import Path

import pytest

from roomsvc.config import ConfigError, load_config
from tests.support import roomsvc_cli

GOOD = """
[[applications]]
id = "game"
[[applications.events]]
id = "ev_one"
display_name = { en = "One", es = "Uno", hi = "एक" }
"""

BAD = """
[[applications]]
id = "game"
[[applications.events]]
id = "ev_one"
image_url = "ftp://example.com/x.png"
display_name = { es = "Uno" }
description = { en = "  ", fr = "Un" }
[[applications.events]]
id = "ev_one"
display_name = { en = "Dup" }
"""


def test_shipped_config_has_the_demo_definitions() -> None:
    """The shipped roomsvc.toml defines ev_kills, ev_matches and the HIDDEN ev_secret for demo."""
    app = load_config().application("demo")
    assert app is not None
    assert [e.id for e in app.events] == ["ev_kills", "ev_matches", "ev_secret"]
    secret = app.event("ev_secret")
    assert secret is not None and secret.visibility == "HIDDEN"


def test_defaults_of_a_minimal_definition(tmp_path: Path) -> None:
    """Visibility defaults to REVEALED, no image, and an empty description."""
    path = tmp_path / "apps.toml"
    path.write_text(GOOD, encoding="utf-8")
    event = load_config(path).applications[0].events[0]
    assert (event.visibility, event.image_url, event.description) == ("REVEALED", None, {})
    assert event.localized(event.display_name, "hi") == "एक"


def test_every_bad_event_key_is_named(tmp_path: Path) -> None:
    """Bad image URL, missing 'en', empty text, unknown language and duplicate ids all reported."""
    path = tmp_path / "apps.toml"
    path.write_text(BAD, encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    problems = "\n".join(caught.value.problems)
    for key in [
        "applications[0].events[0].image_url",
        "applications[0].events[0].display_name: needs at least an 'en' text",
        "applications[0].events[0].description.en: must not be empty",
        "applications[0].events[0].description.fr",
        "applications[0].events[1].id: duplicate event",
    ]:
        assert key in problems


@pytest.mark.parametrize(
    ("snippet", "key"),
    [
        ('visibility = "SECRET"', "visibility"),
        ("colour = 1", "colour"),
    ],
)
def test_schema_errors_name_the_key(tmp_path: Path, snippet: str, key: str) -> None:
    """A visibility other than REVEALED/HIDDEN, or an unknown key, is named."""
    path = tmp_path / "apps.toml"
    path.write_text(GOOD + snippet + "\n", encoding="utf-8")
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert key in caught.value.problems[0]


def test_config_check_names_bad_event_keys(tmp_path: Path) -> None:
    """`roomsvc config check` exits non-zero and prints each bad event key."""
    path = tmp_path / "apps.toml"
    path.write_text(BAD, encoding="utf-8")
    result = roomsvc_cli("config", "check", env={"ROOMSVC_CONFIG": str(path)})
    assert result.returncode != 0
    assert "applications[0].events[0].image_url" in result.stdout + result.stderr
    good = tmp_path / "good.toml"
    good.write_text(GOOD, encoding="utf-8")
    assert roomsvc_cli("config", "check", env={"ROOMSVC_CONFIG": str(good)}).returncode == 0


def test_event_lookup_is_per_application_object(tmp_path: Path) -> None:
    """Looking up a definition never answers from another (possibly collected) config."""
    path = tmp_path / "apps.toml"
    for name in ("ev_one", "ev_two", "ev_three"):
        path.write_text(GOOD.replace("ev_one", name), encoding="utf-8")
        app = load_config(path).applications[0]
        assert (
            app.event(name) is not None and app.event("ev_one" if name != "ev_one" else "x") is None
        )
