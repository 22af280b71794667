"""The load test (docs/spec.md §1, §11) at a small size: real sockets, complete games, 0 errors.

`scripts/loadtest.py` runs as a subprocess, as operators run it. Only counts are asserted,
never a timing.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest

from tests.pool_burst import IN_FLIGHT, failures_past_the_pool
from tests.support import JWT_SECRET, ROOT, UNIT, ServerProcess, ValkeyProcess, loadtest

SCRIPT = ROOT / "scripts" / "loadtest.py"
pytestmark = pytest.mark.timeout(300 * UNIT + 60)


@pytest.fixture(scope="module")
def grace_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    """A server whose presence grace is 1 s, so dropped players leave within the run."""
    process = ServerProcess(valkey.url, env={"ROOMSVC_PRESENCE_GRACE_SECONDS": "1"}).start()
    yield process
    process.stop()


def test_own_server_games_of_every_kind_complete_without_errors() -> None:
    """Without --url: own store and server; invitation, auto-matched and dropped games end."""
    code, report, stderr = loadtest(
        "--players", "12", "--duration", "2", "--seed", "7",
        "--mix", "invite=0.4,auto=0.4,drop=0.2", "--timeout", str(200 * UNIT),
    )  # fmt: skip
    assert code == 0, stderr
    assert report["errors_total"] == 0 and report["server"]["own"]
    games = report["games_completed"]
    assert games.get("invite", 0) > 0 and games.get("auto", 0) > 0 and games.get("drop", 0) > 0
    ops = report["ops"]
    for op in ("connect", "create", "join", "reportStatus", "matched", "leave", "presence"):
        assert ops[op]["count"] > 0, op
    assert report["pushes_received"] > 0 and ops["push"]["count"] > 0
    assert "operation" in stderr and "p99 ms" in stderr  # the table, beside the JSON


def test_url_of_a_running_server_with_its_secret(grace_server: ServerProcess, app_id: str) -> None:
    """--url drives an existing server, with the secret from ROOMSVC_JWT_SECRET."""
    code, report, stderr = loadtest(
        "--url", grace_server.base_url, "--presence-grace", "1", "--app", app_id,
        "--players", "8", "--duration", "1.5", "--record-share", "0",
        "--timeout", str(200 * UNIT),
    secret=JWT_SECRET)  # fmt: skip
    assert code == 0, stderr
    assert report["errors_total"] == 0 and not report["server"]["own"]
    assert report["games_total"] > 0 and report["ops"]["record"]["count"] == 0


def test_errors_make_the_exit_code_1(grace_server: ServerProcess) -> None:
    """A wrong secret: every handshake is refused, each counted as an error, exit code 1."""
    code, report, _ = loadtest(
        "--url", grace_server.base_url, "--secret", "not-the-server-secret-" + "y" * 16,
        "--players", "3", "--duration", "1",
    )  # fmt: skip
    assert code == 1
    assert report["errors"] == {"connect failed": 3} and report["games_total"] == 0
    assert "401" in report["error_samples"][0]


def test_refuses_a_bad_mix_and_remote_hosts(capsys: pytest.CaptureFixture[str]) -> None:
    """Usage errors: an unknown game kind, or a --url that is not 127.0.0.1 (exit code 2)."""
    spec = importlib.util.spec_from_file_location("loadtest", SCRIPT)
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    remote = ["--url", "http://example.com:80", "--secret", "s"]
    for args, said in ((["--mix", "invite=1,chess=1"], "chess"), (remote, "127.0.0.1")):
        with pytest.raises(SystemExit) as exited:
            script.main(args)
        assert exited.value.code == 2 and said in capsys.readouterr().err


async def test_commands_beyond_the_pool_wait_for_a_connection(valkey: ValkeyProcess) -> None:
    """300 commands in flight on the app's store client: those past its pool of 256 wait for a
    connection instead of failing (a 503 on a healthy store; found by the load test)."""
    failed = await failures_past_the_pool(valkey.url, "loadtest:pool")
    assert failed == [], f"{len(failed)} of {IN_FLIGHT} failed: {sorted(set(failed))}"
