"""The load test's overload figures (docs/spec.md §12 item 17): a server that takes one call at a
time refuses the rest at once (503 overloaded, 1013 for sockets); the load test retries them after
Retry-After as a client should, counts them as shed, and still completes every game with 0 errors.
Only counts are asserted; the figures at twice a process's capacity are measured by running the
script (README, Reliability)."""

from __future__ import annotations

import pytest

from tests.support import UNIT, loadtest

pytestmark = pytest.mark.timeout(300 * UNIT + 60)


def test_shed_calls_and_sockets_are_counted_and_retried() -> None:
    """--max-in-flight 1 on the own server: some calls and sockets are shed, none is an error,
    games complete, and the table shows the shed share and the accepted calls' p99."""
    code, report, stderr = loadtest(
        "--players", "24", "--duration", "2", "--seed", "5", "--max-in-flight", "1",
        "--mix", "invite=0.6,auto=0.4", "--timeout", str(200 * UNIT),
    )  # fmt: skip
    assert code == 0, stderr
    assert report["errors_total"] == 0 and report["games_total"] > 0
    assert report["calls_shed"] + report["sockets_shed"] > 0
    assert report["server"]["max_calls_in_flight"] == 1
    assert report["accepted_calls"] > 0
    assert "shed (refused at once" in stderr and "accepted calls:" in stderr
