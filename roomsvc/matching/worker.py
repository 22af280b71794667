"""A matcher process without a web server: `python -m roomsvc.matching.worker [--lease-ms N]`.

Production runs the matcher inside every web process (roomsvc/matching/duty.py); this entry
point runs the very same rounds against `REDIS_URL` on its own, so the crash test can kill
matchers with SIGKILL (docs/spec.md §12 item 3) and the benchmark can count processes.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys

from roomsvc.common import logs
from roomsvc.matching.loop import run_forever
from roomsvc.matching.pools import LEASE_MS, PoolStore
from roomsvc.matching.rounds import Matcher
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore
from roomsvc.settings import Settings, SettingsError
from roomsvc.store.connection import connect
from roomsvc.store.link import close_link


async def serve(settings: Settings, lease_ms: int, owner: str | None) -> None:
    store = await connect(settings.redis_url or "")
    limits = Limits.of(settings)
    room_store = RoomStore(store, limits, settings.tombstone_seconds * 1000)
    matcher = Matcher(
        room_store,
        PoolStore(store, owner=owner, lease_ms=lease_ms),
        fill_window_ms=settings.fill_window_seconds * 1000,
    )
    print("matcher ready", flush=True)
    try:
        await run_forever(matcher)
    finally:
        close_link(store)
        await store.aclose()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m roomsvc.matching.worker")
    parser.add_argument("--lease-ms", type=int, default=LEASE_MS, help="match record lease")
    parser.add_argument("--owner", default=None, help="name on this process's match records")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        print(f"settings: {exc}", file=sys.stderr)
        return 2
    if settings.redis_url is None:
        print("settings: REDIS_URL is required", file=sys.stderr)
        return 2
    logs.configure(settings.log_level)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(settings, args.lease_ms, args.owner))
    return 0


if __name__ == "__main__":
    sys.exit(main())
