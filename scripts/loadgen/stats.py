"""What a run counts: latencies by operation, errors by kind, games by kind, pushes."""

from __future__ import annotations

import collections

OPS = ("connect", "create", "join", "reportStatus", "matched", "push", "send", "message",
       "record", "presence", "leave")  # fmt: skip
KINDS = ("invite", "auto", "drop")


class Failure(Exception):
    """Something a healthy server never causes; counted under `kind`."""

    def __init__(self, kind: str, detail: str = "") -> None:
        super().__init__(f"{kind}: {detail}" if detail else kind)
        self.kind = kind


class Stats:
    def __init__(self) -> None:
        self.lat: dict[str, list[float]] = {op: [] for op in OPS}
        self.errors: collections.Counter[str] = collections.Counter()
        self.samples: list[str] = []
        self.games: collections.Counter[str] = collections.Counter()
        self.shed: collections.Counter[str] = collections.Counter()  # refused: 503 / 1013
        # answered "outcome unknown" (or a read "unavailable"): read back or sent again
        self.unknown: collections.Counter[str] = collections.Counter()
        self.pushes = 0
        self.requests = 0
        self.withdrawn = 0
        self.sent_at: dict[tuple[str, int], float] = {}  # (room, version) -> request sent
        self.arrivals: list[tuple[str, int, float]] = []  # pushes: (room, version, received)

    def error(self, failure: Failure) -> None:
        self.errors[failure.kind] += 1
        if self.errors[failure.kind] <= 50:  # a sample of each kind
            self.samples.append(str(failure)[:600])

    def push_latencies(self) -> list[float]:
        sent = self.sent_at
        return [at - sent[(r, v)] for r, v, at in self.arrivals if (r, v) in sent]
