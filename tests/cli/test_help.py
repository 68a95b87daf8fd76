"""The command line itself: --version, help that fits 80 columns without cutting a flag or showing ``<bool>``,
exit codes told in --help, and a start fast enough to need no heavy import (the figure is bench/cli_startup.py's)."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import typer

from app.cli import cli
from tests.cli.runner import cli_env, ftgw


def _commands() -> list[tuple[str, ...]]:
    root: Any = typer.main.get_command(cli)
    found: list[tuple[str, ...]] = [()]
    for name, command in root.commands.items():
        found.append((name,))
        found += [(name, sub) for sub in getattr(command, "commands", {})]
    return found


def _options(path: tuple[str, ...]) -> list[str]:
    command: Any = typer.main.get_command(cli)
    for name in path:
        command = command.commands[name]
    return [opt for p in command.params if p.param_type_name == "option" for opt in p.opts + p.secondary_opts]


def test_version() -> None:
    result = ftgw("--version")

    assert result.returncode == 0
    assert result.stdout.startswith("ftgw ")


@pytest.mark.parametrize("path", _commands(), ids=lambda p: " ".join(p) or "ftgw")
def test_help_fits_80_columns_with_every_flag_whole(path: tuple[str, ...]) -> None:
    result = ftgw(*path, "--help", COLUMNS="80")

    assert result.returncode == 0, result.stderr
    assert "<bool>" not in result.stdout
    assert all(len(line) <= 80 for line in result.stdout.splitlines()), result.stdout
    words = result.stdout.replace(",", " ").split()
    for option in _options(path):
        assert option in words, (option, result.stdout)


def test_help_tells_the_exit_codes() -> None:
    text = " ".join(ftgw("--help").stdout.split())

    assert "0 ok, 1 the request or job failed, 2 usage error, 3 cannot reach the gateway" in text


def test_importing_the_cli_imports_nothing_heavy() -> None:
    probe = (
        "import sys, app.cli; heavy = [m for m in ('openai', 'torch', 'transformers', 'sqlalchemy', 'fastapi', "
        "'httpx', 'numpy') if m in sys.modules]; print(heavy)"
    )
    result = subprocess.run([sys.executable, "-c", probe], env=cli_env(), capture_output=True, text=True, check=True)

    assert result.stdout.strip() == "[]"
