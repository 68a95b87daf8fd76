"""Wire schemas of /v1/models (OpenAI's Model and ListModelsResponse)."""

from __future__ import annotations

from typing import Literal

from app.kit.schemas import Schema


class ModelOut(Schema):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str


class ModelDeleted(Schema):
    id: str
    object: Literal["model"] = "model"
    deleted: bool = True


class ModelList(Schema):
    object: Literal["list"] = "list"
    data: list[ModelOut]
