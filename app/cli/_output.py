"""Output helpers: one console, JSON for scripts, tables whose id columns are never cut, plural words."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Collection, Iterable, Sequence
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


def table(
    rows: Iterable[dict[str, Any]], columns: Sequence[str], *, times: Sequence[str] = (), cut: Collection[str] = ()
) -> None:
    """A table of ``columns``. Only free text folds; ids and every other short value stay whole on one line,
    so a pipe or an 80-column terminal never cuts an id (the table is as wide as they need). The ``cut`` columns
    (long text, a model's answer) keep one line per row, ending in an ellipsis where the terminal is too narrow."""
    from rich.table import Table
    from rich.text import Text

    items = [{name: when(r.get(name)) if name in times else cell(r.get(name)) for name in columns} for r in rows]
    if not items:
        note("(none)")
        return
    grid = Table(show_edge=False, pad_edge=False, box=None, header_style="bold")
    natural = {name: max([len(name), *(len(r[name]) for r in items)]) for name in columns}
    least = {
        name: min(width, FREE_MIN_WIDTH) if name in cut or name in FREE_TEXT else width
        for name, width in natural.items()
    }
    needed = sum(least.values()) + 2 * len(columns)  # each column is padded by one space a side
    width = max(console().width, needed)
    room = width - 2 * len(columns) - sum(least[name] for name in columns if name not in cut)
    shares = _shares({name: natural[name] for name in columns if name in cut}, room, least)
    for name in columns:
        if name in cut:
            grid.add_column(name, no_wrap=True, overflow="ellipsis", width=shares[name])
        elif name in FREE_TEXT:
            grid.add_column(name, overflow="fold")
        else:
            grid.add_column(name, no_wrap=True, min_width=natural[name])
    for r in items:
        grid.add_row(*(Text(r[name]) for name in columns))  # values are text, never rich markup
    from rich.console import Console

    # A console of its own: print(width=…) may narrow the output but never widen it past the terminal.
    Console(width=width, highlight=False).print(grid, crop=False)


def _shares(natural: dict[str, int], room: int, least: dict[str, int]) -> dict[str, int]:
    """Widths of the cut columns in ``room``: each as wide as its text where that fits its even share, the rest of
    the room split evenly among the others (never under ``least``)."""
    shares: dict[str, int] = {}
    pending = dict(natural)
    while pending:
        even = max(room, 0) // len(pending)
        fitting = {name: width for name, width in pending.items() if width <= even}
        if not fitting:
            shares.update({name: max(even, least[name]) for name in pending})
            break
        for name, width in fitting.items():
            shares[name] = width
            room -= width
            del pending[name]
    return shares
