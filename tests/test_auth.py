"""Bearer tokens (docs/spec.md §2): HS256 and public-key JWTs, where the token comes from,
scopes."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import given, settings
from hypothesis import strategies as st
from jwt.utils import base64url_encode

from roomsvc.auth.hs256 import claims_if_plainly_valid
from roomsvc.auth.keys import load_public_keys
from roomsvc.auth.tokens import (
    SCOPE_GAMES,
    SCOPE_GAMES_LITE,
    Principal,
    TokenVerifier,
    bearer_token,
    mint_token,
)
from roomsvc.common.errors import PermissionDenied, Unauthenticated
from roomsvc.settings import Settings

SECRET = "unit-test-secret-" + "y" * 32


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {
        "sub": "p1",
        "app": "app1",
        "scope": SCOPE_GAMES,
        "exp": int(time.time()) + 600,
    }
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _verifier(*key_files: Path) -> TokenVerifier:
    return TokenVerifier(Settings(jwt_secret=SECRET, jwt_public_keys=key_files))


def _private_keys() -> dict[str, Any]:
    return {
        "RS256": rsa.generate_private_key(public_exponent=65537, key_size=2048),
        "ES256": ec.generate_private_key(ec.SECP256R1()),
        "EdDSA": ed25519.Ed25519PrivateKey.generate(),
    }


@pytest.fixture(scope="module")
def private_keys() -> dict[str, Any]:
    return _private_keys()


def _write_public(key: Any, path: Path) -> Path:
    path.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return path


# HS256


def test_hs256_token_gives_the_principal() -> None:
    """A valid HS256 token yields player, application, scopes, name and picture."""
    token = jwt.encode(
        _claims(name="Ana", picture="https://img.example/a.png", scope=f"{SCOPE_GAMES} x"),
        SECRET,
        algorithm="HS256",
    )
    principal = _verifier().verify(token)
    assert principal == Principal(
        player_id="p1",
        app_id="app1",
        scopes=frozenset({SCOPE_GAMES, "x"}),
        name="Ana",
        picture="https://img.example/a.png",
    )


def test_minted_token_verifies() -> None:
    """`mint_token` (used by `roomsvc token`) produces a token the verifier accepts."""
    token = mint_token(SECRET, "p9", "app9", name="Bo", scopes=(SCOPE_GAMES_LITE,))
    principal = _verifier().verify(token)
    assert (principal.player_id, principal.app_id, principal.name) == ("p9", "app9", "Bo")
    assert principal.scopes == {SCOPE_GAMES_LITE}


def test_expired_token_is_401() -> None:
    """A token past its `exp` is rejected with the expiry message."""
    token = mint_token(SECRET, "p1", "app1", ttl_seconds=60, now=time.time() - 3600)
    with pytest.raises(Unauthenticated, match="expired"):
        _verifier().verify(token)


def test_wrong_secret_is_401() -> None:
    """A token signed with another secret is invalid."""
    token = jwt.encode(_claims(), "another-secret-" + "z" * 32, algorithm="HS256")
    with pytest.raises(Unauthenticated, match="invalid"):
        _verifier().verify(token)


@pytest.mark.parametrize("garbage", ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_token_is_401(garbage: str) -> None:
    """A string that is not a JWT is a 401, never a 500."""
    with pytest.raises(Unauthenticated):
        _verifier().verify(garbage)


def test_unsigned_token_is_401() -> None:
    """`alg: none` is never accepted."""
    token = jwt.encode(_claims(), None, algorithm="none")
    with pytest.raises(Unauthenticated):
        _verifier().verify(token)


@pytest.mark.parametrize(
    "claims",
    [
        {"sub": None},
        {"app": None},
        {"exp": None},
        {"sub": ""},
        {"app": 42},
        {"app": "a:b"},
        {"sub": "p{1}"},
        {"sub": "x" * 129},
        {"scope": ["not", "a", "string"]},
    ],
    ids=repr,
)
def test_missing_or_bad_claims_are_401(claims: dict[str, Any]) -> None:
    """sub, app and exp are required; ids must be safe key parts; scope is a string."""
    token = jwt.encode(_claims(**claims), SECRET, algorithm="HS256")
    with pytest.raises(Unauthenticated):
        _verifier().verify(token)


# Public keys: RS256, ES256, EdDSA


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_public_key_token_picked_by_kid(
    alg: str, private_keys: dict[str, Any], tmp_path: Path
) -> None:
    """A token whose `kid` names a key file's stem is verified with that key."""
    files = [_write_public(key, tmp_path / f"{name}-key.pem") for name, key in private_keys.items()]
    token = jwt.encode(
        _claims(sub="pk"), private_keys[alg], algorithm=alg, headers={"kid": f"{alg}-key"}
    )
    assert _verifier(*files).verify(token).player_id == "pk"


