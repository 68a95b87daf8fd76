"""The operator's commands on the server itself: serve the gateway, run workers, migrate, write the OpenAPI document.

``ftgw migrate`` alone migrates the database; its subcommands (``ftgw migrate openai``) move fine-tunes off an
upstream provider through a running gateway, and live in ``_api/migrate.py``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def migrate() -> None:
    """Apply database migrations up to the newest revision."""
    from sqlalchemy.engine import make_url

    from app.config import Settings
    from app.migrate import upgrade

    settings = Settings()
    settings.ensure_dirs()
    upgrade(settings.resolved_database_url)
    # The URL may hold a password: print it as SQLAlchemy renders it for people, with the password masked.
    shown = make_url(settings.resolved_database_url).render_as_string(hide_password=True)
    typer.echo(f"database at head: {shown}")


def serve(
    host: Annotated[str | None, typer.Option(help="Bind address (FTGW_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (FTGW_PORT).")] = None,
    migrate_first: Annotated[bool, typer.Option("--migrate/--no-migrate", help="Apply migrations first.")] = True,
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            help="Server processes, each running a job worker. Caches, rate limits and usage sums are per process "
            "unless FTGW_REDIS_URL is set.",
        ),
    ] = 1,
) -> None:
    """Start the gateway (applies migrations first)."""
    import uvicorn

    from app.config import Settings
    from app.observability.logging import logging_config

    settings = Settings()
    if migrate_first:
        migrate()
    uvicorn.run(
        "app.main:create_app",
        factory=True,
        host=host or settings.host,
        port=port or settings.port,
        log_level=settings.log_level,
        log_config=logging_config(settings.log_level, settings.log_format),  # JSON lines, every process
        proxy_headers=True,
        workers=workers,
        # SIGTERM: requests in flight get this long to finish, then are cancelled (the engine drops their rows).
        timeout_graceful_shutdown=settings.shutdown_grace_seconds,
    )


def openapi(
    out: Annotated[Path, typer.Option(help="Where to write the document.")] = Path("openapi/openapi.json"),
    check: Annotated[bool, typer.Option(help="Fail if the committed document differs instead of writing.")] = False,
) -> None:
    """Write (or --check) openapi/openapi.json from the app."""
    from app.config import Settings
    from app.main import create_app

    document = json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=False) + "\n"
    if check:
        if not out.exists() or out.read_text() != document:
            typer.echo(f"{out} is out of date: run `ftgw openapi`", err=True)
            raise typer.Exit(1)
        typer.echo(f"{out} is up to date")
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(document)
    typer.echo(f"wrote {out}")


def worker(
    concurrency: Annotated[int, typer.Option(min=1, help="Jobs trained at once by this process.")] = 1,
) -> None:
    """Run standalone worker(s): claim queued jobs from the shared database and data folder, and train them."""
    import asyncio

    from app.config import Settings
    from app.worker.standalone import run_workers

    asyncio.run(run_workers(Settings(), concurrency))


def _migrate_unless_subcommand(ctx: typer.Context) -> None:
    """Apply database migrations up to the newest revision; or, with a subcommand, move fine-tunes off a provider."""
    if ctx.invoked_subcommand is None:
        migrate()


def register(cli: typer.Typer, migrate_from: typer.Typer) -> None:
    """Mount the operator's commands; ``migrate_from`` holds ``migrate``'s subcommands."""
    panel = "Server (run on the gateway's host)"
    for command in (serve, worker):
        cli.command(rich_help_panel=panel)(command)
    cli.add_typer(
        migrate_from,
        name="migrate",
        callback=_migrate_unless_subcommand,
        invoke_without_command=True,
        no_args_is_help=False,
        help="Apply database migrations up to the newest revision. `ftgw migrate openai` moves fine-tunes off an "
        "upstream provider instead.",
        rich_help_panel=panel,
    )
    cli.command(rich_help_panel=panel)(openapi)
