"""Admission control (docs/spec.md §12 item 17; roomsvc/common/call_guard.py) in a real `roomsvc
serve`: with as many calls in flight as ROOMSVC_MAX_CALLS_IN_FLIGHT allows (held there by a
SIGSTOPped store and a long store deadline), a new REST call is refused with 503, reason
`overloaded` and Retry-After, a JSON-RPC call with the same error in `data`, and a new socket with
close code 1013; liveness still answers; once the calls in flight end, calls are taken again.
Throughput under overload is measured by scripts/loadtest.py, never here."""

from __future__ import annotations

import asyncio
import signal

import httpx
from websockets.asyncio.client import connect

from tests.raw_socket import Feed, open_feed, ws_url
from tests.support import UNIT, ServerProcess, ValkeyProcess, auth, new_app_id

LIMIT = 2


def error_reason(reply: httpx.Response) -> str:
    return str(reply.json()["error"]["errors"][0]["reason"])


async def test_past_its_calls_in_flight_a_process_refuses_at_once() -> None:
    """Calls held in flight up to the limit; the next REST call, JSON-RPC call and socket are
    refused as overloaded (503 / 1013); after the store wakes, everything is served again."""
    store = ValkeyProcess().start()  # its own: it is stopped
    env = {"ROOMSVC_MAX_CALLS_IN_FLIGHT": str(LIMIT), "ROOMSVC_STORE_DEADLINE_MS": "20000"}
    server = ServerProcess(store.url, env=env).start()
    app = new_app_id()
    events = f"{server.base_url}/games/v1/events"
    assert store.process is not None
    try:
        async with httpx.AsyncClient(timeout=60) as rest:
            pat = await open_feed(server, "pat", app)
            store.process.send_signal(signal.SIGSTOP)
            held = [asyncio.create_task(rest.get(events, headers=auth(f"h{n}", app)))
                    for n in range(LIMIT)]  # fmt: skip
            refused = None
            for _ in range(100):  # until the held calls are in: a probe let in is held too
                try:
                    probe = await rest.get(events, headers=auth("probe", app), timeout=5 * UNIT)
                except httpx.TimeoutException:
                    continue
                if probe.status_code == 503:
                    refused = probe
                    break
            assert refused is not None
            error = refused.json()["error"]
            assert (error["code"], error["status"]) == (503, "UNAVAILABLE")
            assert error["errors"][0]["reason"] == "overloaded"
            assert int(refused.headers["retry-after"]) >= 1
            rpc = await pat.call("events.listByPlayer", 1)
            data = rpc["error"]["data"]
            assert (data["code"], data["reason"]) == (503, "overloaded")
            assert data["retryAfter"] >= 1
            newcomer = Feed(await connect(ws_url(server, "newcomer", app), compression=None))
            assert (await newcomer.wait_closed()).code == 1013
            assert (await rest.get(f"{server.base_url}/healthz")).status_code == 200

            store.process.send_signal(signal.SIGCONT)
            for reply in await asyncio.gather(*held):  # served, or refused at the door
                assert reply.status_code == 200 or error_reason(reply) == "overloaded"
            served = await rest.get(events, headers=auth("later", app))
            assert served.status_code == 200
            again = await pat.call("events.listByPlayer", 2)
            assert "result" in again
            metrics = (await rest.get(f"{server.base_url}/metrics")).text
            assert 'roomsvc_calls_shed_total{transport="rest"}' in metrics
            assert 'roomsvc_calls_shed_total{transport="socket"}' in metrics
            assert "roomsvc_event_loop_lag_seconds" in metrics  # what sizing the limit needs
            await pat.ws.close()
    finally:
        store.process.send_signal(signal.SIGCONT)
        server.stop()
        store.stop()
