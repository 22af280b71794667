"""One error tree in Google's JSON error shape (docs/spec.md §3), in en, es and hi (docs/spec.md
§9)."""

from __future__ import annotations

import json

import httpx
import pytest
from starlette.requests import Request

from roomsvc.auth.tokens import SCOPE_GAMES_LITE
from roomsvc.common import i18n
from roomsvc.common.errors import (
    N_,
    Conflict,
    InternalError,
    InvalidArgument,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    RateLimited,
    RoomsvcError,
    StoreUnavailable,
    Unauthenticated,
    UnsupportedMediaType,
)
from roomsvc.http.plumbing import as_roomsvc_error, error_body, handle_error
from tests.support import auth, token

# class -> (HTTP status, Google status, Google reason, JSON-RPC code)
TREE: dict[type[RoomsvcError], tuple[int, str, str, int]] = {
    InvalidArgument: (400, "INVALID_ARGUMENT", "invalid", -32602),
    PayloadTooLarge: (413, "INVALID_ARGUMENT", "payloadTooLarge", -32600),
    UnsupportedMediaType: (415, "INVALID_ARGUMENT", "unsupportedMediaType", -32600),
    Unauthenticated: (401, "UNAUTHENTICATED", "authError", -32001),
    PermissionDenied: (403, "PERMISSION_DENIED", "insufficientPermissions", -32003),
    NotFound: (404, "NOT_FOUND", "notFound", -32004),
    Conflict: (409, "ABORTED", "conflict", -32009),
    RateLimited: (429, "RESOURCE_EXHAUSTED", "rateLimitExceeded", -32029),
    StoreUnavailable: (503, "UNAVAILABLE", "backendError", -32053),
    InternalError: (500, "INTERNAL", "backendError", -32603),
}


def make(cls: type[RoomsvcError]) -> RoomsvcError:
    if cls is PayloadTooLarge:
        return cls(limit=1024)
    if cls is PermissionDenied:
        return cls(scope="games")
    if cls in (RateLimited, StoreUnavailable):
        return cls(retry_after=7)
    return cls()


def request(query: str = "", headers: dict[str, str] | None = None) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    scope = {"type": "http", "method": "GET", "path": "/x", "query_string": query.encode(),
             "headers": raw}  # fmt: skip
    return Request(scope)


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_each_error_knows_its_codes(cls: type[RoomsvcError]) -> None:
    """Every class carries its HTTP status, Google status and reason, and JSON-RPC code."""
    error = make(cls)
    assert (error.http_status, error.status, error.reason, error.rpc_code) == TREE[cls]
    assert isinstance(error, RoomsvcError)


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
def test_google_error_shape(cls: type[RoomsvcError]) -> None:
    """error_body is `{"error": {code, status, message, errors: [{domain, reason, message}]}}`."""
    error = make(cls)
    code, status, reason, _ = TREE[cls]
    body = error_body(error, "en")
    message = body["error"]["message"]
    assert body == {
        "error": {
            "code": code,
            "status": status,
            "message": message,
            "errors": [{"domain": "global", "reason": reason, "message": message}],
        }
    }
    assert message and "{" not in message  # fields are filled in
    json.dumps(body)


@pytest.mark.parametrize("cls", list(TREE), ids=lambda c: c.__name__)
@pytest.mark.parametrize("locale", ["es", "hi"])
def test_messages_are_translated(cls: type[RoomsvcError], locale: str) -> None:
    """The default message of every error exists in es and hi and differs from English."""
    error = make(cls)
    english = error_body(error, "en")["error"]["message"]
    translated = error_body(error, locale)["error"]["message"]
    assert translated != english
    assert "{" not in translated


def test_message_parameters_are_filled_in_every_language() -> None:
    """`{limit}`, `{scope}` and `{seconds}` appear as values in every language."""
    for locale in i18n.LOCALES:
        assert "1024" in PayloadTooLarge(limit=1024).message(locale)
        assert "games" in PermissionDenied(scope="games").message(locale)
        assert "7" in RateLimited(retry_after=7).message(locale)


