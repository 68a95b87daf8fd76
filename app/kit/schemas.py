"""Base classes and field types for wire schemas."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, PlainSerializer

from app.kit.time import unix

T = TypeVar("T")

# A datetime inside ftgw, Unix seconds on the wire, as OpenAI's objects carry them.
UnixTime = Annotated[datetime, PlainSerializer(unix, return_type=int, when_used="always")]


class Schema(BaseModel):
    model_config = ConfigDict(from_attributes=True)


class ListResponse(Schema, Generic[T]):
    """OpenAI's list envelope with cursor ids (``first_id``/``last_id`` are null for an empty page)."""

    object: Literal["list"] = "list"
    data: list[T]
    first_id: str | None
    last_id: str | None
    has_more: bool

    @classmethod
    def of(cls, data: list[T], has_more: bool) -> ListResponse[T]:
        ids = [str(getattr(item, "id")) for item in data]  # noqa: B009 - T is any schema with an id
        return cls(data=data, first_id=ids[0] if ids else None, last_id=ids[-1] if ids else None, has_more=has_more)
