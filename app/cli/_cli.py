"""The ``ftgw`` command: the root options, and every command group mounted on it.

Laid out as openai-python's ``cli/``: ``_api/`` holds the commands that talk to a running gateway (one module per
resource), ``_tools/`` the offline ones, ``_server.py`` the operator's. Every heavy import (httpx, rich tables,
the app itself) happens inside a command, so ``ftgw --help`` starts at once.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from app.cli import _client
from app.cli._errors import CliError

cli = typer.Typer(
    help="ftgw, the fine-tuning gateway: serve it, prepare data, and use its API from the command line.",
    epilog="Exit codes: 0 ok, 1 the request or job failed, 2 usage error, 3 cannot reach the gateway, "
    "4 the followed job was cancelled, 130 Ctrl-C stopped following.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"ftgw {version('ftgw')}")
        except PackageNotFoundError:
            typer.echo("ftgw (not installed)")
        raise typer.Exit()


@cli.callback()
def root(
    base_url: Annotated[
        str | None,
        typer.Option(
            "--base-url",
            metavar="URL",
            help="The gateway, with or without /v1. Default: FTGW_BASE_URL, OPENAI_BASE_URL, http://127.0.0.1:8000.",
        ),
    ] = None,
    api_key: Annotated[
        str | None,
        typer.Option("--api-key", metavar="KEY", help="An API key. Default: FTGW_API_KEY, then OPENAI_API_KEY."),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show the traceback of an error.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """ftgw, the fine-tuning gateway."""
    _client.current = _client.Connection.resolve(base_url, api_key, debug=debug)


def _mount() -> None:
    from app.cli import _server
    from app.cli._api import (
        aliases,
        chat,
        completions,
        evals,
        files,
        fine_tunes,
        keys,
        migrate,
        models,
        projects,
        usage,
    )
    from app.cli._tools import prepare_data

    cli.command("prepare-data", rich_help_panel="Offline tools")(prepare_data.prepare_data)
    for module in (files, fine_tunes, evals, models, completions, chat, aliases, usage, keys, projects):
        cli.add_typer(module.app, name=module.NAME, help=module.HELP)
    _server.register(cli, migrate.app)


_mount()


def main() -> None:
    """Entry point of the ``ftgw`` script: a :class:`CliError` ends in its one or two lines and its exit code."""
    try:
        cli(prog_name="ftgw")
    except CliError as exc:
        exc.show(debug=_client.current.debug)
        sys.exit(exc.exit_code)