def test_known_spanish_and_hindi_texts() -> None:
    """Sample texts come from the catalogs, not from English."""
    assert NotFound().message("es") == "No encontrado."
    hindi = NotFound().message("hi")
    assert any("\u0900" <= ch <= "\u097f" for ch in hindi)  # Devanagari


def test_unauthenticated_carries_www_authenticate() -> None:
    """401 carries `WWW-Authenticate: Bearer`."""
    assert Unauthenticated().headers()["WWW-Authenticate"].startswith("Bearer")


@pytest.mark.parametrize("cls", [RateLimited, StoreUnavailable])
def test_retry_later_errors_carry_retry_after(cls: type[RoomsvcError]) -> None:
    """429 and 503 carry `Retry-After` in whole seconds, at least 1."""
    assert cls(retry_after=7).headers() == {"Retry-After": "7"}
    assert cls(retry_after=0).headers() == {"Retry-After": "1"}
    assert cls().headers()["Retry-After"].isdigit()


@pytest.mark.parametrize("cls", [InvalidArgument, PermissionDenied, NotFound, InternalError])
def test_other_errors_carry_no_special_headers(cls: type[RoomsvcError]) -> None:
    """Only 401, 429 and 503 add headers."""
    assert make(cls).headers() == {}


async def test_handle_error_renders_status_headers_and_language() -> None:
    """The exception handler sends the status, the error's headers and the localized shape."""
    response = await handle_error(request("language=es"), Unauthenticated())
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"].startswith("application/json")
    body = json.loads(bytes(response.body))
    assert body["error"]["message"] == Unauthenticated().message("es")

    response = await handle_error(
        request(headers={"Accept-Language": "hi-IN"}), RateLimited(retry_after=3)
    )
    assert response.status_code == 429 and response.headers["retry-after"] == "3"
    assert json.loads(bytes(response.body))["error"]["message"] == RateLimited(
        retry_after=3
    ).message("hi")


def test_store_errors_become_503_and_unknown_errors_500() -> None:
    """A connection error is StoreUnavailable (503); any other exception is InternalError."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    assert isinstance(as_roomsvc_error(RedisConnectionError("down")), StoreUnavailable)
    assert isinstance(as_roomsvc_error(ConnectionRefusedError()), StoreUnavailable)
    assert isinstance(as_roomsvc_error(TimeoutError()), StoreUnavailable)
    # Not every OSError is an outage: a file error is a bug or a misconfiguration.
    assert isinstance(as_roomsvc_error(PermissionError("/etc/roomsvc.toml")), InternalError)
    internal = as_roomsvc_error(ZeroDivisionError("secret detail"))
    assert isinstance(internal, InternalError)
    assert "secret detail" not in error_body(internal, "en")["error"]["message"]
    conflict = Conflict()
    assert as_roomsvc_error(conflict) is conflict


def test_custom_message_id_with_fields() -> None:
    """An error raised with its own message id renders it with the fields, per language."""
    error = InvalidArgument(N_("Invalid value for field {field}: {detail}"), field="x", detail="d")
    assert error.message("en") == "Invalid value for field x: d"
    assert error.message("es") == "Valor no válido para el campo x: d"
    assert str(error) == "Invalid value for field x: d"


def test_untranslated_message_falls_back_to_english() -> None:
    """A message id missing from a catalog renders in English, fields filled."""
    error = Conflict("No such message {n}.", n=3)
    assert error.message("es") == "No such message 3."


# Language negotiation (docs/spec.md §9)


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("es", "es"),
        ("es-419", "es"),
        ("es_MX", "es"),
        ("ES", "es"),
        ("hi", "hi"),
        ("hi-IN", "hi"),
        ("Hi-in", "hi"),
        ("en-GB", "en"),
        ("fr", "en"),
        ("zh-Hant-TW", "en"),
        ("not a tag!", "en"),
    ],
)
def test_language_parameter(language: str, expected: str) -> None:
    """`language` (BCP 47) picks en, es or hi; anything else is en."""
    assert i18n.negotiate(language, None) == expected


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        ("es-419", "es"),
        ("hi-IN,hi;q=0.9,en;q=0.8", "hi"),
        ("fr", "en"),
        ("fr-CA, fr;q=0.9", "en"),
        ("fr, hi;q=0.5, es;q=0.8", "es"),
        ("en;q=0.1, es;q=0.2", "es"),
        ("es;q=0, hi;q=0.3", "hi"),
        ("de, *;q=0.5", "en"),
        ("en-US,es;q=0.9", "en"),
        ("es;q=nonsense, hi", "hi"),
        (",;;q=,", "en"),
    ],
)
def test_accept_language(header: str, expected: str) -> None:
    """Accept-Language honours q-values (q=0 excluded) and falls back to en."""
    assert i18n.negotiate(None, header) == expected


def test_language_parameter_wins_over_accept_language() -> None:
    """`language` takes precedence over the header."""
    assert i18n.negotiate("hi", "es") == "hi"
    assert i18n.negotiate(None, None) == "en"


def test_locale_of_request() -> None:
    """A request's locale comes from `language`, else from Accept-Language."""
    from roomsvc.http.plumbing import locale_of

    assert locale_of(request("language=es-419", {"Accept-Language": "hi"})) == "es"
    assert locale_of(request("", {"Accept-Language": "hi-IN"})) == "hi"
    assert locale_of(request("alt=json")) == "en"


