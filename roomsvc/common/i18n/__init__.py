"""Languages (docs/spec.md §9): negotiation, gettext catalogs and number formatting.

Catalogs are standard gettext `.po` files, one per domain (a feature owns its domain:
`core`, `rooms`, `events`, `analytics`), under `locale/<lang>/LC_MESSAGES/`. They are
compiled in memory with Babel when first used, so there is no build step and no stale `.mo`.
English is the source language: its message ids *are* the English text.
"""

from __future__ import annotations

import functools
import io
from pathlib import Path
from typing import Any

import babel
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from babel.numbers import format_decimal
from babel.support import Translations

LOCALES = ("en", "es", "hi")
DEFAULT_LOCALE = "en"
LOCALE_DIR = Path(__file__).with_name("locale")
# CLDR locale used for number formatting: bare `hi` groups as 12,34,567 like hi_IN.
_NUMBER_LOCALES = {"en": "en_US", "es": "es_ES", "hi": "hi_IN"}


def parse_accept_language(header: str) -> list[str]:
    """Language tags of an Accept-Language header, most preferred first (q=0 dropped)."""
    ranked: list[tuple[float, int, str]] = []
    for index, part in enumerate(header.split(",")):
        tag, _, params = part.strip().partition(";")
        tag = tag.strip()
        if not tag or tag == "*":
            continue
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality > 0:
            ranked.append((-quality, index, tag))
    return [tag for _, _, tag in sorted(ranked)]


@functools.lru_cache(maxsize=1024)
def _negotiate_tags(tags: tuple[str, ...]) -> str:
    for tag in tags:
        # babel accepts both separators; BCP 47 uses '-', POSIX locales '_'.
        found = babel.negotiate_locale([tag.replace("_", "-")], LOCALES, sep="-")
        if found:
            # babel returns the tag as the client spelled it ("ES", "Hi"): ours are lowercase.
            return found.lower()
    return DEFAULT_LOCALE


def negotiate(language: str | None, accept_language: str | None = None) -> str:
    """Pick en, es or hi from `language` (BCP 47) or, without it, Accept-Language."""
    if language:
        return _negotiate_tags((language.strip(),))
    if accept_language:
        return _negotiate_tags(tuple(parse_accept_language(accept_language)[:8]))
    return DEFAULT_LOCALE


def catalog_files(locale: str) -> list[Path]:
    return sorted((LOCALE_DIR / locale / "LC_MESSAGES").glob("*.po"))


@functools.cache
def translations(locale: str) -> Translations:
    merged = Translations()
    for po_path in catalog_files(locale):
        with po_path.open("rb") as po_file:
            catalog = read_po(po_file, locale=locale, domain=po_path.stem)
        buffer = io.BytesIO()
        write_mo(buffer, catalog)
        buffer.seek(0)
        merged.merge(Translations(buffer, domain="roomsvc"))
    return merged


def gettext(locale: str, msgid: str, /, **params: Any) -> str:
    """The message in `locale` (English when untranslated), with `{name}` fields filled."""
    text = msgid if locale == DEFAULT_LOCALE else translations(locale).gettext(msgid)
    if not params:
        return text
    try:
        return text.format(**params)
    except (KeyError, IndexError, ValueError):
        # A broken translation must not turn a clear error into a 500.
        return msgid.format(**params)


@functools.cache
def _number_locale(name: str) -> babel.Locale:
    # Parsed once: given a locale name, Babel parses it and reloads its data on every call,
    # which cost more than half of format_number (77 us -> 33 us per number, docs/spec.md §11).
    return babel.Locale.parse(name)


def format_number(value: int, locale: str) -> str:
    """`1,234,567` (en), `1.234.567` (es), `12,34,567` (hi)."""
    return format_decimal(
        value, locale=_number_locale(_NUMBER_LOCALES.get(locale, "en_US")), group_separator=True
    )
