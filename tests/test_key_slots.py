"""Every key a Lua script touches hashes to one Redis Cluster slot (docs/spec.md §10, §12 item 12).

How it is checked, mechanically and at run time rather than by reading the code:

1. A raw MONITOR connection records every command a private valkey-server executes while a real
   `roomsvc serve` and the store classes drive every feature: rooms, invitations, auto-matching
   (window, claim, progress, retire, and a takeover), presence, timers, events.record and
   AddEventBatch.
2. The server prints each EVALSHA/EVAL with the KEYS it was given, followed by the commands the
   script ran (`[0 lua]` lines: Valkey runs a script atomically, so nothing interleaves).
3. The server itself (`COMMAND GETKEYS`) names the keys of each command a script ran; the KEYS
   given plus every key actually touched must hash (CRC16, `redis.crc.key_slot`) to one slot.
4. Every file under roomsvc/store/lua/ must have been seen running (matched by its SHA1), so a new
   script that no flow below exercises fails this test until a flow is added for it.

A future script that mixed slots, through the KEYS its caller passes or through a key built
inside the script, fails step 3 here on a plain server, where a cluster would have refused it
only in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import redis.asyncio as aioredis
from redis.crc import key_slot

from roomsvc.matching.policy import Group, Ticket
from roomsvc.matching.pools import Claimed, PoolStore
from roomsvc.realtime.presence import Presence
from roomsvc.rooms.rules import Limits
from roomsvc.rooms.store import RoomStore
from roomsvc.store.scripts import LUA_DIR
from tests.messaging import players, room_of
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, token

ROOMS = "/games/v1/rooms"
_ESCAPES = {"n": b"\n", "r": b"\r", "t": b"\t", "a": b"\a", "b": b"\b", '"': b'"', "\\": b"\\"}


def parse_monitor_line(line: str) -> tuple[str, list[bytes]]:
    """(`lua` or the client address, the command's arguments) of one MONITOR line."""
    head, _, rest = line.partition("] ")
    source = head.rsplit(" ", 1)[-1]
    args: list[bytes] = []
    i = 0
    while i < len(rest):
        if rest[i] != '"':
            i += 1
            continue
        i += 1
        value = bytearray()
        while rest[i] != '"':
            if rest[i] == "\\":
                code = rest[i + 1]
                if code == "x":
                    value.append(int(rest[i + 2 : i + 4], 16))
                    i += 4
                    continue
                value += _ESCAPES[code]
                i += 2
                continue
            value += rest[i].encode("latin-1")
            i += 1
        args.append(bytes(value))
        i += 1
    return source, args


class Monitor:
    """Every command a server runs, read on a raw MONITOR connection in a thread."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.sendall(b"MONITOR\r\n")
        self.buffer = bytearray()
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with contextlib.suppress(OSError):
            while chunk := self.sock.recv(1 << 16):
                self.buffer += chunk

    def stop(self, port: int) -> list[str]:
        """Every line up to a marker sent last, so nothing in flight is missed."""
        marker = f"monitor-end-{uuid.uuid4().hex}"
        with redis.Redis(port=port) as client:
            client.echo(marker)
        deadline = time.monotonic() + 100 * UNIT
        while marker.encode() not in self.buffer and time.monotonic() < deadline:
            time.sleep(0.01)
        self.sock.close()
        self.thread.join(timeout=5)
        text = bytes(self.buffer).decode("latin-1")
        return [line[1:] for line in text.split("\r\n") if line.startswith("+") and "[" in line]


def script_calls(lines: list[str]) -> Iterator[tuple[str, list[bytes], list[list[bytes]]]]:
    """(sha1, declared KEYS, commands the script ran) per script call seen."""
    current: tuple[str, list[bytes], list[list[bytes]]] | None = None
    for line in lines:
        source, args = parse_monitor_line(line)
        if source == "lua":
            if current is not None:
                current[2].append(args)
            continue
        if current is not None:
            yield current
            current = None
        name = args[0].upper() if args else b""
        if name in (b"EVALSHA", b"EVAL", b"EVALSHA_RO", b"EVAL_RO"):
            body = args[1]
            sha = body.decode() if name.startswith(b"EVALSHA") else hashlib.sha1(body).hexdigest()
            numkeys = int(args[2])
            current = (sha.lower(), list(args[3 : 3 + numkeys]), [])
    if current is not None:
        yield current


def keys_of(
    client: redis.Redis, command: list[bytes], cache: dict[tuple[bytes, ...], list]
) -> list:  # type: ignore[type-arg]
    """The keys of one command, as the server itself names them (none for PUBLISH, TIME...)."""
    key = tuple(command)
    if key not in cache:
        try:
            named = client.command_getkeys(*command)
            cache[key] = [k if isinstance(k, bytes) else k.encode("latin-1") for k in named]
        except redis.ResponseError:
            cache[key] = []  # the command has no key arguments
    return cache[key]


def script_names() -> dict[str, str]:
    return {
        hashlib.sha1(path.read_bytes()).hexdigest(): path.stem for path in LUA_DIR.glob("*.lua")
    }


@pytest.fixture(scope="module")
def watched() -> Iterator[ValkeyProcess]:
    valkey = ValkeyProcess().start()
    yield valkey
    valkey.stop()


async def drive_every_feature(valkey: ValkeyProcess, server: ServerProcess) -> None:
    """Rooms, matching, events and analytics over HTTP; takeover and presence in-process."""
    app = "app-" + uuid.uuid4().hex[:10]
    async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
        room = (
            await http.post(
                f"{ROOMS}/create", json={"invitedPlayerIds": ["bob"]}, headers=auth("al", app)
            )
        ).json()
        for path, who in (("join", "bob"), ("leave", "bob"), ("leave", "al")):
            reply = await http.post(
                f"{ROOMS}/{room['roomId']}/{path}", json={}, headers=auth(who, app)
            )
            assert reply.status_code == 200, reply.text
        criteria = {"minAutoMatchingPlayers": 1, "maxAutoMatchingPlayers": 1}
        seekers = []
        for who in ("s1", "s2"):
            reply = await http.post(
                f"{ROOMS}/create", json={"autoMatchingCriteria": criteria}, headers=auth(who, app)
            )
            seekers.append((who, reply.json()["roomId"]))
        deadline = time.monotonic() + 100 * UNIT
        while time.monotonic() < deadline:
            who, room_id = seekers[0]
            seen = (await http.get(f"{ROOMS}/{room_id}", headers=auth(who, app))).json()
            if seen["status"] != "ROOM_AUTO_MATCHING":
                break
            await asyncio.sleep(0.05)
        now = int(time.time() * 1000)
        body = {
            "currentTimeMillis": str(now),
            "timePeriods": [
                {
                    "timePeriod": {
                        "periodStartMillis": str(now - 60_000),
                        "periodEndMillis": str(now - 1000),
                    },
                    "updates": [{"definitionId": "ev_kills", "updateCount": "1"}],
                }
            ],
        }
        reply = await http.post("/games/v1/events", json=body, headers=auth("al", "demo"))
        assert reply.status_code == 200, reply.text
        batch = {
            "Token": token("al", app),
            "BatchId": "b1",
            "eventData": [{"Timestamp": "1700000000", "Event": "Nav", "Data": [{"a": "b"}]}],
        }
        reply = await http.post("/analytics/v1/AddEventBatch", json=batch)
        assert reply.status_code == 200 and reply.json()["StatusCode"] == 0, reply.text
    async with players(server, app, "m1", "m2") as (m1, m2):  # in-room messages
        room_id = await room_of(m1, m2)
        await m1.client.send_message(room_id, b"reliable")
        await m1.client.send_message(room_id, b"unreliable", reliable=False)
        await m2.until(lambda: len(m2.messages) == 2)
        await m2.client.resume_messages(room_id, 0)

    store = aioredis.Redis.from_url(valkey.url)
    try:
        # The takeover, progress and drop steps run only when a claim outlives its process or its
        # round: called here directly (on a record that does not exist, a no-op) so they are
        # checked whatever the matcher's flow calls this time.
        pools = PoolStore(store, owner="key-slots")
        pool = f"{app}:any"
        await pools.takeover(pool, "no-such-match", now)
        ticket = Ticket(room_id="r1", app_id=app, variant=None, since_ms=now,
                        min_players=1, max_players=1)  # fmt: skip
        claimed = Claimed(pool, "no-such-match", Group(target=ticket, movers=()), 0, now)
        await pools.progress(claimed, 1, now)
        await pools.drop(pool, [ticket])  # ticket_remove, which a leave while seeking runs too
        presence = Presence(RoomStore(store, Limits(), 60_000), grace_seconds=1)
        await presence.touch([(app, "gone")], now=0)
        await presence.refresh({(app, "here")}, now=0)
        await presence.sweep_once(now, lambda app, player: False)
    finally:
        await store.aclose()


async def test_every_script_touches_one_slot(watched: ValkeyProcess) -> None:
    """Each script call's KEYS and every key it touched share one slot; every script ran."""
    monitor = Monitor(watched.port)
    server = ServerProcess(watched.url).start()
    try:
        await drive_every_feature(watched, server)
    finally:
        server.stop()
        lines = monitor.stop(watched.port)

    names = script_names()
    seen: set[str] = set()
    mixed: list[str] = []
    cache: dict[tuple[bytes, ...], list[Any]] = {}
    with redis.Redis(port=watched.port) as client:
        for sha, declared, commands in script_calls(lines):
            name = names.get(sha, sha)
            touched = [k for command in commands for k in keys_of(client, command, cache)]
            slots = {key_slot(k) for k in [*declared, *touched]}
            seen.add(name)
            if len(slots) > 1:
                mixed.append(f"{name}: {sorted({*declared, *touched})}")
    assert not mixed, "scripts touching several slots:\n" + "\n".join(mixed)
    assert set(names.values()) - seen == set(), "scripts no flow here exercised"
