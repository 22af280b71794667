"""The pool of idle players, each one socket with its own token. A game takes some and gives
them back; one whose socket closed or was cut (a drop game) is replaced by a new player on a new
socket, so the pool keeps its size until the run stops."""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import itertools
import random
import time
import uuid

from websockets.exceptions import ConnectionClosed, InvalidHandshake

from loadgen.client import Client
from loadgen.stats import Failure, Stats
from roomsvc.auth.tokens import SCOPE_GAMES, mint_token
from roomsvc.client import Disconnected

CLOSE_OVERLOADED = 1013


class Players:
    def __init__(self, args: argparse.Namespace, ws_url: str, secret: str, stats: Stats) -> None:
        self.args, self.ws_url, self.secret, self.stats = args, ws_url, secret, stats
        self.tag = uuid.uuid4().hex[:8]
        self.serial = itertools.count()
        self.idle: collections.deque[Client] = collections.deque()
        self.idle_changed = asyncio.Event()
        self.clients: list[Client] = []
        self.stopping = False
        self.background: set[asyncio.Task[None]] = set()

    async def connect_all(self) -> None:
        """Connect `--players` players, 50 handshakes at a time; each failure is an error."""
        gate = asyncio.Semaphore(50)

        async def join_one() -> None:
            async with gate:
                try:
                    self.idle.append(await self.new_client())
                except Failure as failure:
                    self.stats.error(failure)

        await asyncio.gather(*(join_one() for _ in range(self.args.players)))

    async def new_client(self) -> Client:
        player = f"lt{self.tag}p{next(self.serial)}"
        token = mint_token(self.secret, player, self.args.app, scopes=(SCOPE_GAMES,),
                           name=f"Load {player[-6:]}", ttl_seconds=86_400)  # fmt: skip
        client: Client | None = None
        try:
            async with asyncio.timeout(self.args.timeout):
                while True:  # a socket refused as overloaded (1013) tries again a second later
                    began = time.perf_counter()
                    client = Client(self.ws_url, token, player, self.stats, self.args.timeout)
                    try:
                        await client.connect()
                        break
                    except Disconnected as closed:
                        if closed.code != CLOSE_OVERLOADED:
                            raise Failure("socket closed", f"{player}: {closed}") from None
                    self.stats.shed["connect"] += 1
                    await asyncio.sleep(random.uniform(0.5, 1.0))
        except TimeoutError:
            if client is not None:  # a socket opened but never welcomed: not left behind
                await client.close()
            raise Failure("timeout", f"connect {player}") from None
        except (OSError, ConnectionClosed, InvalidHandshake) as exc:
            raise Failure("connect failed", f"{player}: {exc}") from None
        assert client is not None
        self.stats.lat["connect"].append(time.perf_counter() - began)
        self.clients.append(client)
        return client

    def release(self, *clients: Client) -> None:
        for client in clients:
            client.finished.update(client.rooms)  # versions kept: a late push is not news
            if client.closed or client.dropping:
                task = asyncio.create_task(self.replace())
                self.background.add(task)
                task.add_done_callback(self.background.discard)
            else:
                self.idle.append(client)
        self.idle_changed.set()

    async def replace(self) -> None:
        if self.stopping:
            return
        try:
            self.release(await self.new_client())
        except Failure as failure:
            self.stats.error(failure)

    async def take(self, count: int) -> list[Client] | None:
        while len(self.idle) < count:
            if self.stopping:
                return None
            self.idle_changed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(0.5):
                    await self.idle_changed.wait()
        if self.stopping:
            return None
        picked = [self.idle.popleft() for _ in range(count)]
        return picked

    def stop(self) -> None:
        """No more players are handed out or replaced; a waiting `take` returns None."""
        self.stopping = True
        self.idle_changed.set()

    async def close_all(self) -> None:
        await asyncio.gather(*(c.close() for c in self.clients if not c.closed),
                             return_exceptions=True)  # fmt: skip
