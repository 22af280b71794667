"""PEM public keys for RS256, ES256 (P-256) and EdDSA tokens (docs/spec.md §2), loaded in one
place: settings validate `ROOMSVC_JWT_PUBLIC_KEYS` with it at start-up and the verifier loads
the same files with it, so a key that passes the one passes the other."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key


def _algorithm_for(key: Any) -> str:
    if isinstance(key, rsa.RSAPublicKey):
        return "RS256"
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ec.SECP256R1):
            raise ValueError(f"ES256 needs a P-256 key, not {key.curve.name}")
        return "ES256"
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "EdDSA"
    raise ValueError(f"unsupported public key type {type(key).__name__}")


def load_public_keys(paths: Iterable[Path]) -> dict[str, tuple[Any, str]]:
    """kid (file stem) -> (key, algorithm). A file may hold one PEM public key."""
    keys: dict[str, tuple[Any, str]] = {}
    for path in paths:
        key = load_pem_public_key(path.read_bytes())
        keys[path.stem] = (key, _algorithm_for(key))
    return keys
