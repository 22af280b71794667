"""`roomsvc analytics export [--app A] [--since S] > out.ndjson` (docs/spec.md §8).

Writes every stored analytics item as one JSON line on stdout: the stored document
(analytics_wire.StoredItem) with `StreamId` first. Applications come in name order, items in
stream order. `--since` takes an ISO 8601 time (UTC unless it has an offset) or a stream id,
and keeps items the server received at or after it. When stderr is a terminal, a progress line
is drawn there; stdout carries data only.

The store is REDIS_URL, or without it the embedded store of ROOMSVC_DATA_DIR (it must be
running: export never starts one). The export reads with XRANGE and creates no consumer group,
so it never disturbs the consumers of the stream.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import IO, Any
from urllib.parse import urlsplit

import redis
from redis.cluster import RedisCluster

from roomsvc.settings import Settings
from roomsvc.store import keys
from roomsvc.store.embedded import EmbeddedStore

EXIT_FAILURE = 1
EXIT_USAGE = 2
PAGE = 1000
_STREAM_ID_RE = re.compile(r"^[0-9]+(-[0-9]+)?$")


class ExportError(Exception):
    """One line for the operator; the CLI prints it and exits non-zero."""

    def __init__(self, message: str, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def since_id(value: str | None) -> str:
    """The first stream id to export: `-` (everything), a stream id, or `<ms>-0` of a time."""
    if not value:
        return "-"
    text = value.strip()
    if _STREAM_ID_RE.match(text):
        return text
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ExportError(
            f"--since {value!r} is neither an ISO 8601 time nor a stream id", EXIT_USAGE
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return f"{max(0, int(moment.timestamp() * 1000))}-0"


def store_url(settings: Settings) -> str:
    if settings.redis_url:
        return settings.redis_url
    embedded = EmbeddedStore(settings.data_dir)
    if embedded.uses_unix_socket:
        if not embedded.socket_path.exists():
            raise ExportError(_no_store(settings))
        return embedded.url
    port_file = embedded.data_dir / "valkey.port"
    try:
        return f"redis://127.0.0.1:{int(port_file.read_text().strip())}/0"
    except (OSError, ValueError):
        raise ExportError(_no_store(settings)) from None


def _no_store(settings: Settings) -> str:
    return (
        f"no store is running in {settings.data_dir.resolve()}; start `roomsvc serve` there "
        "or set REDIS_URL"
    )


def connect(settings: Settings) -> Any:
    url = store_url(settings)
    try:
        if "+cluster://" in url:
            client: Any = RedisCluster.from_url(url.replace("+cluster://", "://", 1))
        else:
            client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=10)
            if not url.startswith("unix://") and client.info("cluster").get("cluster_enabled"):
                client.close()
                client = RedisCluster.from_url(url)
        client.ping()
    except (redis.RedisError, OSError) as exc:
        if settings.redis_url is None:
            raise ExportError(_no_store(settings)) from None
        raise ExportError(f"cannot reach the store at {_redacted(url)}: {exc}") from None
    return client


def _redacted(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}{':' if parts.port else ''}{parts.port or ''}"


def applications(client: Any, only: str | None) -> list[str]:
    if only:
        return [only]
    return sorted(member.decode() for member in client.smembers(keys.ANALYTICS_APPS))


def entries(client: Any, app_id: str, start: str) -> Iterator[list[bytes]]:
    """Pages of NDJSON lines of one application's stream from `start`, in stream order."""
    key = keys.analytics_stream(app_id)
    while True:
        page = client.xrange(key, min=start, max="+", count=PAGE)
        if not page:
            return
        lines = []
        for entry_id, fields in page:
            item = fields.get(b"item", b"{}")
            head = b'{"StreamId":"' + entry_id + b'"'
            lines.append(head + (b"," + item[1:] if len(item) > 2 else b"}") + b"\n")
        yield lines
        if len(page) < PAGE:
            return
        start = "(" + page[-1][0].decode()


class Progress:
    """`app-1: 12,000 / 50,000 items` redrawn on a terminal at most ten times a second."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.enabled = stream.isatty()
        self.total = 0
        self._drawn = 0.0

    def show(self, app_id: str, done: int, length: int, final: bool = False) -> None:
        now = time.monotonic()
        if not self.enabled or (not final and now - self._drawn < 0.1):
            return
        self._drawn = now
        self.stream.write(f"\r\x1b[K{app_id}: {done:,} / {length:,} items")
        if final:
            self.stream.write("\n")
        self.stream.flush()

    def summary(self, apps: int) -> None:
        if self.enabled:
            self.stream.write(f"exported {self.total:,} items of {apps} application(s)\n")


def export(client: Any, apps: list[str], start: str, out: IO[bytes], progress: Progress) -> int:
    for app_id in apps:
        length = int(client.xlen(keys.analytics_stream(app_id)))
        done = 0
        for lines in entries(client, app_id, start):
            out.write(b"".join(lines))
            done += len(lines)
            progress.show(app_id, done, length)
        progress.show(app_id, done, length, final=True)
        progress.total += done
    out.flush()
    progress.summary(len(apps))
    return progress.total


def run_export(settings: Settings, args: argparse.Namespace) -> int:
    try:
        start = since_id(args.since)
        client = connect(settings)
    except ExportError as exc:
        print(f"roomsvc: {exc}", file=sys.stderr)
        return exc.code
    try:
        export(
            client, applications(client, args.app), start, sys.stdout.buffer, Progress(sys.stderr)
        )
    except BrokenPipeError:
        # `roomsvc analytics export | head`: the reader has what it wanted. Point stdout at
        # /dev/null so the interpreter's final flush does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (redis.RedisError, OSError) as exc:
        print(f"roomsvc: the store failed during the export: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    finally:
        client.close()
    return 0
