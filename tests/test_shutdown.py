"""Graceful shutdown on SIGTERM (docs/spec.md §10, §12 item 11), on the embedded store so that "the
store stops last" is observable: a request in flight when the signal lands still gets its 200
(which needs the store), the listening socket closes so no new request starts, the process
exits 0, and only then is the store gone.

The request is made in flight deterministically, without guessing a delay: it is sent with
`Expect: 100-continue`, and the server's `100 Continue` proves the application is already
reading the body when the signal is sent; the body follows the signal.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess

from tests.support import UNIT, ServerProcess, token, wait_until


def refused(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return False
    except OSError:
        return True


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    return status, await reader.readexactly(length)


async def test_sigterm_lets_the_call_in_flight_finish_then_stops_the_store() -> None:
    """Body sent after SIGTERM: 200 and stored; no new connections; exit 0; store stopped last."""
    server = ServerProcess(None).start()  # no REDIS_URL: the embedded store
    assert server.process is not None
    store_pid = int((server.cwd / ".roomsvc" / "valkey.pid").read_text())
    items = [{"Timestamp": "1700000000", "Event": "Nav", "Data": [{"k": "v" * 50}]}] * 400
    body = json.dumps({"Token": token("p1", "app-shutdown"), "eventData": items}).encode()
    head = (
        f"POST /analytics/v1/AddEventBatch HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        f"Expect: 100-continue\r\n\r\n"
    ).encode()
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(head)
        await writer.drain()
        async with asyncio.timeout(100 * UNIT):
            interim = await reader.readuntil(b"\r\n\r\n")
        assert interim.startswith(b"HTTP/1.1 100")

        server.signal(signal.SIGTERM)
        await asyncio.to_thread(wait_until, lambda: refused(server.port))
        assert server.process.poll() is None, "exited with a call in flight"
        assert alive(store_pid), "the store stopped before the call finished"

        writer.write(body)
        await writer.drain()
        async with asyncio.timeout(100 * UNIT):
            status, reply = await read_response(reader)
        writer.close()
        assert status == 200 and json.loads(reply)["StatusCode"] == 0, reply
        code = await asyncio.to_thread(server.process.wait, 100 * UNIT)
        assert code == 0, server.output()
        assert not alive(store_pid), "the embedded store outlived serve"
    finally:
        with_process = server.process
        if with_process is not None and with_process.poll() is None:
            with_process.kill()
        server.process = None
        if alive(store_pid):
            os.kill(store_pid, signal.SIGKILL)


def test_sigterm_on_an_idle_server_exits_zero_quickly() -> None:
    """No call in flight: SIGTERM ends `serve` with status 0 after the app's shutdown ran."""
    server = ServerProcess(None).start()
    assert server.process is not None
    server.signal(signal.SIGTERM)
    try:
        # A bound on a hang, not a timing: generous for a machine busy with other tests.
        assert server.process.wait(timeout=300 * UNIT) == 0, server.output()
    except subprocess.TimeoutExpired:
        server.kill()
        raise AssertionError(f"serve still running after SIGTERM:\n{server.output()}") from None
    assert "Application shutdown complete" in server.output()
    server.process = None
