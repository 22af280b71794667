"""`maxResults` for every list method (docs/spec.md §3), whatever transport carried it: REST sends a
query string, JSON-RPC a number or a string. Out of range or not a whole number is a 400
naming the parameter."""

from __future__ import annotations

from roomsvc.common.errors import N_, InvalidArgument


def page_size(raw: int | str | None, *, high: int, default: int, low: int = 1) -> int:
    if raw is None or raw == "":
        return default
    try:
        value = int(raw) if not isinstance(raw, bool | float) else low - 1
    except (TypeError, ValueError):
        value = low - 1
    if not low <= value <= high:
        raise InvalidArgument(
            N_("{field} must be between {low} and {high}."), field="maxResults", low=low, high=high
        )
    return value
