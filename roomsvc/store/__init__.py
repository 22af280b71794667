"""Storage: every key format (keys.py), connections (connection.py), the embedded server
(embedded.py), Lua scripts (lua/*.lua, loaded once by scripts.py), and one module per feature
that turns the pure core's transitions into atomic Redis operations."""
