"""Benchmark: how long a user waits for a fine-tuned model, from ``jobs.create`` to ``succeeded``, through the SDK.

A ``ftgw serve`` subprocess (embedded worker, SQLite, a fresh data dir, the converted base model already in the
cache: conversion is setup, timed separately when the cache is cold) and the ``openai`` SDK, every hyperparameter
``auto`` except the epochs:

* (a) 40 prompt-completion sentiment examples in the seed's shape (``"<text>\\n\\n###\\n\\n"`` -> ``" positive
  END"``), 2 epochs; target <= 60 s on 2 cores;
* (b) 250 such examples, 3 epochs; target <= 4 min;
* the first completion on each new model (the adapter loads on first use); target < 2 s.

Anchor, in the same run (unless ``--no-anchor``): a plain PEFT LoRA loop (transformers + peft, float32, right
padding; rank 8 / alpha 16 on q/k/v/o at 4e-4) on the same file and epochs with OpenAI's auto batch (0.2% of the
examples: batch 1), timed from the start of its process's work (model load included) to its saved adapter.

    PYTHONPATH=. .venv/bin/python bench/time_to_model.py [--cases a,b] [--no-anchor | --anchor-cases a]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from servers import served_gateway  # noqa: E402
from tasks import seed_sentiment  # noqa: E402

CASES = {"a": (40, 2, 60.0), "b": (250, 3, 240.0)}
MODEL = "smollm2-135m-instruct"


def through_gateway(base_url: str, key: str, rows: list[dict[str, str]], epochs: int) -> dict[str, object]:
    from openai import OpenAI

    client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    file = client.files.create(file=("train.jsonl", data), purpose="fine-tune")
    while client.files.retrieve(file.id).status not in ("processed", "error"):
        time.sleep(0.2)
    started_at = time.monotonic()
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=file.id,
        method={"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": epochs}}},
    )
    eta_error: float | None = None
    tenth_seen: tuple[float, float] | None = None  # (when, the estimated finish as a unix time)
    while True:
        # The events first: the job read after them carries an estimate at least as new as the step they show.
        steps = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=5).data if e.type == "metrics"]
        job = client.fine_tuning.jobs.retrieve(job.id)
        if job.status in ("succeeded", "failed", "cancelled"):
            break
        data_ = steps[0].data if steps else None
        if tenth_seen is None and job.estimated_finish and isinstance(data_, dict):
            total = int(data_.get("total_steps") or 0)
            if total and int(data_["step"]) >= 0.1 * total:
                tenth_seen = (time.time(), float(job.estimated_finish))
        time.sleep(0.25)
    finished_wall = time.time()
    seconds = time.monotonic() - started_at
    if job.status != "succeeded":
        raise SystemExit(f"job {job.id} {job.status}: {job.error}")
    if tenth_seen is not None:
        eta_error = abs(tenth_seen[1] - finished_wall) / max(1e-9, finished_wall - tenth_seen[0])
    first_started = time.monotonic()
    answer = client.completions.create(
        model=str(job.fine_tuned_model), prompt=rows[0]["prompt"], max_tokens=3, temperature=0
    )
    first = time.monotonic() - first_started
    return {
        "seconds": seconds,
        "first_answer_seconds": first,
        "answer": answer.choices[0].text,
        "expected": rows[0]["completion"],
        "hyperparameters": job.hyperparameters.model_dump(),
        "eta_error_after_10pct": eta_error,
    }


def anchor(cache: Path, data: Path, epochs: int, out: Path) -> float:
    """The plain PEFT loop in its own process (see learning_quality.train_anchor); its wall time in seconds."""
    code = (
        "import sys, time; from pathlib import Path; sys.path[:0] = [sys.argv[1], sys.argv[1] + '/bench'];"
        "from learning_quality import train_anchor;"
        "from app.providers.local.base_models import BaseModelStore, SMOLLM2;"
        "base = BaseModelStore(Path(sys.argv[2])).resolve(SMOLLM2); t = time.perf_counter();"
        "train_anchor(base, Path(sys.argv[3]), Path(sys.argv[5]), int(sys.argv[4]));"
        "print(time.perf_counter() - t)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code, str(REPO), str(cache), str(data), str(epochs), str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"anchor failed:\n{done.stderr[-3000:]}")
    return float(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", default="a,b")
    parser.add_argument("--no-anchor", action="store_true")
    parser.add_argument("--anchor-cases", help="the cases to run the anchor for (default: --cases)")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", default=os.environ.get("FTGW_TEST_MODEL_CACHE", str(default_cache)))
    args = parser.parse_args()
    cache = Path(args.cache)

    from app.providers.local.base_models import SMOLLM2, BaseModelStore

    store = BaseModelStore(cache)
    setup_started = time.monotonic()
    cold = not store.is_ready(SMOLLM2)
    store.resolve(SMOLLM2)
    setup = f"converted in {time.monotonic() - setup_started:.0f} s (setup)" if cold else "warm"
    print(
        f"base model cache {setup}; {len(os.sched_getaffinity(0))} cores, load average {os.getloadavg()[0]:.2f}",
        flush=True,
    )
    results: dict[str, dict[str, object]] = {}
    with served_gateway(cache) as gateway:
        base_url, key = gateway.base_url, gateway.key
        for case in args.cases.split(","):
            n, epochs, target = CASES[case]
            r = through_gateway(base_url, key, seed_sentiment(n), epochs)
            results[case] = r
            eta = r["eta_error_after_10pct"]
            print(
                f"({case}) {n} examples x {epochs} epochs: ours {r['seconds']:.0f} s (target <= {target:.0f} s), "
                f"hyperparameters {r['hyperparameters']}, estimated_finish error after 10% "
                f"{'n/a' if eta is None else f'{100 * float(str(eta)):.0f}%'}; first answer "
                f"{r['first_answer_seconds']:.2f} s (target < 2 s): {r['answer']!r} (trained {r['expected']!r})",
                flush=True,
            )
    if args.no_anchor:
        return
    with tempfile.TemporaryDirectory(prefix="ftgw-ttm-anchor-") as tmp:
        for case in (args.anchor_cases or args.cases).split(","):
            n, epochs, _ = CASES[case]
            data = Path(tmp) / f"{case}.jsonl"
            data.write_text("".join(json.dumps(r) + "\n" for r in seed_sentiment(n)))
            seconds = anchor(cache, data, epochs, Path(tmp) / f"{case}-adapter")
            ours = float(str(results[case]["seconds"]))
            print(
                f"({case}) anchor (plain PEFT, batch 1): {seconds:.0f} s; ours {ours:.0f} s; "
                f"ratio {seconds / ours:.1f}x faster (load average {os.getloadavg()[0]:.2f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
