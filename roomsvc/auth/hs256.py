"""The common HS256 token, checked in about 12 us instead of PyJWT's 215 us (docs/performance.md
"Joins": the token check was a tenth of a socket's handshake CPU).

Only the plain case is decided here: a three-segment compact token whose header holds nothing
but `alg: HS256` (and `typ`, `kid`), whose signature matches, whose payload is a JSON object
with `sub` and `exp`, and whose time claims are numbers that make it valid now. Anything else,
including every token that fails, returns None, and the caller asks PyJWT, which then accepts
or explains the refusal. So this path can only ever accept what PyJWT accepts, with the same
claims (`tests/test_auth.py` checks the two side by side on valid, tampered, expired and odd
tokens).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
from typing import Any, TypeGuard

_SEGMENT = re.compile(r"[A-Za-z0-9_-]+")
_HEADER_KEYS = frozenset({"alg", "typ", "kid"})


def _segment(text: str) -> bytes | None:
    if not _SEGMENT.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def _json_object(raw: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def _number(value: object) -> TypeGuard[int | float]:
    # Finite: Python's JSON reads `Infinity`, and int() of it raises (PyJWT is left to refuse it)
    if isinstance(value, float):
        return math.isfinite(value)
    return isinstance(value, int) and not isinstance(value, bool)


def claims_if_plainly_valid(
    token: str, key: bytes, now: float, leeway: float
) -> dict[str, Any] | None:
    """The claims of a plainly valid HS256 token (module docstring), else None."""
    parts = token.split(".")
    if len(parts) != 3:
        return None
    header_segment, payload_segment, signature_segment = parts
    header_raw = _segment(header_segment)
    signature = _segment(signature_segment)
    if header_raw is None or signature is None:
        return None
    header = _json_object(header_raw)
    if (
        header is None
        or header.get("alg") != "HS256"
        or not _HEADER_KEYS.issuperset(header)
        or not all(isinstance(v, str) for v in header.values())
    ):
        return None
    signing_input = f"{header_segment}.{payload_segment}".encode("ascii")
    expected = hmac.new(key, signing_input, hashlib.sha256).digest()
    if not hmac.compare_digest(signature, expected):
        return None
    payload_raw = _segment(payload_segment)
    claims = _json_object(payload_raw) if payload_raw is not None else None
    if claims is None or not isinstance(claims.get("sub"), str) or "aud" in claims:
        return None
    if "jti" in claims and not isinstance(claims["jti"], str):
        return None
    exp = claims.get("exp")
    if not _number(exp) or int(exp) <= now - leeway:
        return None
    for name in ("iat", "nbf"):
        if name in claims and (not _number(claims[name]) or int(claims[name]) > now + leeway):
            return None
    return claims
