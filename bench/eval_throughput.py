"""Benchmark: eval run throughput (rows/s) through ftgw's Evals API against the obvious client-side loop.

One ``ftgw serve`` subprocess (embedded worker, SQLite, a fresh data dir, the converted base model already in the
cache) serves both sides, on the same rows, back to back in each round:

* anchor: what a plain script does with the ``openai`` SDK: for each row in turn, ``chat.completions.create`` on the
  gateway, then grade the answer client-side (the label contained in the answer, case-insensitively, and a rapidfuzz
  ``fuzz.ratio`` against the label); timed from the first request to the last grade;
* ours: ``client.evals.create`` with the same two criteria as graders (``string_check`` ``ilike`` and
  ``text_similarity`` ``fuzzy_match``), ``client.evals.runs.create`` with a ``completions`` data source (same model,
  same messages, temperature 0, the same ``max_completion_tokens``), then ``runs.retrieve`` every ``--poll`` seconds
  until the run is completed; timed from ``evals.create`` to the poll that sees it completed.

Rows: ``--rows`` short review sentences (the sentiment task's held-out side, bench/tasks.py) behind a one-line
instruction: 41-49 prompt tokens with SmolLM2's chat template, the first 28 (the instruction) the same in every row.
Both sides are warmed first (the model loaded, its kernels compiled, a small eval run done). Checks: both sides'
answers agree row by row at temperature 0 (the engine batches ours, so float rounding may flip a near-tie: the
agreement is printed) and their pass counts per criterion. ``--fine-tuned`` also trains a small chat fine-tune of
the same task first (about a minute) and measures it too. ``--eval-concurrency`` and ``--max-batch-size`` set the
gateway's ``FTGW_EVAL_CONCURRENCY`` (rows of a run in flight) and ``FTGW_ENGINE_MAX_BATCH_SIZE`` (sequences the
local engine decodes together); unset, the gateway's defaults (32 and 32).

    .venv/bin/python bench/eval_throughput.py [--rows 96] [--max-tokens 8] [--rounds 3] [--fine-tuned]
        [--eval-concurrency N] [--max-batch-size N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from openai import OpenAI  # noqa: E402
from rapidfuzz import fuzz  # noqa: E402
from servers import fine_tuned, served_gateway  # noqa: E402
from tasks import SEPARATOR, sentiment  # noqa: E402

MODEL = "smollm2-135m-instruct"
SYSTEM = "Classify the sentiment of the customer review. Answer with one word: positive or negative."
FUZZY_THRESHOLD = 0.5
CRITERIA: list[dict[str, Any]] = [
    {
        "type": "string_check",
        "name": "Names the label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "operation": "ilike",
    },
    {
        "type": "text_similarity",
        "name": "Close to the label",
        "input": "{{sample.output_text}}",
        "reference": "{{item.label}}",
        "evaluation_metric": "fuzzy_match",
        "pass_threshold": FUZZY_THRESHOLD,
    },
]
ITEM_SCHEMA = {
    "type": "object",
    "properties": {"text": {"type": "string"}, "label": {"type": "string"}},
    "required": ["text", "label"],
}


def rows(n: int) -> list[dict[str, str]]:
    """``n`` held-out review sentences with their labels, half positive (deterministic)."""
    test = sentiment(8, n).test
    return [{"text": r["prompt"].removesuffix(SEPARATOR), "label": r["completion"].split()[0]} for r in test]


def messages(text: str) -> list[dict[str, str]]:
    return [{"role": "system", "content": SYSTEM}, {"role": "user", "content": f"Review: {text}"}]


def client_grades(answer: str, label: str) -> tuple[bool, bool]:
    """The two criteria, as a client-side script checks them (OpenAI's definitions: ilike = contains, any case)."""
    return label.casefold() in answer.casefold(), fuzz.ratio(answer, label) / 100 >= FUZZY_THRESHOLD


@dataclass
class Side:
    seconds: float
    answers: list[str]
    passes: tuple[int, int]  # per criterion
    passed: int  # rows passing every criterion
    latencies: list[float]  # per-request seconds (the anchor only)

    def rate(self) -> float:
        return len(self.answers) / self.seconds


def anchor(client: OpenAI, model: str, data: list[dict[str, str]], max_tokens: int) -> Side:
    answers: list[str] = []
    graded: list[tuple[bool, bool]] = []
    latencies: list[float] = []
    started_at = time.perf_counter()
    for row in data:
        asked = time.perf_counter()
        completion = client.chat.completions.create(
            model=model,
            messages=messages(row["text"]),  # type: ignore[arg-type]
            temperature=0,
            max_completion_tokens=max_tokens,
        )
        answer = completion.choices[0].message.content or ""
        graded.append(client_grades(answer, row["label"]))
        latencies.append(time.perf_counter() - asked)
        answers.append(answer)
    seconds = time.perf_counter() - started_at
    passes = (sum(g[0] for g in graded), sum(g[1] for g in graded))
    return Side(seconds, answers, passes, sum(all(g) for g in graded), latencies)


def ours(client: OpenAI, model: str, data: list[dict[str, str]], max_tokens: int, poll: float) -> Side:
    source = {
        "type": "completions",
        "model": model,
        "input_messages": {
            "type": "template",
            "template": [
                {"role": "system", "content": SYSTEM},
                {"role": "user", "content": "Review: {{item.text}}"},
            ],
        },
        "sampling_params": {"temperature": 0, "max_completion_tokens": max_tokens},
        "source": {"type": "file_content", "content": [{"item": row} for row in data]},
    }
    config = {"type": "custom", "item_schema": ITEM_SCHEMA, "include_sample_schema": True}
    started_at = time.perf_counter()
    evaluation = client.evals.create(name="Sentiment", data_source_config=config, testing_criteria=CRITERIA)  # type: ignore[arg-type]
    run_id = client.evals.runs.create(evaluation.id, data_source=source).id  # type: ignore[arg-type]
    while True:  # a new run is queued: nothing to see before the first poll
        time.sleep(poll)
        run = client.evals.runs.retrieve(run_id, eval_id=evaluation.id)
        if run.status in ("completed", "failed", "canceled"):
            break
    seconds = time.perf_counter() - started_at
    if run.status != "completed" or run.result_counts.errored:
        raise SystemExit(f"eval run {run.id} {run.status}: {run.error}, {run.result_counts}")
    answers = [""] * len(data)
    for item in client.evals.runs.output_items.list(run.id, eval_id=evaluation.id, limit=100):
        output = item.sample.output
        answers[item.datasource_item_id] = (output[0].content or "") if output else ""
    by_name = {r.testing_criteria.rsplit("-", 5)[0]: r.passed for r in run.per_testing_criteria_results or []}
    passes = (by_name.get(CRITERIA[0]["name"], -1), by_name.get(CRITERIA[1]["name"], -1))
    return Side(seconds, answers, passes, run.result_counts.passed, [])


def fine_tune(client: OpenAI) -> str:
    """A chat fine-tune of the same task on the sentiment task's training side (40 examples, 2 epochs)."""
    train = [
        {
            "messages": [
                *messages(r["prompt"].removesuffix(SEPARATOR)),
                {"role": "assistant", "content": r["completion"].split()[0]},
            ]
        }
        for r in sentiment(40, 2).train
    ]
    method = {"type": "supervised", "supervised": {"hyperparameters": {"n_epochs": 2}}}
    return fine_tuned(client, train, MODEL, method)


def _spread(values: list[float], fmt: str) -> str:
    median, low, high = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return f"median {median} (min {low}, max {high})"


def measure(
    client: OpenAI, model: str, data: list[dict[str, str]], args: argparse.Namespace
) -> list[tuple[Side, Side, float]]:
    # Warm-ups: the model loads and its kernels compile on the first call; a small run warms the eval path.
    anchor(client, model, data[:2], args.max_tokens)
    ours(client, model, data[:16], args.max_tokens, args.poll)
    rounds: list[tuple[Side, Side, float]] = []
    for i in range(args.rounds):
        a = anchor(client, model, data, args.max_tokens)
        o = ours(client, model, data, args.max_tokens, args.poll)
        load = os.getloadavg()[0]
        rounds.append((a, o, load))
        agree = sum(x == y for x, y in zip(a.answers, o.answers, strict=True))
        print(
            f"  round {i + 1}: anchor {a.rate():5.2f} rows/s ({a.seconds:5.1f} s), ours {o.rate():5.2f} rows/s "
            f"({o.seconds:5.1f} s), ratio {o.rate() / a.rate():4.2f}x; answers agree {agree}/{len(data)}; "
            f"passes per criterion anchor {a.passes} ours {o.passes}, all criteria {a.passed} / {o.passed}; "
            f"load {load:.2f}",
            flush=True,
        )
    return rounds


def report(model: str, data: list[dict[str, str]], rounds: list[tuple[Side, Side, float]]) -> None:
    n = len(data)
    a_rates = [a.rate() for a, _, _ in rounds]
    o_rates = [o.rate() for _, o, _ in rounds]
    ratios = [o.rate() / a.rate() for a, o, _ in rounds]
    latencies = [t * 1000 for a, _, _ in rounds for t in a.latencies]
    a, o, _ = rounds[len(rounds) // 2]
    agree = sum(x == y for x, y in zip(a.answers, o.answers, strict=True))
    print(f"{model}, {n} rows:")
    print(f"  anchor (SDK loop + client grading) : {_spread(a_rates, '{:.2f}')} rows/s")
    print(f"  ours (evals.create + runs.create)  : {_spread(o_rates, '{:.2f}')} rows/s")
    print(f"  ratio (per round)                  : {_spread(ratios, '{:.2f}x')} (goal >= 4x)")
    print(
        f"  per row: anchor request p50 {statistics.median(latencies):.0f} ms (p90 "
        f"{statistics.quantiles(latencies, n=10)[-1]:.0f} ms); ours {1000 / statistics.median(o_rates):.0f} ms "
        f"amortized, anchor {1000 / statistics.median(a_rates):.0f} ms amortized"
    )
    print(
        f"  correctness (middle round): answers agree on {agree}/{n} rows; passes per criterion anchor {a.passes} "
        f"ours {o.passes}; rows passing both: anchor {a.passed}, ours {o.passed}"
    )
    for i, (x, y) in enumerate(zip(a.answers, o.answers, strict=True)):
        if x != y and i < 200:
            print(f"    row {i}: anchor {x!r} / ours {y!r}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=96)
    parser.add_argument("--max-tokens", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between runs.retrieve polls (default 0.25)")
    parser.add_argument("--fine-tuned", action="store_true", help="also train and measure a chat fine-tune")
    parser.add_argument("--eval-concurrency", type=int, help="FTGW_EVAL_CONCURRENCY of the gateway (default 32)")
    parser.add_argument("--max-batch-size", type=int, help="FTGW_ENGINE_MAX_BATCH_SIZE of the gateway (default 32)")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", default=os.environ.get("FTGW_TEST_MODEL_CACHE", str(default_cache)))
    args = parser.parse_args()
    if not 16 <= args.rows <= 256:
        parser.error("--rows: 16 to 256")

    from app.providers.local.base_models import SMOLLM2, BaseModelStore

    cache = Path(args.cache)
    store = BaseModelStore(cache)
    cold = not store.is_ready(SMOLLM2)
    store.resolve(SMOLLM2)
    extra = {}
    if args.eval_concurrency:
        extra["FTGW_EVAL_CONCURRENCY"] = str(args.eval_concurrency)
    if args.max_batch_size:
        extra["FTGW_ENGINE_MAX_BATCH_SIZE"] = str(args.max_batch_size)
    data = rows(args.rows)
    print(
        f"base model cache {'converted now (setup)' if cold else 'warm'}; {len(os.sched_getaffinity(0))} cores, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}; {args.rows} rows, max_completion_tokens "
        f"{args.max_tokens}, temperature 0; gateway settings {extra or 'defaults'}",
        flush=True,
    )
    with served_gateway(cache, extra) as gateway:
        base_url, key = gateway.base_url, gateway.key
        client = OpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)
        models = [MODEL]
        if args.fine_tuned:
            trained = time.perf_counter()
            models.append(fine_tune(client))
            print(f"fine-tuned {models[-1]} in {time.perf_counter() - trained:.0f} s (setup)", flush=True)
        results = {}
        for model in models:
            print(f"{model}:", flush=True)
            results[model] = measure(client, model, data, args)
        for model, rounds in results.items():
            report(model, data, rounds)


if __name__ == "__main__":
    main()
