"""Options every API command shares."""

from __future__ import annotations

from typing import Annotated

import typer

Json = Annotated[bool, typer.Option("--json", help="Print the server's JSON instead of a table.")]
Limit = Annotated[int, typer.Option("--limit", min=1, max=10000, help="How many to list.")]


def group(help: str) -> typer.Typer:
    return typer.Typer(help=help, no_args_is_help=True, add_completion=False, rich_markup_mode=None)
