"""REST plumbing (roomsvc/http/plumbing.py) that replaces a Starlette helper for speed must agree
with it."""

from __future__ import annotations

from typing import Any

import pytest
from starlette.requests import Request

from roomsvc.http.plumbing import base_url_of


def _request(scheme: str, headers: list[tuple[bytes, bytes]], root_path: str = "") -> Request:
    scope: dict[str, Any] = {
        "type": "http",
        "method": "GET",
        "scheme": scheme,
        "path": "/games/v1/rooms/r1",
        "raw_path": b"/games/v1/rooms/r1",
        "root_path": root_path,
        "query_string": b"",
        "headers": headers,
        "server": ("10.0.0.5", 8080),
    }
    return Request(scope)


@pytest.mark.parametrize(
    ("scheme", "headers", "root_path"),
    [
        ("http", [(b"host", b"127.0.0.1:8080")], ""),
        ("https", [(b"host", b"games.example.com")], ""),
        ("https", [(b"host", b"games.example.com")], "/rooms-api"),
        ("http", [], ""),  # no Host header: the server address
        ("http", [], "/prefix"),
    ],
)
def test_base_url_matches_starlettes(
    scheme: str, headers: list[tuple[bytes, bytes]], root_path: str
) -> None:
    request = _request(scheme, headers, root_path)
    assert base_url_of(request) == str(request.base_url).rstrip("/")
