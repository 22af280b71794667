"""A run: connect the players, start games for `--duration` seconds in the proportions of
`--mix` (a smooth weighted round robin, so even a short run starts every kind), then let the
games under way finish, and measure CPU over exactly that span."""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from collections.abc import Callable

from loadgen.games import Games
from loadgen.players import Players
from loadgen.stats import Failure, Stats


class Run:
    def __init__(self, args: argparse.Namespace, ws_url: str, secret: str) -> None:
        self.args = args
        self.stats = Stats()
        self.rng = random.Random(args.seed)
        self.players = Players(args, ws_url, secret, self.stats)
        self.games = Games(args, self.stats, self.rng, self.players)
        self.started = self.ended = 0.0
        self.cpu_probe: Callable[[], dict[str, float]] = dict
        self.cpu: dict[str, float] = {}

    async def schedule(self) -> None:
        weights = dict(self.args.mix)
        # during --ramp, game starts are paced so that all players are busy at its end
        pace = self.args.players / 2.5 / self.args.ramp if self.args.ramp else 0.0
        launched = 0
        credit = dict.fromkeys(weights, 0.0)
        running: set[asyncio.Task[None]] = set()
        while not self.players.stopping:
            for k, w in weights.items():  # smooth weighted round robin
                credit[k] += w
            kind = max(credit, key=lambda k: credit[k])
            credit[kind] -= sum(weights.values())
            size = 1 if kind == "auto" else self.rng.randint(2, min(4, self.args.players))
            players = await self.players.take(size)
            if players is None:
                break
            launched += 1
            ahead = launched / pace - (time.perf_counter() - self.started) if pace else 0.0
            if ahead > 0 and launched / pace < self.args.ramp:
                await asyncio.sleep(ahead)
            task = asyncio.create_task(self.games.game(kind, players))
            running.add(task)
            task.add_done_callback(running.discard)
        if running:
            drain = self.args.timeout + self.games.presence_timeout + self.args.play_max + 5
            _, late = await asyncio.wait(running, timeout=drain)
            for task in late:
                task.cancel()
                self.stats.error(Failure("timeout", "game still running after the drain"))

    async def progress(self) -> None:
        while True:
            await asyncio.sleep(0.5)
            elapsed = time.perf_counter() - self.started
            line = (f"\r{elapsed:6.1f}s  games {sum(self.stats.games.values()):7d}  "
                    f"ops/s {self.stats.requests / max(elapsed, 1e-9):8.0f}  "
                    f"pushes {self.stats.pushes:8d}  errors {sum(self.stats.errors.values())}"
                    + ("  (draining)" if self.players.stopping else ""))  # fmt: skip
            sys.stderr.write(line + "\x1b[K")  # erase what a longer line left
            sys.stderr.flush()

    async def run(self) -> None:
        await self.players.connect_all()
        ticker = asyncio.create_task(self.progress()) if sys.stderr.isatty() else None
        self.started = time.perf_counter()
        cpu_before = self.cpu_probe()
        scheduler = asyncio.create_task(self.schedule())
        await asyncio.sleep(self.args.duration)
        self.players.stop()
        await scheduler
        self.ended = time.perf_counter()
        self.cpu = {k: v - cpu_before.get(k, 0.0) for k, v in self.cpu_probe().items()}
        if ticker is not None:
            ticker.cancel()
            sys.stderr.write("\n")
        await self.players.close_all()
