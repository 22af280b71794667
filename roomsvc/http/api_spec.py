"""What each REST method is, declared once beside its route (`@api_method`), so the discovery
document and the OpenAPI description are generated from the routes and wire types themselves
(docs/spec.md §3 "Discovery"), never written by hand."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])


@dataclasses.dataclass(frozen=True, slots=True)
class Param:
    name: str
    type: str = "string"  # discovery type: string | integer | boolean
    description: str = ""
    minimum: int | None = None
    maximum: int | None = None
    format: str | None = None


LANGUAGE = Param("language", description="The preferred language to use for strings returned.")
PAGE_TOKEN = Param("pageToken", description="The token returned by the previous request.")


def max_results(low: int, high: int) -> Param:
    return Param(
        "maxResults",
        "integer",
        "The maximum number of items to return in the response.",
        minimum=low,
        maximum=high,
        format="int32",
    )


@dataclasses.dataclass(frozen=True, slots=True)
class ApiMethod:
    id: str  # e.g. "games.rooms.create"
    description: str
    scopes: tuple[str, ...]
    request: type | None = None
    response: type | None = None
    query: tuple[Param, ...] = (LANGUAGE,)
    empty_status: int | None = None  # e.g. 204 for rooms.dismiss

    @property
    def resource(self) -> str:
        return self.id.split(".")[1]

    @property
    def name(self) -> str:
        return self.id.split(".")[2]


def api_method(**fields: Any) -> Callable[[F], F]:
    spec = ApiMethod(**fields)

    def mark(endpoint: F) -> F:
        endpoint.__api_method__ = spec  # type: ignore[attr-defined]
        return endpoint

    return mark


def method_of(endpoint: Any) -> ApiMethod | None:
    return getattr(endpoint, "__api_method__", None)
