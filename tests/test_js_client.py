"""The JavaScript client (clients/js): its unit tests under node's test runner, and its live
tests against a real `roomsvc serve` (rooms, errors, quick match, messages and resume)."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Iterator

import pytest

from tests.dev_server import dev_server
from tests.support import ROOT, UNIT, ServerProcess, ValkeyProcess

NODE = shutil.which("node")
pytestmark = pytest.mark.skipif(NODE is None, reason="node is missing: apt-get install nodejs")


def _node(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [NODE or "node", *args], cwd=ROOT, env={**os.environ, **(env or {})},
        capture_output=True, text=True, timeout=600 * UNIT, check=False,
    )  # fmt: skip


def _websocket_flags() -> list[str]:
    """Node 20 has a WebSocket client only behind a flag; newer ones have it by default."""
    probe = _node("-e", "process.exit(typeof WebSocket === 'function' ? 0 : 1)")
    return [] if probe.returncode == 0 else ["--experimental-websocket"]


@pytest.fixture(scope="module")
def demo_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    with dev_server(valkey.url) as server:
        yield server


def test_js_unit_tests_pass() -> None:
    """`node --test clients/js/test/` passes (the live file skips without a server)."""
    run = _node("--test", "clients/js/test/")
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "# fail 0" in run.stdout


def test_js_client_against_a_real_server(demo_server: ServerProcess) -> None:
    """The client drives a real server: invitation to ROOM_ACTIVE, errors, quick match,
    messages in order and resumed across a reconnect."""
    env = {"ROOMSVC_TEST_URL": demo_server.base_url}
    run = _node(*_websocket_flags(), "--test", "clients/js/test/live.test.js", env=env)
    log = demo_server.output()[-3000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + log
    assert "# pass 0" not in run.stdout


def test_js_client_binary_frames_against_a_real_server(demo_server: ServerProcess) -> None:
    """The client with `binary` sends SEND frames and receives MESSAGE frames
    (`?messageFormat=binary`) through a real server: in order, errors as RoomsvcErrors, and a
    binary and a JSON client in one room (docs/messages.md "Binary frames")."""
    env = {"ROOMSVC_TEST_URL": demo_server.base_url}
    run = _node(*_websocket_flags(), "--test", "clients/js/test/live_binary.test.js", env=env)
    log = demo_server.output()[-3000:]
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:] + log
    assert "# pass 2" in run.stdout and "# skipped 0" in run.stdout, run.stdout[-3000:]
