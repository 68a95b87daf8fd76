"""``ftgw aliases``: stable names routed to models: create, list, versions, add-version, promote, rollback,
changes (the audit log)."""

from __future__ import annotations

import json as jsonlib
from pathlib import Path
from typing import Annotated, Any

import typer

from app.cli._api._common import Json, Limit, group
from app.cli._client import gateway
from app.cli._errors import USAGE, CliError
from app.cli._output import echo, print_json, table

NAME = "aliases"
HELP = "Aliases: one stable name, versions of weighted targets, fallbacks and guards behind it."
app = group(HELP)

AliasName = Annotated[str, typer.Option("-n", "--name", help="The alias, e.g. support-bot.")]
ALIASES = "/v1/registry/aliases"
ALIAS_COLUMNS = ("name", "active_version", "description", "updated_at")


def _targets(values: list[str]) -> list[dict[str, Any]]:
    targets = []
    for value in values:
        model, _, weight = value.rpartition("=") if "=" in value else (value, "", "1")
        try:
            targets.append({"model": model, "weight": float(weight)})
        except ValueError:
            raise CliError(f"--target {value!r}: the weight after '=' must be a number.", None, USAGE) from None
    return targets


@app.command("create")
def create(
    name: AliasName,
    description: Annotated[str | None, typer.Option(help="What the alias is for.")] = None,
    json: Json = False,
) -> None:
    """Create an alias (it answers once a version is added)."""
    alias = gateway().post(ALIASES, {"name": name, "description": description})
    if json:
        print_json(alias)
        return
    echo(
        f"created alias {alias['name']}; add a version with: ftgw aliases add-version -n {alias['name']} --target MODEL"
    )


@app.command("list")
def list_aliases(limit: Limit = 100, json: Json = False) -> None:
    """List aliases."""
    page = gateway().get(ALIASES, limit=limit)
    if json:
        print_json(page)
        return
    table(page["data"], ALIAS_COLUMNS, times=("updated_at",))


@app.command("get")
def get(name: AliasName, json: Json = False) -> None:
    """Show an alias."""
    alias = gateway().get(f"{ALIASES}/{name}")
    if json:
        print_json(alias)
        return
    table([alias], ALIAS_COLUMNS, times=("updated_at",))


@app.command("add-version")
def add_version(
    name: AliasName,
    target: Annotated[
        list[str], typer.Option("--target", metavar="MODEL[=WEIGHT]", help="A target and its weight (repeatable).")
    ],
    fallback: Annotated[
        list[str] | None, typer.Option("--fallback", metavar="MODEL", help="Tried in order on failure (repeatable).")
    ] = None,
    guard: Annotated[
        str | None, typer.Option("--guard", metavar="JSON", help='e.g. {"model": "ft:…", "allowed_labels": ["yes"]}')
    ] = None,
    note: Annotated[str | None, typer.Option("--note", help="Why this version.")] = None,
    gate: Annotated[
        str | None,
        typer.Option(
            "--gate",
            metavar="JSON|FILE",
            help='A release gate: {"eval_id": "eval_…", "data_source": {…}, "min_pass_rate": 0.8, '
            '"max_regression": 5}; activating the version runs it first.',
        ),
    ] = None,
    activate: Annotated[bool, typer.Option("--activate/--no-activate", help="Make it the active version.")] = True,
    json: Json = False,
) -> None:
    """Add a version to an alias (active at once unless --no-activate; a gated version only if its gate passes)."""
    body: dict[str, Any] = {
        "targets": _targets(target),
        "fallbacks": fallback or [],
        "note": note,
        "activate": activate,
    }
    if guard is not None:
        try:
            body["guard"] = jsonlib.loads(guard)
        except ValueError as exc:
            raise CliError(f"--guard is not JSON: {exc}", None, USAGE) from None
    if gate is not None:
        body["gate"] = _json_or_file(gate, "--gate")
    version = gateway().post(f"{ALIASES}/{name}/versions", body)
    if json:
        print_json(version)
        return
    echo(f"{name}: version {version['version']}{' (active)' if activate else ''}")


@app.command("versions")
def versions(name: AliasName, json: Json = False) -> None:
    """List an alias's versions."""
    page = gateway().get(f"{ALIASES}/{name}/versions")
    if json:
        print_json(page)
        return
    rows = [
        {
            "version": v["version"],
            "targets": ", ".join(f"{t['model']}={t['weight']:g}" for t in v["targets"]),
            "fallbacks": ", ".join(v["fallbacks"]),
            "guard": (v.get("guard") or {}).get("model", ""),
            "note": v.get("note"),
            "created_at": v["created_at"],
        }
        for v in page["data"]
    ]
    table(rows, ("version", "targets", "fallbacks", "guard", "note", "created_at"), times=("created_at",))


@app.command("promote")
def promote(
    name: AliasName,
    version: Annotated[int, typer.Option("--version", min=1, help="The version to make active.")],
    json: Json = False,
) -> None:
    """Make a version the active one."""
    alias = gateway().post(f"{ALIASES}/{name}/promote", {"version": version})
    if json:
        print_json(alias)
        return
    echo(f"{alias['name']}: version {alias['active_version']} is active")


@app.command("rollback")
def rollback(name: AliasName, json: Json = False) -> None:
    """Go back to the previously active version."""
    alias = gateway().post(f"{ALIASES}/{name}/rollback")
    if json:
        print_json(alias)
        return
    echo(f"{alias['name']}: version {alias['active_version']} is active")


@app.command("changes")
def changes(
    name: Annotated[str | None, typer.Option("-n", "--name", help="Only this alias.")] = None,
    limit: Limit = 50,
    json: Json = False,
) -> None:
    """The registry's audit log: who changed which alias, when, how."""
    page = gateway().get("/v1/registry/changes", alias=name, limit=limit)
    if json:
        print_json(page)
        return
    table(page["data"], ("created_at", "alias", "action", "version", "actor"), times=("created_at",))


def _json_or_file(value: str, option: str) -> Any:
    """``value`` as JSON, or the JSON in the file it names."""
    path = Path(value)
    text = path.read_text() if not value.lstrip().startswith("{") and path.is_file() else value
    try:
        return jsonlib.loads(text)
    except ValueError as exc:
        raise CliError(f"{option} is neither JSON nor a JSON file: {exc}", None, USAGE) from None
