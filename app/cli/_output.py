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

# Free text folds to fit the terminal; every other column (ids, names, statuses, times, numbers) keeps its values
# whole on one line, however narrow the terminal: an id is there to be copied.
FREE_TEXT = {"filename", "description", "note", "targets", "fallbacks", "metrics", "status_details", "message"}
FREE_MIN_WIDTH = 12


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
    """A table of ``columns``. Only free text folds; ids and every other short value stay whole on one line,
    so a pipe or an 80-column terminal never cuts an id (the table is as wide as they need)."""
    from rich.table import Table

    items = [{name: when(r.get(name)) if name in times else cell(r.get(name)) for name in columns} for r in rows]
    if not items:
        note("(none)")
        return
    grid = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    needed = 0
    for name in columns:
        width = max([len(name), *(len(r[name]) for r in items)])
        if name in FREE_TEXT:
            grid.add_column(name, overflow="fold")
            needed += min(width, FREE_MIN_WIDTH) + 2  # each column is padded by one space a side
        else:
            grid.add_column(name, no_wrap=True, min_width=width)
            needed += width + 2
    for r in items:
        grid.add_row(*(r[name] for name in columns))
    from rich.console import Console

    # A console of its own: print(width=…) may narrow the output but never widen it past the terminal.
    Console(width=max(console().width, needed), highlight=False).print(grid, crop=False)
