"""Benchmark: the local engine's int8 serving mode (``FTGW_ENGINE_INT8_MODELS``) against float32, speed and quality.

One engine in this process serves smollm2-135m-instruct under two names, float32 and on int8 weights (its products of
up to 4 rows: decode steps of a few streams), measured in the same run, leg by leg alternately:

* **speed**: greedy streams of 64 tokens from ``vllm_serving.py``'s mid-sentence openings, at 1, 8 and 16 streams:
  tokens per second and time to the first token (p50);
* **quality**: the learning-quality tasks (``learning_quality.py``: sentiment, guard, triage, generation, chat), one
  LoRA adapter each trained by the local trainer with its ``auto`` hyperparameters, scored through each engine the
  way ``learning_quality.score`` scores: the greedy first token against the label's (classification), the trained
  stop marker within 32 greedy tokens (generation). Goal (issue 18): int8 within 1 point of float32 on each task.

* **against llama.cpp** (with ``--llama-cpp PYTHON --gguf FILE ...``): one stream over each opening in turn,
  ftgw float32 and int8 beside llama.cpp (llama-cpp-python, ``bench/llama_cpp_leg.py``) on the same model
  converted to GGUF and quantized (Q8_0: int8; Q4_K_M: 4-bit), alternately, medians over the openings.

    .venv/bin/python bench/int8_serving.py [--tasks sentiment,guard,...] [--skip-quality] [--rounds 3]
        [--llama-cpp /work/llama-venv/bin/python --gguf smollm2-q8_0.gguf --gguf smollm2-q4_k_m.gguf]

llama.cpp is not a dependency of the project (it builds from source); bench/README.md says how to set it up.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(Path(__file__).resolve().parent))
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from learning_quality import build_tasks, train_ours, write  # noqa: E402
from tasks import Task  # noqa: E402
from vllm_serving import PROMPTS  # noqa: E402

from app.inference.gateway import InFlight  # noqa: E402
from app.providers.local.base_models import SMOLLM2, BaseModelStore  # noqa: E402
from app.providers.local.engine import Engine, GenerationRequest  # noqa: E402

TOKENS = 64
INT8_NAME = f"{SMOLLM2}-int8"  # smollm2 again, under a name the engine serves on int8 weights


@dataclass(frozen=True)
class Served:
    """One of the two ways the engine serves smollm2: the model name it is served under (float32, or int8)."""

    engine: Engine
    model: str


async def stream(served: Served, prompt: str, started: float) -> tuple[int, float]:
    """One greedy stream of ``TOKENS`` tokens from ``prompt``: its tokens, and its first token's time since
    ``started``."""
    engine, model = served.engine, served.model
    request = GenerationRequest(model, engine.encode_text(model, prompt), max_new_tokens=TOKENS, temperature=0.0)
    tokens, first = 0, 0.0
    async for chunk in engine.generate(request):
        if not tokens:
            first = time.perf_counter() - started
        tokens += len(chunk.token_ids)
    return tokens, first


async def streams(served: Served, count: int) -> tuple[float, list[float]]:
    """``count`` greedy streams of ``TOKENS`` tokens at once: tokens per second, and each stream's first-token time."""
    started = time.perf_counter()
    made = await asyncio.gather(*(stream(served, PROMPTS[i % len(PROMPTS)], started) for i in range(count)))
    return sum(n for n, _ in made) / (time.perf_counter() - started), [first for _, first in made]


async def speed(engines: dict[str, Served], rounds: int) -> None:
    for served in engines.values():
        await streams(served, 2)  # load, compile, warm
    print(f"\n{'streams':>7} {'float32 tok/s':>14} {'int8 tok/s':>11} {'ratio':>6} {'TTFT p50 f32':>13} {'int8':>8}")
    for count in (1, 8, 16):
        rates: dict[str, list[float]] = {name: [] for name in engines}
        firsts: dict[str, list[float]] = {name: [] for name in engines}
        for _ in range(rounds):  # alternately, so drift in the machine's speed falls on both
            for name, served in engines.items():
                rate, first = await streams(served, count)
                rates[name].append(rate)
                firsts[name] += first
        f32, q8 = statistics.median(rates["float32"]), statistics.median(rates["int8"])
        ttft = {name: statistics.median(times) * 1e3 for name, times in firsts.items()}
        print(
            f"{count:>7} {f32:>14.1f} {q8:>11.1f} {q8 / f32:>5.2f}x "
            f"{ttft['float32']:>10.0f} ms {ttft['int8']:>5.0f} ms",
            flush=True,
        )


async def one_stream(served: Served) -> tuple[float, float]:
    """One stream at a time over every opening: the median tokens per second and time to the first token."""
    runs = []
    for prompt in PROMPTS:
        started = time.perf_counter()
        tokens, first = await stream(served, prompt, started)
        runs.append((tokens / (time.perf_counter() - started), first))
    return statistics.median(r for r, _ in runs), statistics.median(f for _, f in runs)