@pytest.mark.parametrize("alg", ["RS256", "ES256", "EdDSA"])
def test_public_key_token_without_kid(
    alg: str, private_keys: dict[str, Any], tmp_path: Path
) -> None:
    """Without a `kid`, every configured key of the token's algorithm is tried."""
    other = _private_keys()[alg]  # a second key of the same algorithm, listed first
    files = [
        _write_public(other, tmp_path / "a-other.pem"),
        *(_write_public(key, tmp_path / f"b-{name}.pem") for name, key in private_keys.items()),
    ]
    token = jwt.encode(_claims(sub="nokid"), private_keys[alg], algorithm=alg)
    assert _verifier(*files).verify(token).player_id == "nokid"


def test_public_key_token_signed_by_unknown_key_is_401(
    private_keys: dict[str, Any], tmp_path: Path
) -> None:
    """A token signed by a key that is not configured is invalid, kid or not."""
    pem = _write_public(private_keys["ES256"], tmp_path / "studio.pem")
    stranger = _private_keys()["ES256"]
    for headers in ({"kid": "studio"}, None):
        token = jwt.encode(_claims(), stranger, algorithm="ES256", headers=headers)
        with pytest.raises(Unauthenticated):
            _verifier(pem).verify(token)


def test_public_key_algorithm_without_keys_is_401(private_keys: dict[str, Any]) -> None:
    """An RS256 token with no public keys configured is rejected."""
    token = jwt.encode(_claims(), private_keys["RS256"], algorithm="RS256")
    with pytest.raises(Unauthenticated):
        _verifier().verify(token)


def test_kid_of_another_algorithm_is_401(private_keys: dict[str, Any], tmp_path: Path) -> None:
    """A kid naming an EdDSA key cannot vouch for an RS256 token (no algorithm confusion)."""
    pem = _write_public(private_keys["EdDSA"], tmp_path / "ed.pem")
    token = jwt.encode(_claims(), private_keys["RS256"], algorithm="RS256", headers={"kid": "ed"})
    with pytest.raises(Unauthenticated):
        _verifier(pem).verify(token)


def test_hs256_token_signed_with_a_public_key_is_401(
    private_keys: dict[str, Any], tmp_path: Path
) -> None:
    """An HS256 token using a public PEM as its HMAC secret is rejected."""
    pem = _write_public(private_keys["RS256"], tmp_path / "rsa.pem")
    # PyJWT refuses a PEM as an HMAC key, so the forger signs by hand.
    header = base64url_encode(b'{"alg":"HS256","typ":"JWT"}')
    body = base64url_encode(b'{"sub":"p1","app":"a","exp":%d}' % (time.time() + 600))
    signing_input = header + b"." + body
    signature = hmac.new(pem.read_bytes(), signing_input, hashlib.sha256).digest()
    token = (signing_input + b"." + base64url_encode(signature)).decode()
    with pytest.raises(Unauthenticated):
        _verifier(pem).verify(token)


def test_unusable_public_keys_are_refused(tmp_path: Path) -> None:
    """A P-384 key cannot verify ES256 tokens, so loading it fails instead of every token."""
    pem = _write_public(ec.generate_private_key(ec.SECP384R1()), tmp_path / "p384.pem")
    with pytest.raises(ValueError, match="P-256"):
        load_public_keys([pem])


# Where the token comes from


def test_bearer_header() -> None:
    """`Authorization: Bearer <t>` (scheme case-insensitive) gives the token."""
    assert bearer_token("Bearer abc.def.ghi", {}) == "abc.def.ghi"
    assert bearer_token("bearer  tok ", {}) == "tok"


def test_header_wins_over_query() -> None:
    """When both are present the header is used."""
    assert bearer_token("Bearer head", {"access_token": "query"}) == "head"


@pytest.mark.parametrize("name", ["access_token", "oauth_token"])
def test_query_tokens(name: str) -> None:
    """`?access_token=` (browsers' WebSocket) and GPGS's `?oauth_token=` are accepted."""
    assert bearer_token(None, {name: "from-query"}) == "from-query"


@pytest.mark.parametrize("header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "Token abc"])
def test_other_schemes_are_401(header: str) -> None:
    """Any scheme other than Bearer, or an empty one, is a 401."""
    with pytest.raises(Unauthenticated):
        bearer_token(header, {})


def test_no_token_is_401_with_www_authenticate() -> None:
    """No token at all is a 401 that tells the client to use Bearer."""
    with pytest.raises(Unauthenticated) as info:
        bearer_token(None, {"access_token": ""})
    assert info.value.http_status == 401
    assert info.value.headers()["WWW-Authenticate"].startswith("Bearer")


# Scopes


def test_require_scope_accepts_any_listed_scope() -> None:
    """A principal with one of the accepted scopes passes."""
    lite = Principal("p", "a", frozenset({SCOPE_GAMES_LITE}))
    lite.require_scope(SCOPE_GAMES, SCOPE_GAMES_LITE)


def test_require_scope_missing_is_403() -> None:
    """A principal without the scope gets PermissionDenied naming the scope."""
    lite = Principal("p", "a", frozenset({SCOPE_GAMES_LITE}))
    with pytest.raises(PermissionDenied) as info:
        lite.require_scope(SCOPE_GAMES)
    assert info.value.http_status == 403
    assert SCOPE_GAMES in str(info.value)


def test_a_remembered_token_still_expires() -> None:
    """Verified tokens are cached, but a cached token is refused once its exp (plus the
    clock-skew leeway) has passed, exactly as an uncached one."""
    from roomsvc.settings import Settings
    from tests.support import JWT_SECRET, token, wait_until

    verifier = TokenVerifier(Settings(jwt_secret=JWT_SECRET))
    nearly_expired = token("alice", "app", ttl=-4)  # within the 5 s leeway for about 1 s
    first = verifier.verify(nearly_expired)
    assert verifier.verify(nearly_expired) is first  # served from the cache

    def refused() -> bool:
        try:
            verifier.verify(nearly_expired)
        except Unauthenticated:
            return True
        return False

    wait_until(refused, timeout=5)


# ---- the HS256 fast path (roomsvc/auth/hs256.py) agrees with PyJWT ----------------------------

_ODD_VALUES = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False),
    st.text(max_size=8), st.lists(st.integers(), max_size=2),
)  # fmt: skip


