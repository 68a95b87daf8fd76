"""Benchmark: the batching :class:`~app.providers.local.engine.Engine` against one plain ``model.generate`` stream.

Real SmolLM2-135M-Instruct (converted once into ``FTGW_TEST_MODEL_CACHE`` or ``/tmp/ftgw-models``). Both sides
decode greedily ``--new-tokens`` tokens after prompts of the same length, in float32, with the same torch thread
count (``--threads``, also the engine's BLAS threads). The anchor is what a plain transformers user writes: one
``model.generate`` call (sdpa attention, its default KV cache, greedy); the engine serves ``--concurrency``
requests at once. Prints aggregate tokens/s of each, their ratio (goal: at least 6x) and the time to first token
(engine: from submitting all requests to each one's first chunk; anchor: its single stream's first token).

Other work on a shared machine slows either side at random, so each of ``--rounds`` rounds measures the anchor
and then the engine back to back (after warm-ups of both), and the report gives the median round and the spread.

``--http`` adds a third leg to every round: the same requests as chat completions from the ``openai`` SDK
(AsyncOpenAI, streaming) to a ``ftgw serve`` subprocess, what a caller sees with HTTP, auth, routing and SSE on
top (its torch threads also set to ``--threads``). The server applies the chat template itself, so its prompts
are the whole chat prompts (a few tokens longer than the others' cut ones).

    .venv/bin/python bench/local_inference.py [--concurrency 8] [--new-tokens 64] [--threads 1] [--rounds 5]
        [--http]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import torch  # noqa: E402
from servers import served_gateway  # noqa: E402

from app.providers.local.base_models import SMOLLM2, BaseModelStore  # noqa: E402
from app.providers.local.engine import Engine, GenerationRequest  # noqa: E402
from app.providers.local.hf import load_causal_lm  # noqa: E402

TOPICS = ["rivers", "the moon", "bread", "chess", "volcanoes", "violins", "bees", "glaciers"]


def prompts(engine: Engine, n: int) -> list[tuple[int, ...]]:
    """``n`` chat prompts cut to the shortest one's length, so both sides see the same prompt length."""
    encoded = [
        engine.encode_chat(SMOLLM2, [{"role": "user", "content": f"Write a short story about {TOPICS[i % 8]}."}])
        for i in range(n)
    ]
    length = min(len(p) for p in encoded)
    return [p[:length] for p in encoded]


class _FirstToken:
    """A ``generate`` streamer that only notes when the first generated token arrives (its first put is the prompt)."""

    def __init__(self) -> None:
        self.puts = 0
        self.at = 0.0

    def put(self, value: Any) -> None:
        self.puts += 1
        if self.puts == 2:
            self.at = time.perf_counter()

    def end(self) -> None:
        pass


class Anchor:
    """One greedy ``model.generate`` stream on the same weights, float32, KV cache on."""

    def __init__(self, path: Path) -> None:
        self.model = load_causal_lm(path, torch.float32, torch.device("cpu")).eval()

    def run(self, prompt: tuple[int, ...], new_tokens: int) -> tuple[float, float]:
        """(tokens/s, seconds to the first token)."""
        ids = torch.tensor([prompt])
        streamer = _FirstToken()
        with torch.inference_mode():
            start = time.perf_counter()
            # min_new_tokens: the same work every run, even where the model would emit EOS early.
            out = self.model.generate(
                input_ids=ids,
                attention_mask=torch.ones_like(ids),
                max_new_tokens=new_tokens,
                min_new_tokens=new_tokens,
                do_sample=False,
                use_cache=True,
                streamer=streamer,
            )
            elapsed = time.perf_counter() - start
        assert out.shape[1] - ids.shape[1] == new_tokens
        return new_tokens / elapsed, streamer.at - start


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

    start = time.perf_counter()
    results = await asyncio.gather(*(one(p, start) for p in batch))
    elapsed = time.perf_counter() - start
    # The engine has no min_new_tokens: a stream ending at EOS counts only the tokens it really produced.
    return sum(c for c, _ in results) / elapsed, [t for _, t in results]


def chats(n: int) -> list[list[dict[str, str]]]:
    return [[{"role": "user", "content": f"Write a short story about {TOPICS[i % 8]}."}] for i in range(n)]