def llama_cpp(python: str, gguf: Path) -> tuple[float, float]:
    leg = Path(__file__).resolve().parent / "llama_cpp_leg.py"
    command = [python, str(leg), str(gguf), "--tokens", str(TOKENS), "--threads", str(len(os.sched_getaffinity(0)))]
    result = json.loads(subprocess.run([*command, *PROMPTS], check=True, capture_output=True, text=True).stdout)
    return float(result["tok_s"]), float(result["ttft_s"])


async def against_llama_cpp(engines: dict[str, Served], python: str, ggufs: list[Path], rounds: int) -> None:
    legs: dict[str, list[tuple[float, float]]] = {f"ftgw {name}": [] for name in engines}
    legs |= {f"llama.cpp {g.stem}": [] for g in ggufs}
    for _ in range(rounds):  # alternately
        for name, served in engines.items():
            legs[f"ftgw {name}"].append(await one_stream(served))
        for gguf in ggufs:
            legs[f"llama.cpp {gguf.stem}"].append(llama_cpp(python, gguf))
    print(f"\none stream, {len(PROMPTS)} openings x {TOKENS} tokens, {rounds} rounds")
    print(f"{'server':<32} {'tok/s':>7} {'TTFT p50':>9}")
    for name, runs in legs.items():
        rate, first = statistics.median(r for r, _ in runs), statistics.median(f for _, f in runs)
        print(f"{name:<32} {rate:>7.1f} {first * 1e3:>6.0f} ms", flush=True)


async def score(served: Served, adapter: Path, task: Task) -> float:
    """``learning_quality.score`` through the engine: greedy first token against the label's, or the stop marker
    within 32 tokens."""

    engine, model = served.engine, served.model

    async def one(row: dict[str, object]) -> int:
        if task.kind == "chat":
            ids = engine.encode_chat(model, row["messages"])  # type: ignore[arg-type]
        else:
            ids = engine.encode_text(model, str(row["prompt"]))
        if task.kind == "classify":
            label = str(row["completion"]).removesuffix(" END")
            want = engine.encode_text(model, label)[0]
            request = GenerationRequest(model, ids, adapter=adapter, max_new_tokens=1, temperature=0.0)
            chunks = [c async for c in engine.generate(request)]
            return int(chunks[0].token_ids[0] == want)
        request = GenerationRequest(model, ids, adapter=adapter, max_new_tokens=32, temperature=0.0)
        text = "".join([c.text async for c in engine.generate(request)])
        return int(("**STOP**" if task.kind == "chat" else "END") in text)

    good = await asyncio.gather(*(one(row) for row in task.test))
    return sum(good) / len(task.test)


async def quality(engines: dict[str, Served], base: Path, names: list[str]) -> None:
    tasks = build_tasks()
    print(f"\n{'task':>10} {'test rows':>9} {'float32':>8} {'int8':>8} {'points':>7}  (goal: within 1 point)")
    with tempfile.TemporaryDirectory(prefix="ftgw-int8-") as tmp:
        for name in names:
            task = tasks[name]
            data = write(Path(tmp) / f"{name}.jsonl", task.train)
            adapter, _ = train_ours(base, data, Path(tmp) / name)
            f32 = await score(engines["float32"], Path(adapter), task)
            q8 = await score(engines["int8"], Path(adapter), task)
            print(f"{name:>10} {len(task.test):>9} {f32:>8.3f} {q8:>8.3f} {(q8 - f32) * 100:>+7.1f}", flush=True)


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", default="sentiment,guard,triage,generation,chat")
    parser.add_argument("--skip-quality", action="store_true")
    parser.add_argument("--rounds", type=int, default=3, help="legs per engine and stream count (medians)")
    parser.add_argument("--llama-cpp", help="python of a virtualenv with llama-cpp-python")
    parser.add_argument("--gguf", type=Path, action="append", default=[], help="a GGUF file of smollm2 (repeat)")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", default=os.environ.get("FTGW_TEST_MODEL_CACHE", str(default_cache)))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="ftgw-int8-model-") as extra:
        # One engine serves smollm2 under two names, float32 and int8: a second engine would be a second thread
        # running torch, with its own OpenMP threads, and two teams on two cores slowed the float32 engine's one
        # stream by a quarter (32 -> 25 tok/s, measured): a server has one engine thread.
        store = BaseModelStore(Path(args.cache), Path(extra))
        base = store.resolve(SMOLLM2)
        (Path(extra) / INT8_NAME).symlink_to(base, target_is_directory=True)
        print(f"load average {os.getloadavg()[0]:.2f}, {len(os.sched_getaffinity(0))} cores", flush=True)
        # The engine hears, as in the server, that no call is on its way: a lone stream does not wait for a burst.
        engine = Engine(store, traffic=InFlight(), int8_models=frozenset({INT8_NAME}))
        engines = {"float32": Served(engine, SMOLLM2), "int8": Served(engine, INT8_NAME)}
        try:
            await speed(engines, args.rounds)
            if args.llama_cpp:
                await against_llama_cpp(engines, args.llama_cpp, args.gguf, max(2, args.rounds - 1))
            if not args.skip_quality:
                await quality(engines, base, args.tasks.split(","))
        finally:
            await engine.close()


if __name__ == "__main__":
    asyncio.run(main())
