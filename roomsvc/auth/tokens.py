"""Bearer tokens (docs/spec.md §2): verification, scopes, and minting dev tokens.

Tokens are JWTs: `sub` = playerId, `app` = applicationId, `scope` = space-separated scopes,
`exp`, optional `name` and `picture`. HS256 uses `ROOMSVC_JWT_SECRET`; RS256/ES256/EdDSA use the
PEM public keys of `ROOMSVC_JWT_PUBLIC_KEYS` (picked by `kid` = file stem when the token names
one), so a studio's identity service can issue tokens without sharing a secret.
Token values never reach a log line or an error message.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterable, Mapping
from typing import Any, TypeGuard

import jwt

from roomsvc.auth.hs256 import claims_if_plainly_valid
from roomsvc.auth.keys import load_public_keys
from roomsvc.common.errors import N_, PermissionDenied, Unauthenticated
from roomsvc.settings import Settings

SCOPE_GAMES = "https://www.googleapis.com/auth/games"
SCOPE_GAMES_LITE = "https://www.googleapis.com/auth/games_lite"
DEFAULT_SCOPES = (SCOPE_GAMES,)
_ID_MAX = 128
_VERIFIED_CACHE = 50_000  # tokens remembered (a few hundred bytes each)
_LEEWAY = 5  # seconds of clock skew tolerated on `exp`


@dataclasses.dataclass(frozen=True, slots=True)
class Principal:
    """The authenticated caller: a player of one application (the tenant)."""

    player_id: str
    app_id: str
    scopes: frozenset[str]
    name: str | None = None
    picture: str | None = None

    def require_scope(self, *accepted: str) -> None:
        """403 unless the token carries one of `accepted` (docs/spec.md §2)."""
        if not self.scopes.intersection(accepted):
            raise PermissionDenied(scope=" or ".join(accepted))


class TokenVerifier:
    def __init__(self, settings: Settings) -> None:
        self._secret = settings.jwt_secret
        self._hs256_key = _hmac_key(self._secret)
        self._public = load_public_keys(settings.jwt_public_keys)
        self._verified: dict[str, tuple[Principal, float]] = {}

    def _candidates(self, token: str) -> list[tuple[Any, str]]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated(N_("The bearer token is malformed.")) from None
        alg = header.get("alg")
        if alg == "HS256":
            return [(self._secret, "HS256")]
        kid = header.get("kid")
        if kid is not None and kid in self._public:
            return [self._public[kid]]
        return [entry for entry in self._public.values() if entry[1] == alg]

    def verify(self, token: str) -> Principal:
        """The token's principal; verified tokens are remembered until they expire: a signature
        check is a large share of a REST mutation's CPU (docs/performance.md)."""
        return self.verify_until(token)[0]

    def verify_until(self, token: str) -> tuple[Principal, float]:
        """The token's principal and the epoch second it stops being accepted (its `exp` plus
        the leeway): a socket is closed then (docs/realtime.md "A connection's life")."""
        hit = self._verified.get(token)
        if hit is not None:
            if time.time() < hit[1]:
                return hit
            del self._verified[token]
        verified = self._verify(token)
        if len(self._verified) >= _VERIFIED_CACHE:
            self._verified.pop(next(iter(self._verified)))  # oldest first
        self._verified[token] = verified
        return verified

    def _verify(self, token: str) -> tuple[Principal, float]:
        if self._hs256_key is not None:
            plain = claims_if_plainly_valid(token, self._hs256_key, time.time(), _LEEWAY)
            if plain is not None:
                return principal_from_claims(plain), float(plain["exp"]) + _LEEWAY
        candidates = self._candidates(token)
        if not candidates:
            raise Unauthenticated(N_("The token's signing algorithm is not accepted."))
        claims: dict[str, Any] | None = None
        for key, alg in candidates:
            try:
                claims = jwt.decode(
                    token,
                    key,
                    algorithms=[alg],
                    options={"require": ["sub", "exp"]},
                    leeway=_LEEWAY,
                )
                break
            except jwt.ExpiredSignatureError:
                raise Unauthenticated(N_("The bearer token has expired.")) from None
            except (jwt.PyJWTError, OverflowError):  # (PyJWT's int() of an infinite claim)
                continue
        if claims is None:
            raise Unauthenticated(N_("The bearer token is invalid."))
        return principal_from_claims(claims), float(claims["exp"]) + _LEEWAY


def _hmac_key(secret: str | None) -> bytes | None:
    """The HS256 key for the fast path (hs256.py), only where PyJWT would take it too: it
    refuses a key that looks like a public key, and so must every check."""
    if not secret:
        return None
    try:
        return jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256).prepare_key(secret)
    except jwt.PyJWTError:
        return None


def principal_from_claims(claims: dict[str, Any]) -> Principal:
    sub, app = claims.get("sub"), claims.get("app")
    if not _is_id(sub) or not _is_id(app):
        raise Unauthenticated(N_("The bearer token lacks a valid player (sub) or application."))
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise Unauthenticated(N_("The bearer token is invalid."))
    name, picture = claims.get("name"), claims.get("picture")
    return Principal(
        player_id=sub,
        app_id=app,
        scopes=frozenset(scope.split()),
        name=name if isinstance(name, str) and name else None,
        picture=picture if isinstance(picture, str) and picture else None,
    )


def _is_id(value: object) -> TypeGuard[str]:
    # Ids become parts of Redis keys: bounded, printable, and free of our key delimiters.
    return (
        isinstance(value, str)
        and 0 < len(value) <= _ID_MAX
        and value.isprintable()
        and not any(c in value for c in "{}: ")
    )


def bearer_token(authorization: str | None, query: Mapping[str, str]) -> str:
    """The token from `Authorization: Bearer`, else `access_token` / `oauth_token` query."""
    if authorization:
        scheme, _, value = authorization.partition(" ")
        if scheme.lower() != "bearer" or not value.strip():
            raise Unauthenticated(N_("Use the Authorization: Bearer scheme."))
        return value.strip()
    for name in ("access_token", "oauth_token"):
        if query.get(name):
            return query[name]
    raise Unauthenticated(N_("A bearer token is required."))


def mint_token(
    secret: str,
    player_id: str,
    app_id: str,
    *,
    name: str | None = None,
    picture: str | None = None,
    scopes: Iterable[str] = DEFAULT_SCOPES,
    ttl_seconds: int = 86_400,
    now: float | None = None,
) -> str:
    """An HS256 dev token (`roomsvc token`, tests)."""
    issued = int(time.time() if now is None else now)
    claims: dict[str, Any] = {
        "sub": player_id,
        "app": app_id,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    if name:
        claims["name"] = name
    if picture:
        claims["picture"] = picture
    return jwt.encode(claims, secret, algorithm="HS256")
