"""ICE servers for a peer-to-peer mesh (docs/messages.md "NAT traversal"). Pure: no I/O.

STUN from `ROOMSVC_STUN_URIS`; TURN from `ROOMSVC_TURN_URIS` with time-limited credentials in
the TURN REST API scheme coturn implements with `use-auth-secret`: the username is
`<expiry unix seconds>:<playerId>` and the credential `base64(HMAC-SHA1(secret, username))`, so
coturn checks them with the shared secret alone and roomsvc keeps no TURN state.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from roomsvc.messages.wire import IceServer, IceServers


def turn_credential(secret: str, username: str) -> str:
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return base64.b64encode(digest).decode()


def ice_servers(stun: tuple[str, ...], turn: tuple[str, ...], secret: str | None,
                ttl_seconds: int, player_id: str, now_s: int) -> IceServers:  # fmt: skip
    """The RTCPeerConnection `iceServers` for `player_id`, valid `ttl_seconds` from `now_s`."""
    servers: list[IceServer] = []
    if stun:
        servers.append(IceServer(urls=list(stun)))
    if turn and secret:
        username = f"{now_s + ttl_seconds}:{player_id}"
        servers.append(IceServer(urls=list(turn), username=username,
                                 credential=turn_credential(secret, username)))  # fmt: skip
    return IceServers(ice_servers=servers, ttl_seconds=ttl_seconds)
