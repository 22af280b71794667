"""The one wall clock (docs/design.md "Time is an argument"): the shell reads it once per call
and passes `now` down; the pure core never reads it, so every time rule is tested with `now`
passed in."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Milliseconds since the epoch, as every stored time and GPGS `*Millis` field counts them."""
    return time.time_ns() // 1_000_000


def now_s() -> int:
    """Whole seconds since the epoch, as JWT `iat`/`exp` and TURN credentials count them."""
    return time.time_ns() // 1_000_000_000
