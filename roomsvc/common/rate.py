"""The one rate rule: a token bucket with time as an argument. Pure: no I/O, no clock.

Used per connection for requests (docs/spec.md §6 limits) and for in-room messages (docs/messages.md
"Rate").
"""

from __future__ import annotations


class TokenBucket:
    """`rate` per second, bursts of twice that; time is an argument (seconds, monotonic).

    A refused take still spends a token, so the bucket goes into debt; a sender another burst
    deep in debt is `abusive` (its socket is closed with 1008)."""

    __slots__ = ("_burst", "_rate", "_refilled", "_tokens")

    def __init__(self, rate: float, now: float) -> None:
        self._rate = rate
        self._burst = 2.0 * rate
        self._tokens = self._burst
        self._refilled = now

    def take(self, now: float) -> bool:
        self._tokens = min(self._burst, self._tokens + (now - self._refilled) * self._rate)
        self._refilled = now
        self._tokens -= 1.0
        return self._tokens >= 0.0

    @property
    def abusive(self) -> bool:
        return self._tokens < -self._burst
