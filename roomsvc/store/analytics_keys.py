"""Redis key formats of analytics (SPEC §8, §10). Kept apart from the rooms' keys.py.

Hash tags: `{analytics:<app>}` holds an application's stream and its batch markers, so the
append script (lua/analytics_append.lua) touches one Cluster slot. `analytics:apps` (the set of
applications that have a stream, read by `roomsvc analytics export`) lives in a slot of its
own: it is added to before the first append (an index is written before what it points to,
DESIGN "indexes as hints"), so an export never misses a stream.

App ids come from verified tokens and never hold `{`, `}`, `:` or spaces (auth.py); caller
keys are `p:<playerId>` or `a:<sessionId>`, and a BatchId is the key's last part.
"""

from __future__ import annotations

APPS = "analytics:apps"


def stream(app_id: str) -> str:
    return f"{{analytics:{app_id}}}:stream"


def batch_marker(app_id: str, user_key: str, batch_id: str) -> str:
    return f"{{analytics:{app_id}}}:batch:{user_key}:{batch_id}"
