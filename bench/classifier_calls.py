"""Benchmark: classifier calls through ftgw against their floor, the model's matrix products alone.

A guard or classifier call is a short prompt (a review sentence, ~20 tokens) and one or two generated tokens. One
``ftgw serve`` (SQLite, embedded worker) serves SmolLM2-135M-Instruct and a LoRA classifier fine-tuned on it here
(prompt-completion sentiment rows, the defaults: rank 16 on every projection). For each model and each kind of call

  - ``/v1/classifications`` (labels given for the base model; the fine-tune knows its own),
  - ``/v1/completions`` with ``max_tokens`` 1, and with ``max_tokens`` 2 (temperature 0),

it measures p50/p95 latency and req/s at 1 connection (``--calls`` calls one after another) and at 8 (8 clients,
each sending its next call when its answer arrives, ``--calls`` x 2 calls in all).

The floor: every linear layer of the model (and of the adapter: its A and B products) as plain ``torch.mm`` on
inputs of the call's shape, with torch's default threads (the engine's): the prompt's prefill (B x T rows; the
LM head on the B last positions only), then one decode step of B rows per generated token after the first. T is
the prompt length ftgw reports in ``usage``. What it leaves out (attention, norms, activations, tokenizing,
HTTP) is ftgw's overhead. It is timed in this process right after each leg, the server idle, and each leg runs
twice (leg, floor, leg, floor; legs pooled, floors averaged): the machine's speed drifts by a third within
minutes (the same products, 176 ms then 250), so a floor timed minutes away from its leg would move the ratio
more than anything ftgw does. Goals (issue 18): p50 at 1 connection <= 1.25x the floor's B=1 time, req/s at 8
>= 0.8x the floor's 8 / (B=8 time).

    .venv/bin/python bench/classifier_calls.py [--calls 24] [--cache DIR] [--skip-fine-tune]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import httpx  # noqa: E402
import torch  # noqa: E402
from servers import BenchError, Gateway, fine_tuned, served_gateway  # noqa: E402
from tasks import SEPARATOR, sentiment  # noqa: E402

from app.providers.local.base_models import SMOLLM2, BaseModelStore  # noqa: E402
from app.providers.local.hf import load_causal_lm  # noqa: E402
from app.providers.local.training._spec import DEFAULT_LORA_TARGETS  # noqa: E402

LABELS = ["positive", "negative"]
LORA_RANK = 16  # the local trainer's default (app/providers/local/training/_spec.py)
CONCURRENCY = 8


# --------------------------------------------------------------------------------------------------- the floor


class Floor:
    """The model's linear layers as bare matrix products, timed on this machine."""

    def __init__(self, cache: Path) -> None:
        model = load_causal_lm(BaseModelStore(cache).resolve(SMOLLM2), torch.float32, torch.device("cpu"))
        self.weights = [
            (name, module.weight.detach().contiguous())
            for name, module in model.named_modules()
            if isinstance(module, torch.nn.Linear)
        ]
        self.lora = {
            name: (torch.randn(LORA_RANK, w.shape[1]) * 0.01, torch.randn(w.shape[0], LORA_RANK) * 0.01)
            for name, w in self.weights
            if name.rsplit(".", 1)[-1] in DEFAULT_LORA_TARGETS
        }

    def seconds(self, tokens: int, batch: int, steps: int, *, adapter: bool, reps: int = 15) -> float:
        """p50 of ``reps`` timings of the products of a prefill of ``batch`` prompts of ``tokens`` tokens and
        ``steps`` decode steps."""
        passes = [batch * tokens] + [batch] * steps
        inputs = {(rows, w.shape[1]): torch.randn(rows, w.shape[1]) for rows in passes for _, w in self.weights}
        inputs.update({(batch, w.shape[1]): torch.randn(batch, w.shape[1]) for _, w in self.weights})

        def once() -> None:
            for rows in passes:
                for name, w in self.weights:
                    x = inputs[(batch if name == "lm_head" else rows, w.shape[1])]
                    torch.mm(x, w.t())
                    if adapter and name in self.lora:
                        a, b = self.lora[name]
                        torch.mm(torch.mm(x, a.t()), b.t())

        with torch.inference_mode():
            for _ in range(3):
                once()
            timings = []
            for _ in range(reps):
                started = time.perf_counter()
                once()
                timings.append(time.perf_counter() - started)
        return statistics.median(timings)

    def single(self, leg: Leg, steps: int, *, adapter: bool) -> float:
        """The floor of one call of ``leg`` alone (B=1): seconds, at the leg's median prompt length."""
        return self.seconds(leg.tokens, 1, steps, adapter=adapter)

    def rate(self, leg: Leg, steps: int, *, adapter: bool) -> float:
        """The floor's calls per second at ``CONCURRENCY``: ``CONCURRENCY`` / the B=``CONCURRENCY`` time."""
        return CONCURRENCY / self.seconds(leg.tokens, CONCURRENCY, steps, adapter=adapter)


