"""``ftgw usage``: the calling project's requests and tokens per time bucket."""

from __future__ import annotations

import re
import time
from typing import Annotated, Any

import typer

from app.cli._api._common import Json, group
from app.cli._client import gateway
from app.cli._errors import USAGE, CliError
from app.cli._output import print_json, table

NAME = "usage"
HELP = "Requests and tokens used, per time bucket."
app = group(HELP)

UNITS = {"m": 60, "h": 3600, "d": 86400}


def _since(value: str) -> int:
    found = re.fullmatch(r"(\d+)([mhd])", value.strip())
    if found is None:
        raise CliError(f"--since {value!r}: use a number and m, h or d, e.g. 24h.", None, USAGE)
    return int(time.time()) - int(found.group(1)) * UNITS[found.group(2)]


@app.command("completions")
def completions(
    since: Annotated[str, typer.Option(help="How far back: 30m, 24h, 7d …")] = "24h",
    bucket_width: Annotated[str, typer.Option("--bucket-width", help="1m, 1h or 1d.")] = "1h",
    group_by: Annotated[
        list[str] | None, typer.Option("--group-by", help="model and/or api_key_id (repeatable).")
    ] = None,
    json: Json = False,
) -> None:
    """Chat and text completion usage of the key's project."""
    page = gateway().get(
        "/v1/usage/completions", start_time=_since(since), bucket_width=bucket_width, group_by=group_by or None
    )
    if json:
        print_json(page)
        return
    rows: list[dict[str, Any]] = [
        {"start_time": bucket["start_time"], **result} for bucket in page["data"] for result in bucket["results"]
    ]
    columns = ["start_time", *(g for g in group_by or []), "num_model_requests", "input_tokens", "output_tokens"]
    table(rows, columns, times=("start_time",))
