"""The project reads nothing outside its own tree: a plain clone must build, run and pass its tests.

A static check over every tracked source file of the product and its tests, because CI runs beside the workspace's
shared folder and would not notice a test that reads it.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
OUTSIDE = re.compile(r"""\.\./shared|parents\[[2-9]\]\s*/\s*["']shared["']|\.parent\s*/\s*["']shared["']""")
SCOPES = ("app", "tests", "migrations", "bench", "Makefile", "pyproject.toml", ".ci", "Dockerfile", "compose.yaml")


def test_nothing_reads_outside_the_repository() -> None:
    tracked = (
        subprocess.run(["git", "ls-files", "-z", "--", *SCOPES], cwd=REPO, capture_output=True, check=True)
        .stdout.decode()
        .split("\0")
    )
    offenders = []
    for name in filter(None, tracked):
        path = REPO / name
        if path.suffix == ".json" or not path.is_file() or path == Path(__file__).resolve():
            continue
        for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
            if OUTSIDE.search(line):
                offenders.append(f"{name}:{number}: {line.strip()}")
    assert not offenders, "reads outside the repository:\n" + "\n".join(offenders)


def test_openai_reference_is_in_the_tree() -> None:
    from tests import openai_schema

    assert openai_schema.REFERENCE.is_relative_to(REPO)
    assert openai_schema.REFERENCE.is_file()