async def through_http(base_url: str, key: str, n: int, new_tokens: int) -> tuple[float, list[float]]:
    """(aggregate tokens/s, each request's time to first token) for ``n`` streamed chat completions at once."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(base_url=base_url, api_key=key, max_retries=0, timeout=600)

    async def one(messages: list[dict[str, str]], start: float) -> tuple[int, float]:
        first = 0.0
        count = 0
        stream = await client.chat.completions.create(
            model=SMOLLM2,
            messages=messages,  # type: ignore[arg-type]
            max_tokens=new_tokens,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
        async for chunk in stream:
            if not first and chunk.choices and chunk.choices[0].delta.content:
                first = time.perf_counter() - start
            if chunk.usage is not None:
                count = chunk.usage.completion_tokens
        return count, first

    try:
        start = time.perf_counter()
        results = await asyncio.gather(*(one(m, start) for m in chats(n)))
        elapsed = time.perf_counter() - start
    finally:
        await client.close()
    return sum(c for c, _ in results) / elapsed, [t for _, t in results]


@dataclass
class Round:
    anchor_tps: float
    anchor_ttft: float
    engine_tps: float
    engine_ttft: list[float]
    http_tps: float | None = None
    http_ttft: list[float] | None = None

    @property
    def ratio(self) -> float:
        return self.engine_tps / self.anchor_tps


def _spread(values: list[float], fmt: str = "{:.1f}") -> str:
    median, low, high = (fmt.format(v) for v in (statistics.median(values), min(values), max(values)))
    return f"median {median} (min {low}, max {high})"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=1, help="torch threads on both sides (default 1)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--http", action="store_true", help="also measure through `ftgw serve` and the openai SDK")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    cache = Path(os.environ.get("FTGW_TEST_MODEL_CACHE") or "/tmp/ftgw-models")
    store = BaseModelStore(cache)
    anchor = Anchor(store.resolve(SMOLLM2))
    engine = Engine(store, device=torch.device("cpu"))
    rounds: list[Round] = []
    with contextlib.ExitStack() as stack:
        server = (
            stack.enter_context(
                served_gateway(
                    cache, {"FTGW_EMBEDDED_WORKER": "false", "OMP_NUM_THREADS": str(args.threads)}, ready_timeout=120
                )
            )
            if args.http
            else None
        )
        try:
            batch = prompts(engine, args.concurrency)
            # Warm-ups: the first calls load weights, size caches and fault in pages on every side.
            anchor.run(batch[0], 8)
            await through_engine(engine, batch, 8)
            if server is not None:
                await through_http(server.base_url, server.key, args.concurrency, 8)
            for _ in range(args.rounds):
                anchor_tps, anchor_ttft = anchor.run(batch[0], args.new_tokens)
                engine_tps, engine_ttft = await through_engine(engine, batch, args.new_tokens)
                result = Round(anchor_tps, anchor_ttft, engine_tps, engine_ttft)
                line = (
                    f"  round {len(rounds) + 1}: anchor {anchor_tps:6.1f} tok/s, engine {engine_tps:6.1f} tok/s, "
                    f"ratio {engine_tps / anchor_tps:5.2f}x"
                )
                if server is not None:
                    result.http_tps, result.http_ttft = await through_http(
                        server.base_url, server.key, args.concurrency, args.new_tokens
                    )
                    line += f"; over HTTP {result.http_tps:6.1f} tok/s, ratio {result.http_tps / anchor_tps:5.2f}x"
                rounds.append(result)
                print(line, flush=True)
        finally:
            await engine.close()

    ttfts = [t * 1000 for r in rounds for t in r.engine_ttft]
    print(
        f"prompt tokens {len(batch[0])}, new tokens {args.new_tokens}, torch threads {torch.get_num_threads()} "
        f"on both sides, {args.rounds} rounds, {os.cpu_count()} cores"
    )
    print(f"single model.generate stream : {_spread([r.anchor_tps for r in rounds])} tokens/s")
    print(f"engine, {args.concurrency:<2} concurrent       : {_spread([r.engine_tps for r in rounds])} tokens/s total")
    print(f"ratio (per round)            : {_spread([r.ratio for r in rounds], '{:.2f}x')} (goal >= 6x)")
    print(f"engine time to first token   : p50 {statistics.median(ttfts):.0f} ms, max {max(ttfts):.0f} ms")
    print(f"anchor time to first token   : {_spread([r.anchor_ttft * 1000 for r in rounds], '{:.0f} ms')}")
    if args.http:
        http = [r.http_tps or 0.0 for r in rounds]
        http_ratios = [h / r.anchor_tps for h, r in zip(http, rounds, strict=True)]
        http_ttfts = [t * 1000 for r in rounds for t in r.http_ttft or []]
        print(f"over HTTP (ftgw serve + SDK) : {_spread(http)} tokens/s total")
        print(f"ratio over HTTP (per round)  : {_spread(http_ratios, '{:.2f}x')}")
        p50, worst = statistics.median(http_ttfts), max(http_ttfts)
        print(f"HTTP time to first token     : p50 {p50:.0f} ms, max {worst:.0f} ms")


if __name__ == "__main__":
    asyncio.run(main())