def _pyjwt(token: str, key: str, now: float) -> dict[str, Any] | None:
    """What the slow path accepts (claims) or refuses (None), at `now`."""
    try:
        with freeze_pyjwt_clock(now):
            claims: dict[str, Any] = jwt.decode(
                token, key, algorithms=["HS256"], options={"require": ["sub", "exp"]}, leeway=5
            )
        return claims
    except jwt.PyJWTError:
        return None


@contextlib.contextmanager
def freeze_pyjwt_clock(now: float) -> Iterator[None]:
    """PyJWT reads the time itself: both paths are judged at the same instant."""
    real = jwt.api_jwt.datetime

    class Frozen(real):  # type: ignore[misc, valid-type]
        @classmethod
        def now(cls, tz: Any = None) -> Any:
            return real.fromtimestamp(now, tz)

    jwt.api_jwt.datetime = Frozen  # type: ignore[misc]
    try:
        yield
    finally:
        jwt.api_jwt.datetime = real  # type: ignore[misc]


def _tokens(claims: dict[str, Any], header: dict[str, Any]) -> list[str]:
    try:
        good = jwt.encode(claims, SECRET, algorithm="HS256", headers=header)
    except (jwt.PyJWTError, TypeError, ValueError):
        return []  # PyJWT will not even make it (a kid that is not a string)
    head, body, sig = good.split(".")
    flipped = sig[:-2] + ("A" if sig[-2] != "A" else "B") + sig[-1]
    return [
        good,
        f"{head}.{body}.{flipped}",  # tampered signature
        jwt.encode(claims, SECRET + "x", algorithm="HS256", headers=header),  # another key
        f"{head}.{body}",  # a segment short
        f"{head}.{body}.{sig}=",  # padding where base64url has none
        f"{head}.{body}.{sig}.x",
    ]


@settings(max_examples=300, deadline=None)
@given(
    extra=st.dictionaries(
        st.sampled_from(["exp", "nbf", "iat", "aud", "jti", "sub", "app", "scope", "iss"]),
        _ODD_VALUES, max_size=4,
    ),
    header=st.dictionaries(st.sampled_from(["typ", "kid", "cty", "b64", "crit"]),
                           st.one_of(st.text(max_size=4), st.booleans()), max_size=2),
    ttl=st.integers(-100, 100),
)  # fmt: skip
def test_the_hs256_fast_path_accepts_only_what_pyjwt_accepts(
    extra: dict[str, Any], header: dict[str, Any], ttl: int
) -> None:
    now = time.time()
    claims = {**_claims(exp=int(now) + ttl), **extra}
    for token in _tokens(claims, header):
        fast = claims_if_plainly_valid(token, SECRET.encode(), now, 5)
        if fast is not None:
            assert fast == _pyjwt(token, SECRET, now), token


@pytest.mark.parametrize("claim", ["exp", "nbf", "iat"])
@pytest.mark.parametrize("value", [float("inf"), float("-inf")])
def test_an_infinite_time_claim_is_refused_not_an_error(claim: str, value: float) -> None:
    """Python's JSON reads `Infinity`: a signed token whose time claim is infinite is refused
    (401) by both paths, not a crash (int() of it raises)."""
    now = time.time()
    (token, *_) = _tokens(_claims(**{claim: value}), {})
    assert claims_if_plainly_valid(token, SECRET.encode(), now, 5) is None
    with pytest.raises(Unauthenticated):
        _verifier().verify(token)


def test_the_hs256_fast_path_takes_the_plain_token() -> None:
    """The common case is decided without PyJWT, and a refusal is left to it."""
    now = time.time()
    token = mint_token(SECRET, "alice", "app1", ttl_seconds=60, now=now)
    assert claims_if_plainly_valid(token, SECRET.encode(), now, 5) == _pyjwt(token, SECRET, now)
    expired = mint_token(SECRET, "alice", "app1", ttl_seconds=60, now=now - 120)
    assert claims_if_plainly_valid(expired, SECRET.encode(), now, 5) is None
    with pytest.raises(Unauthenticated, match="expired"):
        _verifier().verify(expired)