# --------------------------------------------------------------------------------------------------- the calls


@dataclass(frozen=True)
class Kind:
    name: str
    path: str
    steps: int  # decode steps after the prefill

    def body(self, model: str, text: str, fine_tuned: bool) -> dict[str, Any]:
        if self.path == "/classifications":
            return {"model": model, "input": text} | ({} if fine_tuned else {"labels": LABELS})
        return {"model": model, "prompt": text + SEPARATOR, "max_tokens": self.steps + 1, "temperature": 0}


CLASSIFY = Kind("classify", "/classifications", 0)
MAX_TOKENS_1 = Kind("max_tokens 1", "/completions", 0)
KINDS = [CLASSIFY, MAX_TOKENS_1, Kind("max_tokens 2", "/completions", 1)]


def classifier_texts(count: int) -> list[str]:
    """``count`` (at least 48) held-out review sentences of the sentiment task, without the prompt's separator."""
    return [r["prompt"].removesuffix(SEPARATOR) for r in sentiment(8, max(count, 48)).test]


@dataclass
class Leg:
    latencies: list[float]
    seconds: float
    prompt_tokens: list[int]

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]

    @property
    def tokens(self) -> int:
        """The median prompt length the server reported."""
        return round(statistics.median(self.prompt_tokens))

    @staticmethod
    def pooled(legs: list[Leg]) -> Leg:
        """Several runs of a leg as one: every call's latency, their time added up."""
        return Leg(
            [t for leg in legs for t in leg.latencies],
            sum(leg.seconds for leg in legs),
            [n for leg in legs for n in leg.prompt_tokens],
        )


@dataclass(frozen=True)
class Measured:
    """A kind of call's legs at 1 and at ``CONCURRENCY`` connections, each with its floor when one was timed:
    seconds for one call alone (B=1), and calls per second at ``CONCURRENCY``."""

    one: Leg
    many: Leg
    floor_single: float | None = None
    floor_rate: float | None = None


@dataclass(frozen=True)
class Calls:
    """One kind of call to one model of an OpenAI-compatible server; ``extra``: more fields of every request."""

    base_url: str  # with /v1
    key: str
    kind: Kind
    model: str
    fine_tuned: bool
    extra: Mapping[str, object] = field(default_factory=dict)

    async def leg(self, texts: list[str], clients: int) -> Leg:
        """``texts`` from ``clients`` clients, each sending its next call when its answer arrives."""
        headers = {"Authorization": f"Bearer {self.key}"}
        latencies: list[float] = []
        tokens: list[int] = []
        queue = list(texts)
        async with httpx.AsyncClient(base_url=self.base_url, headers=headers, timeout=120) as http:

            async def client() -> None:
                while queue:
                    body = self.kind.body(self.model, queue.pop(), self.fine_tuned) | dict(self.extra)
                    started = time.perf_counter()
                    response = await http.post(self.kind.path, json=body)
                    latencies.append(time.perf_counter() - started)
                    if response.status_code != 200:
                        problem = f"{response.status_code} {response.text[:500]}"
                        raise BenchError(f"{self.kind.name} on {self.model}: {problem}")
                    tokens.append(response.json()["usage"]["prompt_tokens"])

            started = time.perf_counter()
            await asyncio.gather(*[client() for _ in range(clients)])
            return Leg(latencies, time.perf_counter() - started, tokens)

    def measure(self, texts: list[str], calls: int, floor: Floor | None = None) -> Measured:
        """A warm-up (4 calls, an adapter loaded), then ``calls`` calls at 1 connection and ``calls`` x 2 at
        ``CONCURRENCY``. With ``floor``, each leg runs twice, its floor timed after each run (leg, floor, leg,
        floor: drift in the machine's speed between them evens out), the runs pooled and the floors averaged."""
        asyncio.run(self.leg(texts[:4], 1))
        if floor is None:
            one, many = asyncio.run(self.leg(texts[:calls], 1)), asyncio.run(self.leg(texts[: calls * 2], CONCURRENCY))
            return Measured(one, many)
        ones, singles, manys, rates = [], [], [], []
        for _ in range(2):
            ones.append(asyncio.run(self.leg(texts[:calls], 1)))
            singles.append(floor.single(ones[-1], self.kind.steps, adapter=self.fine_tuned))
        for _ in range(2):
            manys.append(asyncio.run(self.leg(texts[: calls * 2], CONCURRENCY)))
            rates.append(floor.rate(manys[-1], self.kind.steps, adapter=self.fine_tuned))
        # The floor's rate from its mean time per round, as the pooled legs' rate is calls over their total time.
        return Measured(
            Leg.pooled(ones), Leg.pooled(manys), statistics.mean(singles), len(rates) / sum(1 / r for r in rates)
        )


