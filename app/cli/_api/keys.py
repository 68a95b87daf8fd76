"""``ftgw keys`` (admin): API keys of a project. ``keys create --local`` is the operator's path to a new admin key
when none is left: it writes the key straight into the gateway's database (``FTGW_DATABASE_URL``), no HTTP."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from app.cli._api._common import Json, Limit, group
from app.cli._api.projects import project_id
from app.cli._client import gateway
from app.cli._errors import UNREACHABLE, USAGE, CliError
from app.cli._output import note, print_json, table

NAME = "keys"
HELP = "API keys of a project (admin key, or --local on the server)."
app = group(HELP)

Project = Annotated[str, typer.Option("-p", "--project", help="The project's id or name.")]
COLUMNS = ("id", "name", "role", "redacted_value", "revoked_at", "created_at")


def _keys(project: str) -> str:
    return f"/v1/projects/{project}/api_keys"


async def mint_locally(project: str, *, name: str, role: str, limits: dict[str, int | None]) -> dict[str, Any]:
    """Create a key in the database the settings name, as the server would; return it with its secret."""
    from sqlalchemy.exc import OperationalError, ProgrammingError

    from app.auth.models import Role
    from app.auth.schemas import ApiKeyOut, RateLimits
    from app.auth.service import auth_service
    from app.config import Settings
    from app.db import commit, create_engine_from_url, create_sessionmaker
    from app.errors import GatewayError

    settings = Settings()
    url = settings.resolved_database_url
    engine = create_engine_from_url(url)
    try:
        async with create_sessionmaker(engine)() as session:
            found = await auth_service.find_project(session, project)
            key, secret = await auth_service.create_key(
                session, found.id, name=name, role=Role(role), limits=RateLimits.model_validate(limits)
            )
            await commit(session)
            return {**ApiKeyOut.model_validate(key).model_dump(mode="json"), "value": secret}
    except GatewayError as exc:
        raise CliError(exc.message, "Projects are listed by `ftgw projects list`; the first one is `default`.") from exc
    except (OperationalError, ProgrammingError) as exc:
        raise CliError(
            f"Cannot use the database at {url}: {str(exc.orig).strip().splitlines()[0]}",
            "Run this on the gateway's host with its settings (FTGW_DATABASE_URL or FTGW_DATA_DIR); "
            "`ftgw migrate` prepares a new database.",
            UNREACHABLE,
        ) from exc
    finally:
        await engine.dispose()


@app.command("create")
def create(
    project: Project,
    role: Annotated[str, typer.Option("--role", help="member (uses the API) or admin (also manages keys).")] = "member",
    name: Annotated[str, typer.Option("--name", help="What the key is for.")] = "cli",
    requests_per_minute: Annotated[
        int | None, typer.Option("--max-requests-per-minute", min=1, help="Rate limit.")
    ] = None,
    tokens_per_minute: Annotated[int | None, typer.Option("--max-tokens-per-minute", min=1, help="Rate limit.")] = None,
    local: Annotated[
        bool,
        typer.Option(
            "--local",
            help="Write the key straight into the database of this host's settings (FTGW_DATABASE_URL), no HTTP "
            "and no key needed: the operator's way back in when the admin key is lost.",
        ),
    ] = False,
    json: Json = False,
) -> None:
    """Create an API key; its secret is printed once, alone on stdout."""
    if role not in ("member", "admin"):
        raise CliError(f"--role {role!r}: member or admin.", None, USAGE)
    limits = {"max_requests_per_minute": requests_per_minute, "max_tokens_per_minute": tokens_per_minute}
    if local:
        import asyncio

        created = asyncio.run(mint_locally(project, name=name, role=role, limits=limits))
    else:
        gw = gateway()
        created = gw.post(_keys(project_id(gw, project)), {"name": name, "role": role, **limits})
    if json:
        print_json(created)
        return
    note(f"Created {created['role']} key {created['id']} in {created['project_id']}; its secret, shown this once:")
    print(created["value"], flush=True)


@app.command("list")
def list_keys(project: Project, limit: Limit = 100, json: Json = False) -> None:
    """List a project's keys (never their secrets)."""
    gw = gateway()
    page = gw.get(_keys(project_id(gw, project)), limit=limit)
    if json:
        print_json(page)
        return
    table(page["data"], COLUMNS, times=("created_at", "revoked_at"))


@app.command("revoke")
def revoke(
    project: Project, key_id: Annotated[str, typer.Option("-i", "--id", metavar="KEY_ID", help="The key's id.")]
) -> None:
    """Revoke a key: from now on it gets 401."""
    gw = gateway()
    gw.delete(f"{_keys(project_id(gw, project))}/{key_id}")
    note(f"revoked {key_id}")
