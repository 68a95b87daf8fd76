"""Small dataset files for the tests, written the way users write them."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def chat(i: int, *, system: str = "Be brief.", answer: str | None = None) -> dict[str, Any]:
    return {
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": f"What is item {i}?"},
            {"role": "assistant", "content": answer if answer is not None else f"Item {i} is a widget."},
        ]
    }


def pc(i: int, *, prompt: str | None = None, completion: str | None = None) -> dict[str, Any]:
    return {
        "prompt": prompt if prompt is not None else f"Describe item {i}\n\n###\n\n",
        "completion": completion if completion is not None else f" Item {i} is a widget. END",
    }


def preference(i: int) -> dict[str, Any]:
    return {
        "input": {"messages": [{"role": "user", "content": f"Say hi to {i}"}]},
        "preferred_output": [{"role": "assistant", "content": f"Hi {i}!"}],
        "non_preferred_output": [{"role": "assistant", "content": f"Go away {i}."}],
    }


def write_jsonl(path: Path, rows: Iterable[object]) -> Path:
    """Rows that are ``str`` or ``bytes`` are written verbatim (no newline added), others as JSON lines."""
    with path.open("wb") as f:
        for row in rows:
            if isinstance(row, bytes):
                f.write(row)
            elif isinstance(row, str):
                f.write(row.encode())
            else:
                f.write(json.dumps(row).encode() + b"\n")
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]
