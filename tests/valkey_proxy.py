"""A TCP proxy in front of valkey that loses replies or holds commands back.

Bytes pass through unchanged, except:
- a chosen fraction of the client's writes (chunks that carry a script call or a SET) is
  forwarded to valkey, which runs it, while the reply is swallowed and both connections are
  dropped. The client then cannot know whether its command ran: exactly the case
  docs/design.md "Retries never double-apply" is about (docs/spec.md §12 item 5);
- every write of the clients is kept in `writes` (in arrival order) while it is a list, so a
  test can see which commands shared one write (one round trip);
- a write carrying one of the `hold` markers (a command name, such as b"SSUBSCRIBE") reaches
  valkey only after that many seconds, and the link's later writes wait behind it, as on a
  link whose commands queue under load (docs/realtime.md "Late subscriptions").
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time

LOSSY = (b"EVALSHA", b"\r\nSET\r\n")  # room mutations and create's requestId claim


class LossyProxy:
    def __init__(self, upstream_port: int, loss: float, seed: int = 0) -> None:
        self.upstream_port = upstream_port
        self.loss = loss  # set to 0 to heal the link
        self.rng = random.Random(seed)
        self.swallowed = 0
        self.hold: dict[bytes, float] = {}  # command name -> seconds a write carrying it waits
        self.held: list[float] = []  # when each held write arrived (time.monotonic())
        self.released = 0  # held writes forwarded so far
        self.writes: list[bytes] | None = None  # a list: each client write is appended
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> LossyProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        link = _Link(self, writer, up_writer)
        for task in (
            asyncio.create_task(link.requests(reader)),
            asyncio.create_task(link.replies(up_reader)),
        ):
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)


class _Link:
    """One client connection and its upstream twin; closed together."""

    def __init__(
        self, proxy: LossyProxy, client: asyncio.StreamWriter, upstream: asyncio.StreamWriter
    ) -> None:
        self.proxy = proxy
        self.client = client
        self.upstream = upstream
        self.swallowing = False
        proxy._writers.update((client, upstream))

    def close(self) -> None:
        for writer in (self.client, self.upstream):
            self.proxy._writers.discard(writer)
            writer.close()

    async def requests(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.proxy.writes is not None:
                    self.proxy.writes.append(data)
                await self._hold(data)
                if (
                    not self.swallowing
                    and any(marker in data for marker in LOSSY)
                    and self.proxy.rng.random() < self.proxy.loss
                ):
                    self.swallowing = True  # the replies to this write never come back
                self.upstream.write(data)
                await self.upstream.drain()
        self.close()

    async def _hold(self, data: bytes) -> None:
        delays = [s for name, s in self.proxy.hold.items() if b"\r\n" + name + b"\r\n" in data]
        if delays:
            self.proxy.held.append(time.monotonic())
            await asyncio.sleep(max(delays))
            self.proxy.released += 1

    async def replies(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while data := await reader.read(65536):
                if self.swallowing:
                    # valkey has answered, so it ran at least the first command: drop the
                    # answer and the connection.
                    self.proxy.swallowed += 1
                    break
                self.client.write(data)
                await self.client.drain()
        self.close()
