"""``ftgw``, the command line: see :mod:`app.cli._cli` for the layout."""

from app.cli._cli import cli, main

__all__ = ["cli", "main"]
