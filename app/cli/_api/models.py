"""``ftgw models``: list, get, delete (base models, fine-tuned models, checkpoints and aliases)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import quote

import typer

from app.cli._api._common import Json, group
from app.cli._client import gateway
from app.cli._output import note, print_json, table

NAME = "models"
HELP = "List, show and delete models."
app = group(HELP)

ModelId = Annotated[str, typer.Option("-i", "--id", metavar="MODEL", help="The model's id (ft:… for a fine-tune).")]


def _path(model: str) -> str:
    return f"/v1/models/{quote(model, safe=':@')}"


@app.command("list")
def list_models(json: Json = False) -> None:
    """List the models this key can call."""
    page = gateway().get("/v1/models")
    if json:
        print_json(page)
        return
    table(page["data"], ("id", "owned_by", "created"), times=("created",))


@app.command("get")
def get_model(model: ModelId, json: Json = False) -> None:
    """Show a model."""
    found = gateway().get(_path(model))
    if json:
        print_json(found)
        return
    table([found], ("id", "owned_by", "created"), times=("created",))


@app.command("delete")
def delete(model: ModelId) -> None:
    """Delete a fine-tuned model."""
    gateway().delete(_path(model))
    note(f"deleted {model}")
