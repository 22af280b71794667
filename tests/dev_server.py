"""A real `roomsvc serve` with the public dev secret, as a person runs the demo: the demo's
token endpoint exists and the server's own origin may open the socket (README, demo)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from tests.support import ServerProcess


@contextlib.contextmanager
def dev_server(redis_url: str, grace_seconds: int = 20,
               env: dict[str, str] | None = None) -> Iterator[ServerProcess]:  # fmt: skip
    server = ServerProcess(redis_url, env={"ROOMSVC_PRESENCE_GRACE_SECONDS": str(grace_seconds),
                                           **(env or {})})  # fmt: skip
    server.env.pop("ROOMSVC_JWT_SECRET")  # ServerProcess sets a private one
    server.start()
    try:
        yield server
    finally:
        server.stop()
