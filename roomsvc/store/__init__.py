"""Storage shared by the features: every key format (keys.py), connections (connection.py), the
embedded server (embedded.py), the one batcher (batching.py), the one claim/lease/retire module
(claims.py) and the Lua scripts (lua/*.lua, read once by scripts.py). Each feature's store module
(rooms/store.py, matching/pools.py, ...) turns its pure transitions into atomic scripts."""
