"""In-room messages relayed (docs/spec.md §11 targets, docs/messages.md): rooms of 4, one sender and
three recipients each, 64 B and 1,168 B, JSON (`rooms.sendMessage`) and binary frames.

    .venv/bin/python scripts/bench_messages.py [--rooms 100] [--seconds 5]
                                               [--colyseus ../shared/peers/colyseus]

Starts a throwaway valkey-server from the wheel and one `roomsvc serve` on it; this process
opens 4 x `--rooms` sockets (`roomsvc.client`) and builds the rooms. For each size and format:

1. saturation: every sender keeps `--window` reliable messages in flight for `--seconds`;
   the recipients count what they receive: deliveries/s, and the server's CPU per delivery;
2. half that rate, paced: sender -> recipient latency p50/p99 (one clock: the sender's stamp
   travels in the payload and the recipients run in this process).

Then, in the same run, the limit docs/spec.md §11 quotes beside it: a bare uvicorn server writing
the same frames to 3 x `--rooms` sockets with nothing else to do (wsbench_support.py). With
`--colyseus DIR` (after `npm ci` there) it also runs Colyseus 0.18's broadcast phase of 100 rooms of
4 (`load.mjs fanout --variant bcast`) and prints its changes/s and p99 beside ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from colyseus_peer import colyseus_dir, start_colyseus
from wsbench_support import (
    SECRET,
    cpu_seconds,
    measure_bare_fanout,
    percentile,
    start_bare_fanout,
    start_server,
    start_valkey,
    stop,
)

from roomsvc.auth.tokens import mint_token
from roomsvc.client import Message, RoomsvcClient

_STAMP = struct.Struct(">dI")  # sent at (perf_counter), message number


class Room:
    def __init__(self, sender: RoomsvcClient, recipients: list[RoomsvcClient], room_id: str):
        self.sender = sender
        self.recipients = recipients
        self.room_id = room_id


class Tally:
    def __init__(self) -> None:
        self.received = 0
        self.latencies: list[float] = []
        self.record = False

    def on_message(self, message: Message) -> None:
        self.received += 1
        if self.record:
            sent, _ = _STAMP.unpack_from(message.data)
            self.latencies.append(time.perf_counter() - sent)


async def build_rooms(base: str, app: str, count: int, binary: bool, tally: Tally) -> list[Room]:
    made: list[Room] = []
    gate = asyncio.Semaphore(50)

    async def one(n: int) -> Room:
        async with gate:
            names = [f"r{n}p{k}" for k in range(4)]
            clients = [RoomsvcClient(base, mint_token(SECRET, name, app), binary=binary,
                                     reconnect=False) for name in names]  # fmt: skip
            for client in clients:
                await client.connect()
            room = await clients[0].create_room(invited_player_ids=names[1:])
            for client in clients[1:]:
                await client.join_room(room["roomId"])
                client.on("message", tally.on_message)
            return Room(clients[0], clients[1:], room["roomId"])

    made = list(await asyncio.gather(*(one(n) for n in range(count))))
    return made


def payload(size: int, n: int) -> bytes:
    head = _STAMP.pack(time.perf_counter(), n)
    return head + b"x" * max(0, size - len(head))


async def saturate(rooms: list[Room], size: int, window: int, seconds: float, tally: Tally,
                   server_pid: int) -> tuple[float, float]:  # fmt: skip
    """(deliveries/s, server CPU seconds per delivery) with `window` sends in flight per room."""
    stop_at = time.perf_counter() + seconds

    async def sender(room: Room) -> None:
        n = 0
        while time.perf_counter() < stop_at:
            await asyncio.gather(*(room.sender.send_message(room.room_id, payload(size, n + k))
                                   for k in range(window)))  # fmt: skip
            n += window

    await asyncio.sleep(0.2)
    start_count, cpu0, t0 = tally.received, cpu_seconds(server_pid), time.perf_counter()
    await asyncio.gather(*(sender(room) for room in rooms))
    await asyncio.sleep(0.3)  # the last ones land
    elapsed = time.perf_counter() - t0
    delivered = tally.received - start_count
    result = delivered / elapsed, (cpu_seconds(server_pid) - cpu0) / max(1, delivered)
    await quiesce(tally)
    return result


async def quiesce(tally: Tally) -> None:
    """Until nothing more arrives: the next phase must not time this one's stragglers."""
    last = -1
    while tally.received != last:
        last = tally.received
        await asyncio.sleep(0.5)


