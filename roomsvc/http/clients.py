"""The JavaScript client at `/sdk/`, the browser demo at `/demo/`, and the demo's dev tokens.

Both are static files of the checkout (`clients/js/`, `clients/demo/`), served as they are: no
build step. `POST /demo/token` mints a player token for the browser, and exists only while the
server runs with the public dev secret (anyone can mint those tokens anyway); with a real
secret or public keys it is a 404 like any unknown path (README, "The browser demo").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from roomsvc.auth.tokens import _is_id, mint_token
from roomsvc.common.errors import N_, InvalidArgument
from roomsvc.http.plumbing import read_body, respond

CLIENTS_DIR = Path(__file__).resolve().parent.parent.parent / "clients"
DEMO_APP_ID = "demo"
DEMO_TOKEN_TTL_S = 12 * 3600
_ID_RULE = "1 to 128 printable characters, no spaces, braces or colons"
# roomsvc.js is the entry point; the others are the modules it imports relatively, so they
# are served next to it (docs/clients.md, "JavaScript").
_JS = "text/javascript; charset=utf-8"
_SDK_FILES = {
    "roomsvc.js": _JS,
    "base64.js": _JS,
    "client.js": _JS,
    "connection.js": _JS,
    "errors.js": _JS,
    "frames.js": _JS,
    "mesh.js": _JS,
    "peer_link.js": _JS,
    "rooms.js": _JS,
    "roomsvc.d.ts": "application/typescript; charset=utf-8",
}


class DemoTokenRequest(msgspec.Struct, rename="camel"):
    player_id: str = ""
    name: str | None = None
    application_id: str = DEMO_APP_ID


class DemoToken(msgspec.Struct, rename="camel"):
    token: str
    player_id: str
    application_id: str
    expires_in_seconds: int


async def sdk_file(request: Request) -> Response:
    name = request.path_params["name"]
    path = CLIENTS_DIR / "js" / name
    if name not in _SDK_FILES or not path.is_file():
        raise HTTPException(404)
    # no-cache: a browser revalidates (ETag) and so never runs a client older than the server.
    return FileResponse(path, media_type=_SDK_FILES[name], headers={"Cache-Control": "no-cache"})


async def demo_token(request: Request) -> Response:
    settings = request.app.state.settings
    if not settings.uses_dev_secret:
        raise HTTPException(404)
    body = await read_body(request, DemoTokenRequest)
    for field, value in (("playerId", body.player_id), ("applicationId", body.application_id)):
        if not _is_id(value):
            raise InvalidArgument(N_("Invalid value for field {field}: {detail}"), field=field,
                                  detail=_ID_RULE)  # fmt: skip
    name = (body.name or "").strip()[:64] or None
    token = mint_token(settings.jwt_secret, body.player_id, body.application_id, name=name,
                       ttl_seconds=DEMO_TOKEN_TTL_S)  # fmt: skip
    return respond(request, DemoToken(token, body.player_id, body.application_id, DEMO_TOKEN_TTL_S))


class _DemoFiles(StaticFiles):
    """The demo's files; revalidated on every load, like the SDK it imports."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


routes: list[BaseRoute] = [
    Route("/sdk/{name}", sdk_file, methods=["GET", "HEAD"]),
    Route("/demo/token", demo_token, methods=["POST"]),
    Mount("/demo", _DemoFiles(directory=CLIENTS_DIR / "demo", html=True, check_dir=False)),
]
duties: list = []
