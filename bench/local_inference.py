"""Benchmark: the batching :class:`~app.providers.local.engine.Engine` against one plain ``model.generate`` stream.

Real SmolLM2-135M-Instruct (converted once into ``FTGW_TEST_MODEL_CACHE`` or ``/tmp/ftgw-models``). Both sides
decode greedily ``--new-tokens`` tokens after prompts of the same length with EOS disabled, so every stream does
the same work. The anchor is one ``model.generate`` call with KV cache; the engine serves ``--concurrency``
requests at once. Prints aggregate tokens/s of each, their ratio (goal: at least 6x) and the engine's time to
first token (from submitting all requests to each one's first chunk).

    .venv/bin/python bench/local_inference.py [--concurrency 8] [--new-tokens 64] [--threads N]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402

from app.providers.local.base_models import SMOLLM2, BaseModelStore  # noqa: E402
from app.providers.local.engine import Engine, GenerationRequest  # noqa: E402
from app.providers.local.modeling import load_base  # noqa: E402

TOPICS = ["rivers", "the moon", "bread", "chess", "volcanoes", "violins", "bees", "glaciers"]


def prompts(engine: Engine, n: int) -> list[tuple[int, ...]]:
    """``n`` chat prompts cut to the shortest one's length, so both sides see the same prompt length."""
    encoded = [
        engine.encode_chat(SMOLLM2, [{"role": "user", "content": f"Write a short story about {TOPICS[i % 8]}."}])
        for i in range(n)
    ]
    length = min(len(p) for p in encoded)
    return [p[:length] for p in encoded]


def anchor(path: Path, prompt: tuple[int, ...], new_tokens: int) -> float:
    """Tokens/s of one greedy ``model.generate`` stream (after a warm-up call)."""
    model = load_base(path, torch.float32, torch.device("cpu"), packed=False).eval()
    ids = torch.tensor([prompt])
    mask = torch.ones_like(ids)
    with torch.inference_mode():
        model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, min_new_tokens=4, do_sample=False)
        start = time.perf_counter()
        # min_new_tokens: the same work as the engine's streams, even if the model would emit EOS early.
        out = model.generate(
            input_ids=ids, attention_mask=mask, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False
        )
        elapsed = time.perf_counter() - start
    assert out.shape[1] - ids.shape[1] == new_tokens
    return new_tokens / elapsed


async def through_engine(engine: Engine, batch: list[tuple[int, ...]], new_tokens: int) -> tuple[float, list[float]]:
    """(aggregate tokens/s, each request's time to first token) for all of ``batch`` at once."""

    async def one(prompt: tuple[int, ...], start: float) -> tuple[int, float]:
        first = 0.0
        count = 0
        request = GenerationRequest(SMOLLM2, prompt, max_new_tokens=new_tokens, temperature=0.0)
        async for chunk in engine.generate(request):
            if not first:
                first = time.perf_counter() - start
            count += len(chunk.token_ids)
        return count, first

    # Warm-up: loads the model and touches every code path once.
    await one(batch[0], time.perf_counter())
    start = time.perf_counter()
    results = await asyncio.gather(*(one(p, start) for p in batch))
    elapsed = time.perf_counter() - start
    return sum(c for c, _ in results) / elapsed, [t for _, t in results]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cache = Path(os.environ.get("FTGW_TEST_MODEL_CACHE") or "/tmp/ftgw-models")
    store = BaseModelStore(cache)
    path = store.resolve(SMOLLM2)
    engine = Engine(store, device=torch.device("cpu"))
    try:
        batch = prompts(engine, args.concurrency)
        # Anchor before and after: other work on a shared machine moves both sides, so take the mean.
        before = anchor(path, batch[0], args.new_tokens)
        # The engine has no min_new_tokens: a stream ending at EOS counts only the tokens it really produced.
        engine_tps, ttft = await through_engine(engine, batch, args.new_tokens)
    finally:
        await engine.close()
    single_tps = (before + anchor(path, batch[0], args.new_tokens)) / 2

    print(f"prompt tokens {len(batch[0])}, new tokens {args.new_tokens}, threads {args.threads}")
    print(f"single model.generate stream : {single_tps:8.1f} tokens/s")
    print(f"engine, {args.concurrency} concurrent        : {engine_tps:8.1f} tokens/s aggregate")
    print(f"ratio                        : {engine_tps / single_tps:8.2f}x (goal >= 6x)")
    median, worst = statistics.median(ttft) * 1000, max(ttft) * 1000
    print(f"time to first token          : median {median:.0f} ms, max {worst:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
