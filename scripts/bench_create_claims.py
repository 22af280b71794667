"""A create's requestId claim (rooms/store.py `claim_create_request`, docs/spec.md §4): client
CPU per claim on the command batcher, first claims and retried ones, 100 at a time.

    .venv/bin/python scripts/bench_create_claims.py [--claims 4000] [--rounds 3]

Starts a throwaway valkey-server from the wheel. `bench_join.py` sends no requestId, so this is
where the claim's own cost is seen (docs/performance.md "Fewer round trips per join").
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid

from wsbench_support import start_valkey, stop

from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore
from roomsvc.store.connection import connect
from roomsvc.store.link import close_link

AT_ONCE = 100


async def claims(rooms: RoomStore, requests: list[str], room_id: str) -> float:
    """Client CPU seconds per claim of every request, AT_ONCE concurrent."""
    started = time.process_time()
    for start in range(0, len(requests), AT_ONCE):
        batch = requests[start : start + AT_ONCE]
        await asyncio.gather(*(rooms.claim_create_request("app", "p", r, room_id) for r in batch))
    return (time.process_time() - started) / len(requests)


async def run(url: str, count: int, rounds: int) -> None:
    store = await connect(url)
    try:
        rooms = RoomStore(store, Limits(), 1000)
        for _ in range(rounds):
            requests = [uuid.uuid4().hex for _ in range(count)]
            first = await claims(rooms, requests, "room")
            again = await claims(rooms, requests, "other")
            print(f"bench_create_claims: first claim {first * 1e6:.1f} us CPU, "
                  f"retried claim {again * 1e6:.1f} us CPU ({count} each)")  # fmt: skip
    finally:
        close_link(store)
        await store.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--claims", type=int, default=4000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    valkey, url = start_valkey(tempfile.mkdtemp(prefix="roomsvc-claims-"))
    try:
        asyncio.run(run(url, args.claims, args.rounds))
    finally:
        stop([(valkey, 5.0)], "bench_create_claims")


if __name__ == "__main__":
    main()
