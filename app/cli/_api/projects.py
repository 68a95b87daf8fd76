"""``ftgw projects`` (admin): the gateway's tenants."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from app.cli._api._common import Json, Limit, group
from app.cli._client import gateway
from app.cli._errors import FAILED, CliError
from app.cli._output import print_json, table

if TYPE_CHECKING:
    from app.cli._client import Gateway

NAME = "projects"
HELP = "Projects, the gateway's tenants (admin key)."
app = group(HELP)

PROJECTS = "/v1/projects"
COLUMNS = ("id", "name", "created_at")


def project_id(gw: Gateway, value: str) -> str:
    """A project's id from its id or its name."""
    if value.startswith("proj-"):
        return value
    after: str | None = None
    while True:
        page = gw.get(PROJECTS, limit=100, after=after)
        for project in page["data"]:
            if project["name"] == value:
                return str(project["id"])
        if not page["has_more"] or not page["data"]:
            raise CliError(f"No project named {value!r}.", "List them with: ftgw projects list", FAILED)
        after = page["data"][-1]["id"]


@app.command("create")
def create(name: Annotated[str, typer.Option("-n", "--name", help="The project's name.")], json: Json = False) -> None:
    """Create a project."""
    project = gateway().post(PROJECTS, {"name": name})
    if json:
        print_json(project)
        return
    print(project["id"])


@app.command("list")
def list_projects(limit: Limit = 100, json: Json = False) -> None:
    """List projects."""
    page = gateway().get(PROJECTS, limit=limit)
    if json:
        print_json(page)
        return
    table(page["data"], COLUMNS, times=("created_at",))


@app.command("get")
def get(project: Annotated[str, typer.Option("-p", "--project", help="Its id or name.")], json: Json = False) -> None:
    """Show a project."""
    gw = gateway()
    found = gw.get(f"{PROJECTS}/{project_id(gw, project)}")
    if json:
        print_json(found)
        return
    table([found], COLUMNS, times=("created_at",))
