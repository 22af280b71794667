"""The limits `bench_rooms.py` reports beside the REST figure (docs/spec.md §11): the HTTP floor
(`http_floor_app.py` under uvicorn with `roomsvc serve`'s flags) and the bare compare-and-set
script driven from this process, one call at a time or through the command batcher."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import msgspec
from rooms_players import INVITEES, Tally

from roomsvc.rooms import rules as rooms
from roomsvc.rooms.store import LIVE_ROOM_TTL_MS
from roomsvc.store import keys
from roomsvc.store.batching import CommandBatcher
from roomsvc.store.scripts import register, script

ROOT = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def floor_server() -> Iterator[tuple[str, int]]:
    """`http_floor_app.py` under uvicorn with `roomsvc serve`'s HTTP flags."""
    import subprocess

    from roomsvc.store.embedded import free_port
    from tests.support import wait_until

    port = free_port()
    argv = [sys.executable, "-m", "uvicorn", "--app-dir", str(ROOT / "scripts"),
            "http_floor_app:app", "--http", "httptools", "--loop", "uvloop",
            "--no-access-log", "--log-level", "warning", "--port", str(port)]  # fmt: skip
    process = subprocess.Popen(argv)
    try:
        wait_until(lambda: _listening(port))
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


def _listening(port: int) -> bool:
    import socket

    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
        return True
    return False


def sample_room(app: str, room_id: str) -> rooms.RoomDoc:
    """An 8-player room after everyone joined, as the server stores it."""
    ids = (f"p_{i:012x}" for i in itertools.count())
    doc = rooms.create(
        room_id=room_id,
        app_id=app,
        player_id="bench-creator",
        name="Creator",
        avatar="https://example.com/a.png",
        invited=[f"bench-invitee-{k}" for k in range(INVITEES)],
        criteria=None,
        variant=None,
        capabilities=[],
        xmpp_address=None,
        ids=ids,
        now_ms=1_700_000_000_000,
        limits=rooms.Limits(),
    )
    for k in range(INVITEES):
        doc = rooms.join(
            doc,
            f"bench-invitee-{k}",
            capabilities=[],
            xmpp_address=None,
            now_ms=1_700_000_000_000 + k,
            limits=rooms.Limits(),
        )
    return doc


async def cas_phase(redis_url: str, duration: float, concurrency: int, *, batched: bool) -> Tally:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(redis_url, max_connections=concurrency + 4)
    cas = (
        functools.partial(CommandBatcher(client).call, script("room_cas"))
        if batched
        else register(client, "room_cas")
    )
    app = "bench-cas-" + uuid.uuid4().hex[:8]
    warmup = min(2.0, duration / 5)
    now = time.perf_counter()
    tally = Tally(now + warmup, now + warmup + duration)
    clock = time.perf_counter

    async def driver(n: int) -> None:
        room_id = f"cas{n}"
        doc = sample_room(app, room_id)
        encoded = msgspec.msgpack.encode(doc)
        channels = [keys.player_channel(app, p.player_id) for p in doc.participants]
        room_keys = [keys.room(app, room_id), keys.room_applied(app, room_id)]
        version = 0
        while clock() < tally.end:
            began = clock()
            reply = await cas(
                keys=room_keys,
                args=[version, version + 1, encoded, uuid.uuid4().hex, LIVE_ROOM_TTL_MS,
                      f"{room_id} {version + 1}", *channels],
            )  # fmt: skip
            tally.record("cas", began, clock(), 200 if int(reply[0]) == 1 else 409, b"")
            version += 1

    try:
        await asyncio.gather(*(driver(n) for n in range(concurrency)))
    finally:
        await client.aclose()
    return tally
