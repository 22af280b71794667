"""Languages (docs/spec.md §9): every message id has es and hi translations, negotiation,
numbers."""

from __future__ import annotations

from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.pofile import read_po

import roomsvc
from roomsvc.common import i18n

PACKAGE = Path(roomsvc.__file__).resolve().parent


def _message_ids() -> dict[str, str]:
    """Every N_() message id of the package -> where it is first used."""
    found: dict[str, str] = {}
    for filename, lineno, message, _comments, _context in extract_from_dir(
        str(PACKAGE), method_map=[("**.py", "python")], keywords={"N_": None}
    ):
        if isinstance(message, str) and message:
            found.setdefault(message, f"{filename}:{lineno}")
    return found


def _translations(locale: str) -> dict[str, str]:
    """msgid -> msgstr over every domain file of `locale`."""
    merged: dict[str, str] = {}
    for path in i18n.catalog_files(locale):
        with path.open("rb") as po_file:
            catalog = read_po(po_file, locale=locale)
        for message in catalog:
            text = message.string
            if (
                message.id
                and isinstance(message.id, str)
                and isinstance(text, str)
                and text.strip()
            ):
                merged.setdefault(message.id, text)
    return merged


def test_extraction_finds_the_message_ids() -> None:
    """The extractor sees N_() calls (guards against a silently empty check below)."""
    ids = _message_ids()
    assert "Internal error." in ids
    assert "Field {field} is required." in ids


@pytest.mark.parametrize("locale", ["es", "hi"])
def test_every_message_id_is_translated(locale: str) -> None:
    """Each N_() message id has a non-empty translation in es and hi (in any domain file)."""
    translated = _translations(locale)
    missing = {m: where for m, where in _message_ids().items() if m not in translated}
    assert missing == {}, f"untranslated in {locale}: {missing}"


@pytest.mark.parametrize("locale", ["es", "hi"])
def test_translations_keep_the_placeholders(locale: str) -> None:
    """A translation uses exactly the {fields} of its message id, so formatting cannot fail."""
    import string

    def fields(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    bad = {m: s for m, s in _translations(locale).items() if fields(m) != fields(s)}
    assert bad == {}


@pytest.mark.parametrize(
    ("language", "accept", "expected"),
    [
        ("es", None, "es"),
        ("es-419", None, "es"),
        ("es_MX", None, "es"),
        ("hi-IN", None, "hi"),
        ("HI", None, "hi"),
        ("fr", "es", "en"),  # an explicit language wins, falling back to en
        (None, "fr-CA, hi;q=0.5, es;q=0.8", "es"),
        (None, "hi-IN,hi;q=0.9,en;q=0.1", "hi"),
        (None, "es;q=0, hi", "hi"),
        (None, "*", "en"),
        (None, "de, fr", "en"),
        (None, None, "en"),
        ("", "hi", "hi"),
    ],
)
def test_negotiation(language: str | None, accept: str | None, expected: str) -> None:
    """`language` (BCP 47), else Accept-Language by quality, picks en, es or hi; else en."""
    assert i18n.negotiate(language, accept) == expected


@pytest.mark.parametrize(
    ("value", "locale", "expected"),
    [
        (1_234_567, "en", "1,234,567"),
        (1_234_567, "es", "1.234.567"),
        (1_234_567, "hi", "12,34,567"),
        (0, "hi", "0"),
        (999, "es", "999"),
        (2**63 - 1, "en", "9,223,372,036,854,775,807"),
        (1_234_567, "xx", "1,234,567"),
    ],
)
def test_number_formats(value: int, locale: str, expected: str) -> None:
    """Counters are grouped the way each locale writes numbers (Babel/CLDR)."""
    assert i18n.format_number(value, locale) == expected


def test_messages_render_in_each_language() -> None:
    """A message id renders translated with its fields; English is the id itself."""
    msgid = "Field {field} is required."
    assert i18n.gettext("en", msgid, field="x") == "Field x is required."
    assert i18n.gettext("es", msgid, field="x") == "El campo x es obligatorio."
    assert i18n.gettext("hi", msgid, field="x") == "फ़ील्ड x ज़रूरी है."
