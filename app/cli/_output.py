"""Output helpers: one console, JSON for scripts, tables whose id columns are never cut, plural words."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterable, Sequence
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

ID_COLUMNS = {"id", "model", "fine_tuned_model", "training_file", "name", "alias", "file"}


@cache
def console() -> Console:
    from rich.console import Console

    return Console(soft_wrap=True, highlight=False)


@cache
def err_console() -> Console:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def plural(count: int, word: str, many: str | None = None) -> str:
    """``1 error``, ``2 errors``; ``many`` for irregular plurals."""
    return f"{count} {word if count == 1 else many or word + 's'}"


def echo(text: str = "") -> None:
    """Plain text on stdout: no markup, no highlighting, never wrapped."""
    console().print(text, markup=False, highlight=False, soft_wrap=True)


def note(text: str) -> None:
    """Commentary on stderr, so stdout stays what a script reads (an id, a key, JSON)."""
    err_console().print(text, markup=False, highlight=False, soft_wrap=True)


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def when(unix: int | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(unix)) if unix else ""


def cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False)
    return str(value)


def table(rows: Iterable[dict[str, Any]], columns: Sequence[str], *, times: Sequence[str] = ()) -> None:
    """A table of ``columns``; id-like columns are as wide as their longest value and never wrap, so every id
    can be copied whole however narrow the terminal (the other columns fold instead)."""
    from rich.table import Table

    items = list(rows)
    grid = Table(*(), show_edge=False, pad_edge=False, box=None, header_style="bold")
    for name in columns:
        values = [when(r.get(name)) if name in times else cell(r.get(name)) for r in items]
        if name in ID_COLUMNS:
            width = max([len(name), *(len(v) for v in values)])
            grid.add_column(name, no_wrap=True, min_width=width, overflow="fold")
        else:
            grid.add_column(name, overflow="fold")
    for r in items:
        grid.add_row(*(when(r.get(n)) if n in times else cell(r.get(n)) for n in columns))
    if not items:
        note("(none)")
        return
    # Never narrower than the ids need: a pipe or an 80-column terminal must not cut them.
    out = console()
    needed = sum((c.min_width or 8) + 1 for c in grid.columns)
    out.print(grid, width=max(out.width, needed), crop=False)
