"""The floor under every REST figure (docs/spec.md §11): uvicorn with `roomsvc serve`'s flags
serving one bare Starlette route that reads a JSON body and answers a fixed RoomStatus-sized body,
no auth, no store, no middleware of ours. `scripts/bench_rooms.py` drives it with the same client
and prints its requests/s and CPU per request beside the REST figure.

    .venv/bin/python -m uvicorn --app-dir scripts http_floor_app:app --http httptools \
        --loop uvloop --no-access-log --port 8099
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

# A reportStatus reply of an 8-player room is ~1.4 KB: answer as much.
BODY = b'{"kind":"games#roomStatus","roomId":"floor","status":"ROOM_ACTIVE","statusVersion":9,' + (
    b'"participants":[' + b",".join([b'{"kind":"games#roomParticipant","id":"p_0123456789ab",'
    b'"status":"PARTICIPANT_JOINED","connected":true,"player":{"playerId":"floor-player",'
    b'"displayName":"Floor"}}'] * 8) + b"]}"
)  # fmt: skip


async def mutation(request: Request) -> Response:
    await request.body()
    return Response(BODY, media_type="application/json; charset=UTF-8")


app = Starlette(routes=[Route("/games/v1/rooms/{roomId}/{verb}", mutation, methods=["POST"])])