def fine_tune(gateway: Gateway) -> str:
    """A prompt-completion sentiment classifier on SmolLM2 (the sentiment task's 40 training rows, the defaults)."""
    from openai import OpenAI

    client = OpenAI(base_url=gateway.base_url, api_key=gateway.key)
    return fine_tuned(client, sentiment(40, 2).train, SMOLLM2)


# --------------------------------------------------------------------------------------------------- report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=24, help="calls per leg at 1 connection (x2 at 8)")
    default_cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ftgw" / "models"
    parser.add_argument("--cache", type=Path, default=Path(os.environ.get("FTGW_TEST_MODEL_CACHE", default_cache)))
    parser.add_argument("--skip-fine-tune", action="store_true", help="the base model only")
    args = parser.parse_args()

    texts = classifier_texts(args.calls * 2)
    print(f"load average {os.getloadavg()[0]:.2f}, {os.cpu_count()} cores, torch threads {torch.get_num_threads()}")
    floor = Floor(args.cache)  # timed after each leg, the server idle
    with served_gateway(args.cache) as gateway:
        models = [(SMOLLM2, False)]
        if not args.skip_fine_tune:
            started = time.perf_counter()
            models.append((fine_tune(gateway), True))
            print(f"fine-tuned {models[-1][0]} in {time.perf_counter() - started:.0f} s", flush=True)
        results: list[tuple[Kind, bool, Measured]] = []
        for model, tuned in models:
            for kind in KINDS:
                measured = Calls(gateway.base_url, gateway.key, kind, model, tuned).measure(texts, args.calls, floor)
                results.append((kind, tuned, measured))
                rate = measured.many.rate
                print(
                    f"[{model}] {kind.name}: p50 @1 {measured.one.p(0.5) * 1e3:.0f} ms, {rate:.2f} req/s @8", flush=True
                )
    print()
    header = (
        f"{'model':<12} {'call':<13} {'T':>3} {'p50 @1':>8} {'p95 @1':>8} {'floor B=1':>9} {'ratio':>6} "
        f"{'req/s @8':>8} {'p50 @8':>8} {'floor @8':>8} {'ratio':>6}"
    )
    print(header)
    for kind, tuned, m in results:
        assert m.floor_single is not None and m.floor_rate is not None
        one, many, single, batched = m.one, m.many, m.floor_single, m.floor_rate
        label = "fine-tune" if tuned else "base"
        print(
            f"{label:<12} {kind.name:<13} {one.tokens:>3} {one.p(0.5) * 1e3:>6.0f}ms {one.p(0.95) * 1e3:>6.0f}ms "
            f"{single * 1e3:>7.0f}ms {one.p(0.5) / single:>5.2f}x {many.rate:>8.2f} {many.p(0.5) * 1e3:>6.0f}ms "
            f"{batched:>8.2f} {many.rate / batched:>5.2f}x"
        )
    print("\ngoals: p50 @1 <= 1.25x the floor (B=1); req/s @8 >= 0.8x the floor's (8 / B=8 time)")


if __name__ == "__main__":
    main()
