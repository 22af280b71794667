"""The command line: parse and check the options, start an own server unless `--url` names one,
run, print the report; the exit code is 1 when there was any error."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from urllib.parse import urlsplit

import msgspec

from loadgen.own_server import OwnServer
from loadgen.report import results, server_push_histogram, table
from loadgen.run import Run
from loadgen.stats import KINDS


def parse_mix(raw: str) -> list[tuple[str, float]]:
    mix: dict[str, float] = {}
    for part in raw.split(","):
        name, _, value = part.partition("=")
        name = name.strip()
        if name not in KINDS:
            raise argparse.ArgumentTypeError(f"unknown game kind {name!r} (kinds: {KINDS})")
        try:
            mix[name] = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{name}: not a number: {value!r}") from None
        if mix[name] < 0:
            raise argparse.ArgumentTypeError(f"{name}: must not be negative")
    if sum(mix.values()) <= 0:
        raise argparse.ArgumentTypeError("at least one kind needs a positive share")
    return [(k, v) for k, v in mix.items() if v > 0]


def main(argv: list[str] | None = None, description: str = "") -> int:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--players", type=int, default=100)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds of new games")
    parser.add_argument("--url", help="a running server (http://127.0.0.1:PORT)")
    parser.add_argument("--secret", default=os.environ.get("ROOMSVC_JWT_SECRET"))
    parser.add_argument("--mix", type=parse_mix, default=parse_mix("invite=0.5,auto=0.4,drop=0.1"))
    parser.add_argument("--app", default="demo")
    parser.add_argument("--event", default="ev_matches", help="definition events.record counts")
    parser.add_argument("--record-share", type=float, default=0.5)
    parser.add_argument("--messages", type=int, default=5,
                        help="reliable in-room messages each player sends per game")  # fmt: skip
    parser.add_argument("--play-min", type=float, default=0.2)
    parser.add_argument("--play-max", type=float, default=1.5)
    parser.add_argument("--presence-grace", type=int, default=None)
    parser.add_argument("--workers", type=int, default=1, help="own server's processes")
    parser.add_argument(
        "--max-in-flight",
        type=int,
        default=None,
        help="own server's ROOMSVC_MAX_CALLS_IN_FLIGHT (default: its default)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="per request or wait")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--ramp", type=float, default=0.0, help="seconds to spread the first "
                        "games over (default 0: every idle player starts at once)")  # fmt: skip
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    if args.players < 1 or args.duration <= 0 or args.play_min > args.play_max:
        parser.error("--players >= 1, --duration > 0 and --play-min <= --play-max")
    if args.players < 2:
        args.mix = [(k, v) for k, v in args.mix if k == "auto"] or parser.error("need 2 players")
    server: OwnServer | None = None
    if args.url:
        host = urlsplit(args.url).hostname
        if host not in ("127.0.0.1", "localhost"):
            parser.error("--url must be on 127.0.0.1")
        if not args.secret:
            parser.error("--url needs --secret or ROOMSVC_JWT_SECRET")
        args.presence_grace = args.presence_grace or 20
        base, secret = args.url.rstrip("/"), args.secret
    else:
        args.presence_grace = args.presence_grace or 1
        server = OwnServer(args.presence_grace, args.workers, args.max_in_flight).start()
        base, secret = server.url, server.secret
        print(f"loadtest: server pid {server.pid} at {base} (logs in {server.dir})",
              file=sys.stderr)  # fmt: skip
    run = Run(args, base, secret)  # roomsvc.client makes it ws://…/games/v1/realtime
    if server is not None:
        run.cpu_probe = server.cpu_seconds
    pushes: dict[str, float] = {}
    try:
        with contextlib.suppress(ImportError):
            import uvloop

            asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
        asyncio.run(run.run())
        pushes = server_push_histogram(base)
    finally:
        if server is not None:
            server.stop()
    info = {"url": base, "own": server is not None, "pid": server.pid if server else None,
            "presence_grace_s": args.presence_grace,
            "max_calls_in_flight": args.max_in_flight}  # fmt: skip
    report = results(run, info)
    report["server_push_histogram"] = pushes
    if args.json:
        print(table(report), file=sys.stderr)
        print(msgspec.json.encode(report).decode())
    else:
        print(table(report))
    return 1 if report["errors_total"] else 0
