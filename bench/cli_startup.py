"""Benchmark: how fast ``ftgw`` starts, against the eager CLI it replaced.

Ours: ``ftgw --help``, ``ftgw prepare-data --help`` and ``ftgw prepare-data`` stopping at its usage error
(wall time, interpreter start included), and the import of ``app.cli`` alone (``python -X importtime``, the
self-times summed). Anchor: importing ``openai``, which the old CLI did before printing anything (most of its
start-up), measured the same two ways. Each runs as a subprocess of this interpreter, interleaved, ``--runs``
times; the median is printed with the ratio to the anchor. The issue's bar: under 0.5 s on this machine.

    .venv/bin/python bench/cli_startup.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "80"}
BAR_SECONDS = 0.5

WALL = {
    "ftgw --help": [sys.executable, "-m", "app.cli", "--help"],
    "ftgw prepare-data --help": [sys.executable, "-m", "app.cli", "prepare-data", "--help"],
    "ftgw prepare-data (no -f: usage error)": [sys.executable, "-m", "app.cli", "prepare-data"],
    "anchor: python -c 'import openai'": [sys.executable, "-c", "import openai"],
    "floor: python -c pass": [sys.executable, "-c", "pass"],
}
IMPORTS = {"import app.cli": "app.cli", "anchor: import openai": "openai"}


def wall(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, env=ENV, check=False, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - started


def import_seconds(module: str) -> float:
    """The summed self-times of every module ``import module`` loads (``-X importtime``, microseconds)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", f"import {module}"], env=ENV, capture_output=True, text=True
    )
    total = 0
    for line in result.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            self_us = line.split(":", 1)[1].split("|")[0].strip()
            if self_us.isdigit():
                total += int(self_us)
    return total / 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    walls: dict[str, list[float]] = {name: [] for name in WALL}
    imports: dict[str, list[float]] = {name: [] for name in IMPORTS}
    for _ in range(args.runs):
        for name, command in WALL.items():
            walls[name].append(wall(command))
        for name, module in IMPORTS.items():
            imports[name].append(import_seconds(module))
    median = {name: statistics.median(v) for name, v in {**walls, **imports}.items()}
    anchor_wall = median["anchor: python -c 'import openai'"]
    print(f"median of {args.runs} runs, wall time of the whole process (interpreter start included):")
    for name in WALL:
        print(f"  {name:40} {median[name] * 1000:8.0f} ms   {median[name] / anchor_wall:5.2f}x the anchor")
    print("import time (python -X importtime, summed self times):")
    for name in IMPORTS:
        print(f"  {name:40} {median[name] * 1000:8.0f} ms")
    ratio = median["import app.cli"] / median["anchor: import openai"]
    print(f"import app.cli / import openai: {ratio:.2f}")
    for name in ("ftgw --help", "ftgw prepare-data --help", "ftgw prepare-data (no -f: usage error)"):
        verdict = "under" if median[name] < BAR_SECONDS else "OVER"
        print(f"{name}: {median[name]:.3f} s, {verdict} the {BAR_SECONDS} s bar")


if __name__ == "__main__":
    main()