async def paced(rooms: list[Room], size: int, rate: float, seconds: float,
                tally: Tally) -> tuple[float, float, float]:  # fmt: skip
    """(deliveries/s, p50 s, p99 s) at `rate` messages/s over all rooms, evenly spread."""
    per_room = rate / len(rooms)
    tally.latencies.clear()
    tally.record = True
    start_count, t0 = tally.received, time.perf_counter()

    inflight: set[asyncio.Future[Any]] = set()

    async def sender(index: int, room: Room) -> None:
        interval = 1.0 / per_room
        next_at = t0 + (index / len(rooms)) * interval
        n = 0
        while next_at < t0 + seconds:
            await asyncio.sleep(max(0.0, next_at - time.perf_counter()))
            sent = asyncio.ensure_future(room.sender.send_message(room.room_id, payload(size, n)))
            inflight.add(sent)
            sent.add_done_callback(inflight.discard)
            n += 1
            next_at += interval

    await asyncio.gather(*(sender(i, room) for i, room in enumerate(rooms)))
    await asyncio.sleep(0.5)
    tally.record = False
    elapsed = time.perf_counter() - t0
    lat = tally.latencies
    return (tally.received - start_count) / elapsed, percentile(lat, 0.5), percentile(lat, 0.99)


def colyseus(directory: Path, rooms: int) -> dict[str, Any] | None:
    """Colyseus 0.18's broadcast phase, the peer's own script, on this machine now."""
    directory = colyseus_dir(directory)
    server, env = start_colyseus(directory)
    if server is None:
        return None
    try:
        run = subprocess.run(["node", "load.mjs", "fanout", "--variant", "bcast", "--rooms",
                              str(rooms), "--changes", "2000", "--think", "50"], cwd=directory,
                             env=env, capture_output=True, text=True, timeout=300,
                             check=False)  # fmt: skip
        lines = [line for line in run.stdout.splitlines() if line.startswith("{")]
        return json.loads(lines[-1]) if lines else None
    finally:
        stop([(server, 10)], "colyseus")


async def run(args: argparse.Namespace) -> None:
    workdir = tempfile.mkdtemp(prefix="roomsvc-bench-messages-")
    valkey, url = start_valkey(workdir)
    env = {"ROOMSVC_MESSAGES_PER_SECOND": "100000", "ROOMSVC_WS_MAX_CONNECTIONS": "100000"}
    server, base = start_server(url, workdir, env)
    rows: list[str] = []
    try:
        for binary in (False, True):
            tally = Tally()
            app = f"bench-{os.getpid()}-{int(binary)}"
            rooms = await build_rooms(base, app, args.rooms, binary, tally)
            for size in (64, 1168):
                rate, cpu = await saturate(rooms, size, args.window, args.seconds, tally,
                                           server.pid)  # fmt: skip
                half = rate / 2 / 3  # messages/s: each reaches 3 recipients
                got, p50, p99 = await paced(rooms, size, half, args.seconds, tally)
                fmt = "binary" if binary else "JSON"
                rows.append(f"| {fmt} | {size} | {rate:,.0f} | {cpu * 1e6:.0f} | "
                            f"{got:,.0f} | {p50 * 1000:.2f} | {p99 * 1000:.2f} |")  # fmt: skip
            for room in rooms:
                for client in (room.sender, *room.recipients):
                    await client.close()
        bare_server, port = start_bare_fanout()
        try:
            bare = {size: await measure_bare_fanout(bare_server.pid, port, 3 * args.rooms, 50,
                                                    size) for size in (64, 1168)}  # fmt: skip
        finally:
            stop([(bare_server, 5.0)], "bare fan-out")
    finally:
        stop([(server, 15.0), (valkey, 5.0)], "bench_messages")
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\nrooms of 4: {args.rooms} rooms, 1 sender -> 3 recipients each, "
          f"window {args.window}, {args.seconds:g} s per phase\n")  # fmt: skip
    print("| format | bytes | deliveries/s (saturated) | server CPU us/delivery "
          "| deliveries/s (half rate) | p50 ms | p99 ms |")  # fmt: skip
    print("|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print("\nbare fan-out, same machine, same run (one frame to each socket, nothing else):")
    for size, (cpu, per_s) in bare.items():
        print(f"  {size} B: {per_s:,.0f} deliveries/s, {cpu * 1e6:.1f} us CPU/delivery")
    for row in rows:
        cells = [c.strip() for c in row.strip("|").split("|")]
        size, per_s = int(cells[1]), float(cells[2].replace(",", ""))
        print(
            f"  {cells[0]} {size} B: {per_s / bare[size][1]:.2f} of the bare fan-out "
            "deliveries/s (target >= 0.5)"
        )
    if args.colyseus:
        peer = colyseus(Path(args.colyseus), args.rooms)
        if peer:
            rate, p50, p99 = peer["changes_per_s"], peer["p50_ms"], peer["p99_ms"]
            print(
                f"\nColyseus 0.18 broadcast, {args.rooms} rooms of 4, same run: {rate:,.0f} "
                f"changes/s ({rate * 4:,.0f} deliveries/s), p50 {p50} ms, p99 {p99} ms"
            )
            print(f"  raw: {json.dumps(peer)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rooms", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--window", type=int, default=4, help="reliable sends in flight per room")
    parser.add_argument("--colyseus", default=None, help="the Colyseus peer's directory")
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
