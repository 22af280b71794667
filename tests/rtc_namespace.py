"""Run inside `unshare -rn` (a network namespace the test made): the loopback gets a second
address, 127.0.0.2, which aioice accepts as a host candidate (it skips 127.0.0.1 by RFC 8445),
then a valkey, a `roomsvc serve` and the two aiortc peers of rtc_peers.py run in it. Prints the
outcome as one JSON line for test_messages_rtc.py to assert on."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

import httpx

from tests.rtc_peers import connect_pair
from tests.support import ServerProcess, ValkeyProcess, new_app_id


def add_loopback_address() -> None:
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    subprocess.run(["ip", "addr", "add", "127.0.0.2/8", "dev", "lo"], check=True)


async def main() -> None:
    valkey = ValkeyProcess().start()
    server = ServerProcess(valkey.url).start()
    try:
        result = await connect_pair(server, new_app_id(), relay_only=False)
        async with httpx.AsyncClient(timeout=10) as http:
            result["metrics"] = (await http.get(f"{server.base_url}/metrics")).text
    finally:
        server.stop()
        valkey.stop()
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    add_loopback_address()
    asyncio.run(main())
    sys.exit(0)
