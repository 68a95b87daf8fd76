"""Benchmark: ``analyse_file`` on the 100k-example chat file against the cookbook anchor and the tiktoken floor.

All three run as subprocesses of the same interpreter, interleaved, best of ``--repeats``; the wall time of each
includes interpreter start and loading the encoding, the same for all. Prints our time, the anchor's, the
floor's and the ratios, checks the file's known defects (100 rows without an assistant message, 99
duplicates, 20 non-objects) and that our token total equals the anchor's. ``--rss GB`` also builds a file of
about that size by repeating the lines and reports the peak RSS of analysing it in a child process.

    .venv/bin/python bench/dataset_validation.py [FILE] [--rss 1]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = Path(os.environ.get("FTGW_SHARED_BENCH", REPO / "bench" / "shared"))  # the team's anchors
sys.path.insert(0, str(REPO))

from app.tokenizers import seed_tiktoken_cache  # noqa: E402

EXPECTED = {"no_assistant_message": 100, "duplicates": 99, "not_an_object": 20}
OURS = """
import json, resource, sys
from pathlib import Path
from app.datasets import analyse_file
report = analyse_file(Path(sys.argv[1]))
print(json.dumps({"by_code": report.errors.by_code, "duplicates": report.n_duplicates,
                  "tokens": report.tokens.total if report.tokens else 0, "examples": report.n_examples,
                  "max_rss_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss}))
"""


def run(args: list[str], env: dict[str, str]) -> tuple[float, str]:
    started = time.perf_counter()
    done = subprocess.run(args, env=env, cwd=REPO, capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{args[:3]} failed:\n{done.stderr[-2000:]}")
    return elapsed, done.stdout


def build_big(source: Path, target: Path, gigabytes: float) -> None:
    if target.exists() and target.stat().st_size >= gigabytes * 1e9 * 0.95:
        return
    block = source.read_bytes()
    with target.open("wb") as f:
        while f.tell() < gigabytes * 1e9:
            f.write(block)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("file", nargs="?", type=Path, help="chat JSONL (default: generate the 100k file)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--rss", type=float, metavar="GB", help="also measure peak RSS on a file this big")
    parser.add_argument("--workdir", type=Path, default=REPO / "bench" / "out")
    args = parser.parse_args()

    args.workdir.mkdir(parents=True, exist_ok=True)
    cache = args.workdir / "tiktoken"
    seed_tiktoken_cache(cache)
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(cache), "PYTHONPATH": str(REPO)}
    path = args.file
    if path is None:
        path = args.workdir / "chat100k.jsonl"
        if not path.exists():
            run([sys.executable, str(SHARED_BENCH / "make_chat_dataset.py"), str(path), "100000"], env)

    commands = {
        "ours": [sys.executable, "-c", OURS, str(path)],
        "cookbook": [sys.executable, str(SHARED_BENCH / "cookbook_dataprep.py"), str(path)],
        "floor": [sys.executable, str(SHARED_BENCH / "tiktoken_floor.py"), str(path)],
    }
    best = dict.fromkeys(commands, float("inf"))
    outputs: dict[str, str] = {}
    for _ in range(args.repeats):
        for name, command in commands.items():
            elapsed, outputs[name] = run(command, env)
            best[name] = min(best[name], elapsed)

    ours = json.loads(outputs["ours"])
    found = {
        "no_assistant_message": ours["by_code"].get("no_assistant_message", 0),
        "duplicates": ours["duplicates"],
        "not_an_object": ours["by_code"].get("not_an_object", 0),
    }
    anchor_tokens = int(re.search(r"tokens=(\d+)", outputs["cookbook"]).group(1))  # type: ignore[union-attr]
    print(f"file: {path} ({path.stat().st_size / 1e6:.0f} MB, {ours['examples']} examples)")
    print(f"ours      {best['ours']:.2f} s   (best of {args.repeats}, wall, subprocess)")
    print(f"cookbook  {best['cookbook']:.2f} s   speed-up {best['cookbook'] / best['ours']:.2f}x (needs >= 2)")
    print(f"floor     {best['floor']:.2f} s   ours/floor {best['ours'] / best['floor']:.2f} (needs <= 1.3)")
    print(f"defects   {found} (expected {EXPECTED})")
    print(f"tokens    ours {ours['tokens']}, cookbook {anchor_tokens}")
    assert found == EXPECTED, f"defects differ: {found} != {EXPECTED}"
    assert ours["tokens"] == anchor_tokens, "token totals differ from the cookbook's"

    if args.rss:
        big = args.workdir / f"chat_{args.rss:g}gb.jsonl"
        build_big(path, big, args.rss)
        elapsed, out = run([sys.executable, "-c", OURS, str(big)], env)
        result = json.loads(out)
        print(
            f"rss       {result['max_rss_kb'] / 1024:.0f} MB peak on {big.stat().st_size / 1e9:.2f} GB "
            f"({result['examples']} examples, {elapsed:.1f} s)"
        )


if __name__ == "__main__":
    main()
