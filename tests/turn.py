"""A real coturn `turnserver` on loopback for the relay-only tests (docs/messages.md "NAT
traversal"), with the TURN REST API's shared secret."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

from roomsvc.store.embedded import free_port
from tests.support import UNIT, wait_until

TURN_SECRET = "turn-test-secret"


class TurnServer:
    """coturn on loopback with the TURN REST API shared secret (`use-auth-secret`)."""

    def __init__(self) -> None:
        self.port = free_port()
        low = 40000 + (self.port % 200) * 100
        self.log = Path(tempfile.mkdtemp(prefix="roomsvc-turn-")) / "turn.log"
        self.argv = [
            "turnserver", "-n", "--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1",
            f"--listening-port={self.port}", f"--min-port={low}", f"--max-port={low + 99}",
            "--realm=roomsvc.test", "--use-auth-secret", f"--static-auth-secret={TURN_SECRET}",
            "--fingerprint", "--allow-loopback-peers", "--no-cli", "--no-tls", "--no-dtls",
            "--log-file=stdout", "--simple-log",
        ]  # fmt: skip
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> TurnServer:
        # Its log goes to stdout, which the C library buffers when it is a file: line-buffered
        # under stdbuf, a test reads each line once coturn has written it.
        line_buffered = ["stdbuf", "-oL"] if shutil.which("stdbuf") else []
        with self.log.open("ab") as out:
            self.process = subprocess.Popen([*line_buffered, *self.argv], stdout=out, stderr=out)
        wait_until(self._listening, timeout=100 * UNIT)  # TURN over TCP shares the port
        return self

    def _listening(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"turnserver exited:\n{self.log.read_text(errors='replace')}")
        try:
            socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
            return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=10)