@pytest.mark.parametrize(
    ("locale", "expected"), [("en", "1,234,567"), ("es", "1.234.567"), ("hi", "12,34,567")]
)
def test_number_formatting(locale: str, expected: str) -> None:
    """Numbers are grouped the way each language writes them (Babel/CLDR)."""
    assert i18n.format_number(1234567, locale) == expected


# Over HTTP, through a real server (rooms.list is an authenticated route)


async def test_http_401_without_token(http: httpx.AsyncClient) -> None:
    """No token: 401, `WWW-Authenticate: Bearer`, Google's shape in the asked language."""
    response = await http.get("/games/v1/rooms", params={"language": "es-419"})
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert (error["code"], error["status"], error["errors"][0]["reason"]) == (
        401,
        "UNAUTHENTICATED",
        "authError",
    )
    assert error["message"] == i18n.gettext("es", "A bearer token is required.")


async def test_http_401_with_expired_token(http: httpx.AsyncClient, app_id: str) -> None:
    """An expired token: 401 with WWW-Authenticate, message in Hindi from Accept-Language."""
    expired = token("p1", app_id, ttl=-60)
    response = await http.get(
        "/games/v1/rooms",
        headers={"Authorization": f"Bearer {expired}", "Accept-Language": "hi-IN,en;q=0.5"},
    )
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.json()["error"]["message"] == i18n.gettext(
        "hi", "The bearer token has expired."
    )


async def test_http_403_on_missing_scope(http: httpx.AsyncClient, app_id: str) -> None:
    """A valid token without the games scope: 403 PERMISSION_DENIED."""
    response = await http.get(
        "/games/v1/rooms", headers=auth("p1", app_id, scopes=(SCOPE_GAMES_LITE,))
    )
    assert response.status_code == 403
    assert response.json()["error"]["status"] == "PERMISSION_DENIED"
    assert "www-authenticate" not in response.headers


@pytest.mark.parametrize("name", ["access_token", "oauth_token"])
async def test_http_query_tokens_are_accepted(
    http: httpx.AsyncClient, app_id: str, name: str
) -> None:
    """`?access_token=` and `?oauth_token=` authenticate like the header."""
    response = await http.get("/games/v1/rooms", params={name: token("p1", app_id)})
    assert response.status_code == 200, response.text


async def test_unknown_paths_and_verbs_answer_in_googles_shape(http) -> None:  # type: ignore[no-untyped-def]
    """An unknown path is a JSON 404 and a wrong verb a JSON 405, localized like every error."""
    missing = await http.get("/games/v1/nothing-here", params={"language": "es"})
    assert missing.status_code == 404
    assert missing.json()["error"]["errors"][0]["reason"] == "notFound"
    assert missing.json()["error"]["message"] == "No encontrado."
    wrong = await http.delete("/games/v1/rooms")
    assert wrong.status_code == 405
    assert wrong.json()["error"]["errors"][0]["reason"] == "httpMethodNotAllowed"
    assert "GET" in wrong.headers["allow"]
