"""/sdk/ and /demo/ on a real server: the files and their types, the dev-token endpoint that
exists only under the public dev secret, and the demo's own origin on the socket."""

from __future__ import annotations

import json
from collections.abc import Iterator

import httpx
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from tests.dev_server import dev_server
from tests.support import ROOT, ServerProcess, ValkeyProcess, new_app_id, token


@pytest.fixture(scope="module")
def demo_server(valkey: ValkeyProcess) -> Iterator[ServerProcess]:
    with dev_server(valkey.url) as server:
        yield server


def _ws(server: ServerProcess, bearer: str) -> str:
    return server.base_url.replace("http://", "ws://") + f"/games/v1/realtime?access_token={bearer}"


async def _dev_token(server: ServerProcess, **body: str) -> dict:
    async with httpx.AsyncClient(base_url=server.base_url) as http:
        reply = await http.post("/demo/token", json=body)
    assert reply.status_code == 200, reply.text
    return reply.json()


def test_the_sdk_is_served_as_javascript_and_typescript(server: ServerProcess) -> None:
    """/sdk/roomsvc.js, every module it imports and /sdk/roomsvc.d.ts are the files of
    clients/js, typed; any other name is a 404."""
    modules = sorted(path.name for path in (ROOT / "clients" / "js").glob("*.js"))
    assert {"roomsvc.js", "frames.js", "connection.js", "mesh.js"} <= set(modules)
    for name in modules:
        js = httpx.get(f"{server.base_url}/sdk/{name}")
        assert js.status_code == 200, name
        assert js.headers["content-type"] == "text/javascript; charset=utf-8", name
        assert js.content == (ROOT / "clients" / "js" / name).read_bytes(), name
    dts = httpx.get(f"{server.base_url}/sdk/roomsvc.d.ts")
    assert dts.status_code == 200 and dts.headers["content-type"].startswith(
        "application/typescript"
    )
    for name in ("package.json", "nothing.js", "helpers.js"):
        missing = httpx.get(f"{server.base_url}/sdk/{name}")
        assert missing.status_code == 404, name
        assert missing.json()["error"]["status"] == "NOT_FOUND", name


def test_the_demo_is_served_at_demo(server: ServerProcess) -> None:
    """/demo/ is the page, its scripts are JavaScript, /demo redirects to /demo/."""
    page = httpx.get(f"{server.base_url}/demo/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert '<script type="module" src="demo.js">' in page.text
    script = httpx.get(f"{server.base_url}/demo/demo.js")
    assert script.status_code == 200 and "javascript" in script.headers["content-type"]
    bare = httpx.get(f"{server.base_url}/demo", follow_redirects=False)
    assert bare.status_code in (301, 302, 307, 308) and bare.headers["location"].endswith("/demo/")


def test_no_dev_tokens_under_a_real_secret(server: ServerProcess) -> None:
    """With ROOMSVC_JWT_SECRET set, POST /demo/token is a 404 like any unknown path."""
    reply = httpx.post(f"{server.base_url}/demo/token", json={"playerId": "alice"})
    assert reply.status_code == 404 and reply.json()["error"]["status"] == "NOT_FOUND"


async def test_a_dev_token_opens_the_socket(demo_server: ServerProcess) -> None:
    """Under the dev secret the demo's token is a player's token of the asked application."""
    app = new_app_id()
    minted = await _dev_token(demo_server, playerId="alice", name="Alice", applicationId=app)
    assert minted["playerId"] == "alice" and minted["applicationId"] == app
    async with connect(_ws(demo_server, minted["token"]), compression=None) as ws:
        welcome = json.loads(await ws.recv())
    assert welcome["method"] == "welcome"
    assert (welcome["params"]["playerId"], welcome["params"]["applicationId"]) == ("alice", app)
    assert (await _dev_token(demo_server, playerId="bob"))["applicationId"] == "demo"


def test_a_dev_token_needs_a_valid_player_id(demo_server: ServerProcess) -> None:
    """A player id that could not be a token's subject is a 400 naming the field."""
    for player_id in ("", "a b", "x" * 129, "a:b"):
        reply = httpx.post(f"{demo_server.base_url}/demo/token", json={"playerId": player_id})
        assert reply.status_code == 400, player_id
        assert "playerId" in reply.json()["error"]["message"]


async def test_the_own_origin_may_open_the_socket_only_under_the_dev_secret(
    server: ServerProcess, demo_server: ServerProcess
) -> None:
    """The demo's page (the server's own origin) connects under the dev secret; a foreign
    origin never does, and under a real secret neither does the own origin."""
    dev = (await _dev_token(demo_server, playerId="o"))["token"]
    own = demo_server.base_url
    async with connect(_ws(demo_server, dev), origin=own, compression=None) as ws:  # type: ignore[arg-type]
        assert json.loads(await ws.recv())["method"] == "welcome"
    with pytest.raises(InvalidStatus) as foreign:
        await connect(_ws(demo_server, dev), origin="http://evil.example", compression=None)  # type: ignore[arg-type]
    assert foreign.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as strict:
        await connect(
            _ws(server, token("o", new_app_id())), origin=server.base_url, compression=None
        )  # type: ignore[arg-type]
    assert strict.value.response.status_code == 403
