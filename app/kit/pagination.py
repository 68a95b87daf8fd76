"""Cursor pagination the way OpenAI lists do it: ``after=<id>``, ``limit``, ``order``; ``has_more``."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any, Generic, TypeVar

from fastapi import Query

T = TypeVar("T")


class Order(StrEnum):
    asc = "asc"
    desc = "desc"


@dataclass(frozen=True)
class Page(Generic[T]):
    items: list[T]
    has_more: bool


AfterQuery = Annotated[
    str | None, Query(description="Cursor: the id of the last object of the previous page.", max_length=128)
]
OrderQuery = Annotated[Order, Query(description="Sort order by `created_at`.")]


def limit_query(maximum: int) -> Any:
    """A ``limit`` query parameter between 1 and ``maximum``."""
    return Query(ge=1, le=maximum, description=f"How many objects to return, 1 to {maximum}.")
