"""Analytics service functions (docs/spec.md §8), independent of the transport that calls them.

Callers are players (a normal token, docs/spec.md §2, with the games or games_lite scope) or
anonymous sessions. An anonymous-session token is a short-lived HS256 JWT that roomsvc issues itself
(`POST /analytics/v1/AnonymousSession`): `sub` = a random session id, `app`, `anon: true`, `aud` =
"roomsvc:analytics". It is signed with a key derived from ROOMSVC_JWT_SECRET, never with the secret
itself, so it can never pass as a player token (and the rooms never accept it).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import uuid
from typing import Any

import jwt

from roomsvc.analytics import rules as analytics
from roomsvc.analytics.store import AnalyticsStore, AppendResult
from roomsvc.analytics.wire import AnonymousSession
from roomsvc.auth.tokens import SCOPE_GAMES, SCOPE_GAMES_LITE, TokenVerifier, bearer_token
from roomsvc.common.errors import N_, InvalidArgument, Unauthenticated
from roomsvc.common.metrics import ANALYTICS_ITEMS
from roomsvc.settings import Settings

ANONYMOUS_TTL_SECONDS = 3600
ANONYMOUS_AUDIENCE = "roomsvc:analytics"
# A client's BatchId stays a no-op for a day; markers minted per request only need to outlive
# redis-py's own retries of that request.
CLIENT_BATCH_TTL_MS = 24 * 3600 * 1000
MINTED_BATCH_TTL_MS = 10 * 60 * 1000
_APP_ID_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,128}$")
_SESSION_RE = re.compile(r"^[0-9a-f]{32}$")


def anonymous_key(settings: Settings) -> bytes:
    return hmac.new(
        settings.jwt_secret.encode(), b"roomsvc analytics anonymous session v1", hashlib.sha256
    ).digest()


def mint_anonymous_session(settings: Settings, app_id: str | None, now: int) -> AnonymousSession:
    """A new anonymous session of `app_id`, valid ANONYMOUS_TTL_SECONDS from `now` (seconds)."""
    if not app_id or not _APP_ID_RE.match(app_id):
        raise InvalidArgument(N_("ApplicationId must be 1 to 128 of A-Z a-z 0-9 _ . -"))
    session_id = uuid.uuid4().hex
    claims: dict[str, Any] = {
        "sub": session_id,
        "app": app_id,
        "anon": True,
        "aud": ANONYMOUS_AUDIENCE,
        "iat": now,
        "exp": now + ANONYMOUS_TTL_SECONDS,
    }
    token = jwt.encode(claims, anonymous_key(settings), algorithm="HS256")
    return AnonymousSession(token, session_id, app_id, ANONYMOUS_TTL_SECONDS)


def source_of(token: str, verifier: TokenVerifier, settings: Settings) -> analytics.Source:
    """The caller behind `token`: an anonymous session or a player with a games scope."""
    try:
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        raise Unauthenticated(N_("The bearer token is malformed.")) from None
    if unverified.get("anon") is not True:
        principal = verifier.verify(token)
        principal.require_scope(SCOPE_GAMES, SCOPE_GAMES_LITE)
        return analytics.Source(principal.app_id, player_id=principal.player_id)
    try:
        claims = jwt.decode(
            token,
            anonymous_key(settings),
            algorithms=["HS256"],
            audience=ANONYMOUS_AUDIENCE,
            options={"require": ["sub", "app", "exp", "aud"]},
            leeway=5,
        )
    except jwt.ExpiredSignatureError:
        raise Unauthenticated(N_("The anonymous session has expired; start a new one.")) from None
    except jwt.PyJWTError:
        raise Unauthenticated(N_("The anonymous session token is invalid.")) from None
    session_id, app_id = claims["sub"], claims["app"]
    if not isinstance(session_id, str) or not _SESSION_RE.match(session_id):
        raise Unauthenticated(N_("The anonymous session token is invalid."))
    if not isinstance(app_id, str) or not _APP_ID_RE.match(app_id):
        raise Unauthenticated(N_("The anonymous session token is invalid."))
    return analytics.Source(app_id, session_id=session_id)


async def add_events(
    store: AnalyticsStore,
    settings: Settings,
    verifier: TokenVerifier,
    raw: bytes,
    *,
    authorization: str | None,
    single: bool,
    now_ms: int,
) -> AppendResult:
    """Validate the whole body, then store every item or none (AddEventBatch / AddEvent).

    The token is the body's `Token`, else the `Authorization: Bearer` header's.
    """
    request = analytics.decode_request(raw)
    token = request.any_token()
    if not token and authorization:
        token = bearer_token(authorization, {})
    if not token:
        raise Unauthenticated(
            N_("A token is required: Token in the body or an Authorization: Bearer header.")
        )
    source = source_of(token, verifier, settings)
    batch = analytics.parse_batch(
        request, raw, single=single, max_items=settings.analytics_max_items
    )
    items = analytics.records(batch, source, now_ms)
    if batch.batch_id is not None:
        marker, ttl = (source.user_key, batch.batch_id), CLIENT_BATCH_TTL_MS
    else:
        # "m" is no caller's key: a minted marker never meets a client's BatchId.
        marker, ttl = ("m", uuid.uuid4().hex), MINTED_BATCH_TTL_MS
    result = await store.append(
        source.app_id, marker, items, maxlen=settings.analytics_stream_maxlen, marker_ttl_ms=ttl
    )
    if result.stored:
        ANALYTICS_ITEMS.inc(result.count)
    return result
