"""Prometheus metrics (docs/spec.md §10). Features declare theirs here so names stay in one place.

With several workers (`roomsvc serve --workers N`), `serve` points PROMETHEUS_MULTIPROC_DIR at a
fresh directory before the workers start, and `/metrics` aggregates every worker's files, so
the figures are those of the whole service, not of whichever worker answered.
"""

from __future__ import annotations

import collections
import gc
import os
import time

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)

REQUEST_LATENCY = Histogram(
    "roomsvc_request_seconds",
    "REST request latency by route",
    ["method", "route", "code"],
    buckets=_LATENCY_BUCKETS,
)
STORE_ERRORS = Counter("roomsvc_store_errors_total", "Store calls that failed", ["kind"])
# Admission control (call_guard.py): the work each process has in flight, and what it refused.
CALLS_IN_FLIGHT = Gauge(
    "roomsvc_calls_in_flight", "REST and JSON-RPC calls and socket handshakes being served",
    multiprocess_mode="livesum",
)  # fmt: skip
CALLS_SHED = Counter(
    "roomsvc_calls_shed_total", "Calls and sockets refused at once (503 / 1013)", ["transport"]
)
LOOP_LAG = Gauge(
    "roomsvc_event_loop_lag_seconds", "How late the event loop ran lately",
    multiprocess_mode="livemax",
)  # fmt: skip
STORE_READY = Gauge(
    "roomsvc_store_ready", "1 while the readiness probe's last ping answered in time",
    multiprocess_mode="livemin",
)  # fmt: skip
WS_CONNECTIONS = Gauge(
    "roomsvc_websocket_connections", "Open realtime connections", multiprocess_mode="livesum"
)
PUSH_LATENCY = Histogram(
    "roomsvc_push_seconds", "Room change committed -> frame written", buckets=_LATENCY_BUCKETS
)
# Rooms by status: counting live rooms per status would need a scan of every room (and live
# rooms also expire by TTL, so a stored tally drifts); each process instead counts the rooms
# that *enter* each status, which sums exactly across workers and hosts (docs/production.md).
ROOM_TRANSITIONS = Counter(
    "roomsvc_room_transitions_total", "Rooms entering each status (creation included)", ["status"]
)
# Sampled from the store when /metrics is scraped (roomsvc/http/scrape.py); the same figure
# whichever worker answers, so the most recent sample wins.
POOL_SIZE = Gauge(
    "roomsvc_pool_tickets", "Auto-match tickets waiting (sampled)", multiprocess_mode="mostrecent"
)
MATCH_WAIT = Gauge(
    "roomsvc_match_wait_seconds",
    "Recent waits until matched, over every pool (sampled)",
    ["quantile"],
    multiprocess_mode="mostrecent",
)
# In-room messages (docs/messages.md).
MESSAGES_SENT = Counter("roomsvc_messages_sent_total", "In-room messages and signals accepted",
                        ["kind"])  # fmt: skip
MESSAGES_DELIVERED = Counter("roomsvc_messages_delivered_total",
                             "In-room messages written to a recipient's socket")  # fmt: skip
MESSAGES_DROPPED = Counter("roomsvc_messages_dropped_total",
                           "Unreliable messages dropped (rate limit, slow recipient)",
                           ["reason"])  # fmt: skip
MESSAGES_LOST = Counter(
    "roomsvc_messages_lost_total",
    "Reliable messages a recipient missed: the backlog no longer had them",
)
MESSAGE_LATENCY = Histogram("roomsvc_message_seconds", "Message accepted -> written, this process",
                            buckets=_LATENCY_BUCKETS)  # fmt: skip
# reportStatus diagnostics: how often peer-to-peer fails and the relay carries the game.
_RTC_BUCKETS = (10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000)
P2P_SETUP = Histogram("roomsvc_p2p_setup_milliseconds",
                      "Peer-to-peer connection setup latency reported by clients",
                      buckets=_RTC_BUCKETS)  # fmt: skip
P2P_ROUNDTRIP = Histogram("roomsvc_p2p_roundtrip_milliseconds",
                          "Unreliable round-trip latency reported by clients",
                          buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))  # fmt: skip
P2P_FAILURES = Counter("roomsvc_p2p_failures_total", "Peer-to-peer failures reported by clients",
                       ["error"])  # fmt: skip
EVENTS_RECORDED = Counter("roomsvc_events_updates_total", "events.record updates applied")
ANALYTICS_ITEMS = Counter("roomsvc_analytics_items_total", "Analytics items ingested")

GC_PAUSE = Histogram(
    "roomsvc_gc_pause_seconds",
    "Cyclic garbage collector pauses by generation: every connection waits behind one",
    ["generation"],
    buckets=_LATENCY_BUCKETS,
)
_gc_started: list[float] = []
_GC_PAUSES = {generation: GC_PAUSE.labels(str(generation)) for generation in (0, 1, 2)}
# A collection can start inside any metric call, which holds prometheus-client's lock (one lock
# for every value in multiprocess mode, and not reentrant): the callback only notes the pause,
# and `record_gc_pauses` observes them from the event loop. Bounded, should nobody record them.
_gc_pauses: collections.deque[tuple[int, float]] = collections.deque(maxlen=4096)


def _on_gc(phase: str, info: dict[str, int]) -> None:
    if phase == "start":
        _gc_started[:] = [time.perf_counter()]
    elif _gc_started:
        _gc_pauses.append((info.get("generation", 2), time.perf_counter() - _gc_started.pop()))


def record_gc_pauses() -> None:
    """Observe the pauses noted since the last call (the loop watch calls it every tick)."""
    while _gc_pauses:
        generation, seconds = _gc_pauses.popleft()
        _GC_PAUSES.get(generation, _GC_PAUSES[2]).observe(seconds)


def watch_gc() -> None:
    """Time every collection into GC_PAUSE (once per process)."""
    if _on_gc not in gc.callbacks:
        gc.callbacks.append(_on_gc)


def render() -> bytes:
    record_gc_pauses()
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
        return generate_latest(registry)
    return generate_latest()


CONTENT_TYPE = CONTENT_TYPE_LATEST  # of what render() returns
