"""`roomsvc serve | token | config check | analytics export` (docs/spec.md §1).

Every failure an operator can cause (a bad setting, a port in use, a data dir that is not
writable, an unreachable store) ends with one clear line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import argparse
import errno
import os
import shutil
import signal
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

from roomsvc.auth.tokens import SCOPE_GAMES, SCOPE_GAMES_LITE, mint_token
from roomsvc.common import logs
from roomsvc.config import ConfigError, load_config
from roomsvc.settings import Settings, SettingsError

EXIT_USAGE = 2
EXIT_FAILURE = 1
_SCOPE_ALIASES = {"games": SCOPE_GAMES, "games_lite": SCOPE_GAMES_LITE}


# The WebSocket protocol uvicorn hands upgrades to (http/websocket.py); the benchmarks' floors
# serve with the same one (scripts/wsbench_support.py).
WS_PROTOCOL = "roomsvc.http.websocket:WebSocketProtocol"


def fail(message: str, code: int = EXIT_FAILURE) -> int:
    print(f"roomsvc: {message}", file=sys.stderr)
    return code


def _settings_or_exit() -> Settings | int:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        for problem in exc.problems:
            print(f"roomsvc: bad setting {problem}", file=sys.stderr)
        return EXIT_USAGE


def _port_free(host: str, port: int) -> str | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                return f"port {port} on {host} is already in use; choose another with --port"
            return f"cannot listen on {host}:{port}: {exc.strerror}"
    return None


def cmd_serve(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    if isinstance(settings, int):
        return settings
    try:
        load_config(settings.config_path)
    except ConfigError as exc:
        return fail(f"bad config {exc}", EXIT_USAGE)
    logs.configure(settings.log_level)
    problem = _port_free(args.host, args.port)
    if problem:
        return fail(problem)

    from roomsvc.store.embedded import EmbeddedStore, EmbeddedStoreError

    store: EmbeddedStore | None = None
    if settings.redis_url is None:
        store = EmbeddedStore(settings.data_dir)
        try:
            os.environ["REDIS_URL"] = store.start()
        except EmbeddedStoreError as exc:
            return fail(str(exc))
    metrics_dir: Path | None = None
    if args.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        _remove_orphaned_metrics(settings.data_dir.resolve())
        metrics_dir = settings.data_dir.resolve() / f"metrics-{os.getpid()}"
        shutil.rmtree(metrics_dir, ignore_errors=True)
        metrics_dir.mkdir(parents=True)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
    try:
        return _run_uvicorn(args, settings)
    finally:
        if store is not None:
            store.stop()
        if metrics_dir is not None:
            shutil.rmtree(metrics_dir, ignore_errors=True)


def _remove_orphaned_metrics(data_dir: Path) -> None:
    """Delete the metrics directories of `serve` processes that no longer run: a serve that
    was SIGKILLed could not remove its own, and nothing else ever would."""
    for path in data_dir.glob("metrics-*"):
        pid = path.name.removeprefix("metrics-")
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(path, ignore_errors=True)
        except PermissionError:
            pass  # a live process of another user


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


def _run_uvicorn(args: argparse.Namespace, settings: Settings) -> int:
    import uvicorn

    # uvicorn drains, then re-raises the SIGTERM it caught with the handler it found: make
    # that handler unwind normally so `serve` still stops the embedded store (last).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)

    # roomsvc's own WebSocket protocol (http/websocket.py): uvicorn parses the HTTP request and
    # hands the upgrade over; a join costs a quarter of uvicorn's websockets-sansio protocol's
    # CPU on the transport (docs/performance.md "A WebSocket server of our own"). Per-message
    # deflate is not offered: it halves fan-out throughput and game frames are small.
    uvicorn.run(
        "roomsvc.app:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        ws=WS_PROTOCOL,
        ws_per_message_deflate=False,
        # docs/spec.md §6: frames over 64 KiB are refused by the protocol (close 1009) before they
        # are buffered; a ping every ROOMSVC_WS_PING_SECONDS, and a peer silent for as long
        # again is closed.
        ws_max_size=65_536,
        ws_ping_interval=settings.ws_ping_seconds,
        ws_ping_timeout=settings.ws_ping_seconds,
        loop="uvloop",
        http="httptools",
        log_config=None,
        access_log=False,
        proxy_headers=True,
        timeout_graceful_shutdown=args.graceful_seconds,
        lifespan="on",
    )
    return 0


def cmd_token(args: argparse.Namespace) -> int:
    settings = _settings_or_exit()
    if isinstance(settings, int):
        return settings
    scopes = [_SCOPE_ALIASES.get(s, s) for raw in args.scope or ["games"] for s in raw.split()]
    print(
        mint_token(
            settings.jwt_secret,
            args.player,
            args.app,
            name=args.name,
            picture=args.picture,
            scopes=scopes,
            ttl_seconds=args.ttl,
        )
    )
    return 0


def cmd_config_check(args: argparse.Namespace) -> int:
    problems: list[str] = []
    settings: Settings | None = None
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        problems += [f"bad setting {p}" for p in exc.problems]
    config_path = settings.config_path if settings else None
    if config_path is None and os.environ.get("ROOMSVC_CONFIG"):
        config_path = Path(os.environ["ROOMSVC_CONFIG"])
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        problems += [f"bad config {exc.path}: {p}" for p in exc.problems]
        config = None
    for problem in problems:
        print(f"roomsvc: {problem}", file=sys.stderr)
    if problems:
        return EXIT_FAILURE
    apps = len(config.applications) if config else 0
    print(f"ok: settings valid; {apps} application(s) in the config")
    return 0


def cmd_analytics_export(args: argparse.Namespace) -> int:
    from roomsvc.analytics.export import run_export

    settings = _settings_or_exit()
    if isinstance(settings, int):
        return settings
    return run_export(settings, args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="roomsvc", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser("serve", help="run the service (embedded store unless REDIS_URL)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=int(os.environ.get("PORT", "8080")))
    serve.add_argument("--workers", type=int, default=1)
    serve.add_argument("--graceful-seconds", type=int, default=10, help=argparse.SUPPRESS)
    serve.set_defaults(func=cmd_serve)

    token = sub.add_parser("token", help="print a dev JWT signed with ROOMSVC_JWT_SECRET")
    token.add_argument("--player", required=True)
    token.add_argument("--app", required=True)
    token.add_argument("--name")
    token.add_argument("--picture")
    token.add_argument(
        "--scope", action="append", help="games (default), games_lite, or a full scope URL"
    )
    token.add_argument("--ttl", type=int, default=86_400, help="seconds (default one day)")
    token.set_defaults(func=cmd_token)

    config = sub.add_parser("config", help="configuration tools")
    config_sub = config.add_subparsers(dest="config_command", required=True)
    check = config_sub.add_parser("check", help="validate the environment and the config file")
    check.set_defaults(func=cmd_config_check)

    analytics = sub.add_parser("analytics", help="analytics tools")
    analytics_sub = analytics.add_subparsers(dest="analytics_command", required=True)
    export = analytics_sub.add_parser("export", help="write stored analytics items as NDJSON")
    export.add_argument("--app", help="one application (default: every application)")
    export.add_argument("--since", help="ISO time or stream id to start from")
    export.set_defaults(func=cmd_analytics_export)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "workers", 1) < 1:
        return fail("--workers must be at least 1", EXIT_USAGE)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
