"""`roomsvc analytics export` as a subprocess against the real store (docs/spec.md §8)."""

from __future__ import annotations

import base64
import json
import os
import pty
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from roomsvc.analytics.export import ExportError, since_id
from roomsvc.store import keys
from tests.support import (
    ServerProcess,
    ValkeyProcess,
    new_app_id,
    roomsvc_cli,
    running_server,
    token,
)

MEDIA = {"MovieId": 35936, "MediaType": 1}


def sent_batch(app_id: str, n: int, event: str = "Watch") -> dict[str, Any]:
    return {
        "Token": token("p1", app_id),
        "mediaInfo": base64.b64encode(json.dumps(MEDIA).encode()).decode(),
        "eventData": [
            {"Timestamp": 1_700_000_000_000 + i, "Event": f"{event}{i}",
             "Data": [{"Second": i, "Paused": i % 2 == 0, "Note": None}]}
            for i in range(n)
        ],
    }  # fmt: skip


async def send(http: httpx.AsyncClient, body: dict[str, Any]) -> None:
    response = await http.post("/analytics/v1/AddEventBatch", json=body)
    assert response.json()["StatusCode"] == 0


def export(valkey: ValkeyProcess, *args: str) -> subprocess.CompletedProcess[str]:
    return roomsvc_cli("analytics", "export", *args, env={"REDIS_URL": valkey.url})


def lines(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


async def test_export_round_trips_what_was_sent(
    http: httpx.AsyncClient, valkey: ValkeyProcess, app_id: str
) -> None:
    """Export of one app writes every sent item as NDJSON, in order, with its stream id."""
    first, second = sent_batch(app_id, 3, "A"), sent_batch(app_id, 2, "B")
    await send(http, first)
    await send(http, second)
    result = export(valkey, "--app", app_id)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""  # no progress display when stderr is not a terminal
    docs = lines(result.stdout)
    sent = first["eventData"] + second["eventData"]
    assert [(d["Timestamp"], d["Event"], d["Data"]) for d in docs] == [
        (i["Timestamp"], i["Event"], i["Data"]) for i in sent
    ]
    assert all(d["MediaInfo"] == MEDIA and d["ApplicationId"] == app_id for d in docs)
    assert [d["StreamId"] for d in docs] == sorted(
        (d["StreamId"] for d in docs), key=lambda s: tuple(map(int, s.split("-")))
    )
    assert next(iter(docs[0])) == "StreamId"


async def test_export_without_app_covers_every_application(
    http: httpx.AsyncClient, valkey: ValkeyProcess
) -> None:
    """Without --app, every application that has a stream is exported."""
    apps = [new_app_id(), new_app_id()]
    for app in apps:
        await send(http, sent_batch(app, 2))
    result = export(valkey)
    assert result.returncode == 0, result.stderr
    seen = [d["ApplicationId"] for d in lines(result.stdout)]
    for app in apps:
        assert seen.count(app) == 2


async def test_export_since_a_stream_id_or_a_time(
    http: httpx.AsyncClient, valkey: ValkeyProcess, store: Any, app_id: str
) -> None:
    """--since keeps items received at or after a stream id or an ISO time."""
    await send(http, sent_batch(app_id, 4))
    ids = [entry_id.decode() for entry_id, _ in await store.xrange(keys.analytics_stream(app_id))]
    from_third = export(valkey, "--app", app_id, "--since", ids[2])
    assert [d["StreamId"] for d in lines(from_third.stdout)] == ids[2:]
    future = export(valkey, "--app", app_id, "--since", "2999-01-01T00:00:00Z")
    assert (future.returncode, future.stdout) == (0, "")


@pytest.mark.parametrize(
    ("since", "start"),
    [
        (None, "-"),
        ("1714557600000-3", "1714557600000-3"),
        ("1714557600000", "1714557600000"),
        ("2024-05-01T10:00:00Z", "1714557600000-0"),
        ("2024-05-01T12:00:00+02:00", "1714557600000-0"),
        ("2024-05-01T10:00:00", "1714557600000-0"),
    ],
)
def test_since_is_a_stream_id_or_an_iso_time(since: str | None, start: str) -> None:
    """--since takes a stream id as is, and an ISO time (UTC unless offset) as `<ms>-0`."""
    assert since_id(since) == start


def test_a_bad_since_is_a_usage_error() -> None:
    """An unparsable --since is a usage error (exit code 2) naming the option."""
    with pytest.raises(ExportError) as caught:
        since_id("last week")
    assert caught.value.code == 2
    assert "--since" in str(caught.value)


def test_export_without_a_running_store_says_so(tmp_path: Path) -> None:
    """With REDIS_URL unset and no embedded store in the data dir: one line, non-zero exit."""
    result = roomsvc_cli("analytics", "export", env={"ROOMSVC_DATA_DIR": str(tmp_path)})
    assert result.returncode != 0
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert "no store is running" in result.stderr


def test_progress_is_drawn_on_a_terminal(
    server: ServerProcess, valkey: ValkeyProcess, app_id: str
) -> None:
    """With stderr on a terminal, export draws progress there and keeps stdout pure NDJSON."""
    url = f"{server.base_url}/analytics/v1/AddEventBatch"
    assert httpx.post(url, json=sent_batch(app_id, 3)).json()["StatusCode"] == 0
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ROOMSVC_")}
    env["REDIS_URL"] = valkey.url
    try:
        result = subprocess.run(
            [sys.executable, "-m", "roomsvc.cli", "analytics", "export", "--app", app_id],
            env=env, stdout=subprocess.PIPE, stderr=terminal, timeout=60, check=False,
        )  # fmt: skip
    finally:
        os.close(terminal)
    try:
        drawn = b""
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:
                break
            if not chunk:
                break
            drawn += chunk
    finally:
        os.close(controller)
    assert result.returncode == 0
    assert len(lines(result.stdout.decode())) == 3
    assert f"{app_id}: 3 / 3 items".encode() in drawn


async def test_export_reads_the_embedded_store_of_the_data_dir(tmp_path: Path) -> None:
    """With REDIS_URL unset, export reads the store `roomsvc serve` runs in ROOMSVC_DATA_DIR."""
    app_id = new_app_id()
    with running_server(None, cwd=tmp_path) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as http:
            await send(http, sent_batch(app_id, 2))
        data_dir = str(tmp_path / ".roomsvc")
        result = roomsvc_cli("analytics", "export", env={"ROOMSVC_DATA_DIR": data_dir})
    assert result.returncode == 0, result.stderr
    assert [d["Event"] for d in lines(result.stdout)] == ["Watch0", "Watch1"]
