"""The batching inference engine on the tiny model: same tokens as the reference path, alone or batched."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from app.inference.gateway import InFlight
from app.providers.local.base_models import SMOLLM2, TINY, BaseModelStore
from app.providers.local.engine import Engine, GenerationChunk, GenerationFailed, GenerationRequest
from app.providers.local.engine._decode import TextState, TopLogprobs, adjusted, pick_token
from app.providers.local.engine._lora import UnsupportedAdapter
from app.providers.local.engine._types import GREEDY_BELOW
from app.providers.local.hf import quiet_peft
from app.providers.local.training._generate import complete

torch.set_num_threads(1)  # other test runs may share the two cores; the tiny model gains nothing from more

PROMPTS = ["Q: banana 7\n\n###\n\n", "Hello there", "The quick brown fox", "1, 2, 3,"]


@pytest.fixture
async def engine(store: BaseModelStore) -> AsyncIterator[Engine]:
    engine = Engine(store, max_adapters=4)
    yield engine
    await engine.close()


def random_adapter(tiny_path: Path, folder: Path, seed: int, **options: Any) -> Path:
    """A LoRA adapter with random non-zero A and B: a cheap stand-in for a trained one that changes outputs."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_path), local_files_only=True)
    fields: dict[str, Any] = {"target_modules": ["q_proj", "v_proj", "o_proj"], **options}
    config = LoraConfig(r=4, lora_alpha=16, init_lora_weights=False, **fields)
    with torch.random.fork_rng(devices=[]), quiet_peft():
        torch.manual_seed(seed)
        model = get_peft_model(base, config)
    model.save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def adapters(tiny_path: Path, tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("adapters")
    return [random_adapter(tiny_path, root / f"a{seed}", seed) for seed in range(3)]


async def collect(engine: Engine, request: GenerationRequest) -> list[GenerationChunk]:
    return [chunk async for chunk in engine.generate(request)]


def text_of(chunks: list[GenerationChunk]) -> str:
    return "".join(c.text for c in chunks)


def assert_same_generations(alone: list[list[GenerationChunk]], together: list[list[GenerationChunk]]) -> None:
    """The same tokens, and the same top logprobs: positions, masks and cache rows are right only if the numbers
    match too, not just the argmaxes."""
    for a, b in zip(alone, together, strict=True):
        assert [c.token_ids for c in a] == [c.token_ids for c in b]
        got = [t.logprob for c in b for lp in c.logprobs for t in lp.top]
        want = [t.logprob for c in a for lp in c.logprobs for t in lp.top]
        assert got == pytest.approx(want, abs=1e-4)


def greedy(engine: Engine, prompt: str, adapter: Path | None = None, **kwargs: object) -> GenerationRequest:
    fields: dict[str, object] = {"max_new_tokens": 10, "temperature": 0.0, **kwargs}
    return GenerationRequest(TINY, engine.encode_text(TINY, prompt), adapter=adapter, **fields)  # type: ignore[arg-type]


async def test_greedy_matches_the_reference_path(engine: Engine, tiny_path: Path) -> None:
    chunks = await collect(engine, greedy(engine, PROMPTS[0]))
    assert text_of(chunks) == complete(tiny_path, None, PROMPTS[0], max_new_tokens=10)
    assert [c.finish_reason for c in chunks] == [None] * 9 + ["length"]
    assert chunks[-1].usage is not None
    assert (chunks[-1].usage.prompt_tokens, chunks[-1].usage.completion_tokens) == (9, 10)
    assert sum(len(c.token_ids) for c in chunks) == 10

    chat = engine.encode_chat(TINY, [{"role": "user", "content": "Say ok"}])
    request = GenerationRequest(TINY, chat, max_new_tokens=6, temperature=0.0)
    assert text_of(await collect(engine, request)) == complete(tiny_path, None, "Say ok", max_new_tokens=6, chat=True)


async def test_concurrent_requests_match_one_by_one(engine: Engine) -> None:
    requests = [greedy(engine, p, n_logprobs=3, max_new_tokens=8 + 2 * i) for i, p in enumerate(PROMPTS)]
    alone = [await collect(engine, r) for r in requests]
    together = await asyncio.gather(*(collect(engine, r) for r in requests))
    assert_same_generations(alone, together)


async def test_prompts_sharing_a_prefix_match_one_by_one(engine: Engine, adapters: list[Path]) -> None:
    # Chat prompts start with the same system prompt: admitted together, that prefix runs once per adapter.
    questions = ["Say ok", "Name a fruit", "Count to three", "Hi", "What is 2+2?", "Spell cat"]
    choices: list[Path | None] = [None, adapters[0], None, adapters[0], None, None]
    requests = [
        GenerationRequest(
            TINY,
            engine.encode_chat(TINY, [{"role": "user", "content": q}]),
            adapter=a,
            max_new_tokens=6,
            temperature=0.0,
            n_logprobs=2,
        )
        for q, a in zip(questions, choices, strict=True)
    ]
    alone = [await collect(engine, r) for r in requests]
    together = await asyncio.gather(*(collect(engine, r) for r in requests))
    assert_same_generations(alone, together)


async def test_adapters_and_base_in_one_batch(engine: Engine, tiny_path: Path, adapters: list[Path]) -> None:
    prompt = PROMPTS[1]
    choices: list[Path | None] = [adapters[0], None, adapters[1], adapters[0]]
    results = await asyncio.gather(*(collect(engine, greedy(engine, prompt, adapter=a)) for a in choices))
    texts = [text_of(r) for r in results]
    assert texts == [complete(tiny_path, a, prompt, max_new_tokens=10) for a in choices]
    assert len(set(texts)) == 3  # the adapters really change the output


async def test_lora_on_every_projection_matches_peft(engine: Engine, tiny_path: Path, tmp_path: Path) -> None:
    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    # rsLoRA and a per-module alpha: the scalings the engine must compute as PEFT does.
    adapter = random_adapter(
        tiny_path, tmp_path / "all", 7, target_modules=projections, use_rslora=True, alpha_pattern={"down_proj": 4}
    )
    prompt = PROMPTS[2]
    got = text_of(await collect(engine, greedy(engine, prompt, adapter=adapter)))
    assert got == complete(tiny_path, adapter, prompt, max_new_tokens=10)
    assert got != complete(tiny_path, None, prompt, max_new_tokens=10)


async def test_an_adapter_the_engine_cannot_serve_fails_alone(engine: Engine, tiny_path: Path, tmp_path: Path) -> None:
    dora = random_adapter(tiny_path, tmp_path / "dora", 1, use_dora=True)
    with pytest.raises(UnsupportedAdapter, match="use_dora"):
        await collect(engine, greedy(engine, PROMPTS[0], adapter=dora))
    assert (await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=2)))[-1].finish_reason == "length"


async def test_stop_strings_cut_and_are_excluded(engine: Engine) -> None:
    full = text_of(await collect(engine, greedy(engine, PROMPTS[2], max_new_tokens=12)))
    stop = full[8:12]
    chunks = await collect(engine, greedy(engine, PROMPTS[2], max_new_tokens=12, stop=("never seen", stop)))
    assert text_of(chunks) == full[: full.find(stop)]
    assert chunks[-1].finish_reason == "stop"
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens < 12


async def test_seed_makes_sampling_reproducible(engine: Engine) -> None:
    def sampled(seed: int) -> GenerationRequest:
        return GenerationRequest(
            TINY, engine.encode_text(TINY, PROMPTS[0]), max_new_tokens=16, temperature=3.0, top_p=0.95, seed=seed
        )

    first = [c.token_ids for c in await collect(engine, sampled(1))]
    # The same seed in a batch with other sequences draws the same tokens.
    batched = await asyncio.gather(collect(engine, sampled(1)), collect(engine, sampled(2)))
    assert [c.token_ids for c in batched[0]] == first
    assert [c.token_ids for c in batched[1]] != first


def test_a_batchs_logprobs_at_once_equal_each_rows_own() -> None:
    """One softmax and one top-k for the rows that ask (each its own count; 0: none) give each row what its own
    softmax and top-k give, and nothing to a row that did not ask."""
    torch.manual_seed(7)
    logits = torch.randn(5, 300) * 4
    logits[2, 17] = 40.0  # a row whose distribution is one token
    counts = [3, 0, 20, 1, 0]
    batch = TopLogprobs(logits, counts)
    for i, n in enumerate(counts):
        row = batch.row(i)
        if n == 0:
            assert row is None
            continue
        assert row is not None
        own = torch.log_softmax(logits[i], dim=-1)
        values, ids = own.topk(n)
        got = row.of(5, lambda t: f"<{t}>")
        assert [t.token_id for t in got.top] == ids.tolist()
        assert [t.logprob for t in got.top] == pytest.approx(values.tolist(), abs=1e-6)
        assert [t.token for t in got.top] == [f"<{t}>" for t in ids.tolist()]
        assert (got.token_id, got.token, got.logprob) == (5, "<5>", pytest.approx(float(own[5]), abs=1e-6))
    assert TopLogprobs(logits, [0] * 5).row(0) is None


async def test_logprobs_top_alternatives(engine: Engine) -> None:
    chunks = await collect(engine, greedy(engine, PROMPTS[3], n_logprobs=5, max_new_tokens=6))
    for chunk in chunks:
        (lp,) = chunk.logprobs
        assert lp.token_id == chunk.token_ids[0]
        assert len(lp.top) == 5
        assert lp.top[0].token_id == lp.token_id
        assert lp.top[0].logprob == pytest.approx(lp.logprob)
        assert [t.logprob for t in lp.top] == sorted((t.logprob for t in lp.top), reverse=True)
        assert all(t.logprob <= 0 for t in lp.top)
    assert not (await collect(engine, greedy(engine, PROMPTS[3], max_new_tokens=2)))[0].logprobs


async def test_lru_unloads_adapters_beyond_the_bound(store: BaseModelStore, adapters: list[Path]) -> None:
    engine = Engine(store, max_adapters=2)
    try:
        for adapter in [adapters[0], adapters[1], adapters[0], adapters[2]]:
            await collect(engine, greedy(engine, PROMPTS[0], adapter=adapter, max_new_tokens=2))
        # adapters[1] was the least recently used when adapters[2] arrived.
        assert engine.loaded_adapters(TINY) == [adapters[0].resolve(), adapters[2].resolve()]
        # Reloading an evicted adapter gives its outputs again.
        again = await collect(engine, greedy(engine, PROMPTS[1], adapter=adapters[1]))
        assert text_of(again) == complete(store.resolve(TINY), adapters[1], PROMPTS[1], max_new_tokens=10)
    finally:
        await engine.close()


async def test_warm_loads_a_model_and_its_adapter_before_any_request(
    engine: Engine, store: BaseModelStore, adapters: list[Path], tmp_path: Path
) -> None:
    engine.warm(TINY, tmp_path / "no-such-adapter")  # fails on the engine's thread: logged, nobody else hurt
    engine.warm(TINY, adapters[1])
    deadline = asyncio.get_running_loop().time() + 60
    while engine.loaded_adapters(TINY) != [adapters[1].resolve()]:
        assert asyncio.get_running_loop().time() < deadline, engine.loaded_adapters(TINY)
        await asyncio.sleep(0.05)
    assert (engine.prefill_passes, engine.decode_steps) == (0, 0)  # loaded, nothing generated
    answer = await collect(engine, greedy(engine, PROMPTS[1], adapter=adapters[1]))
    assert text_of(answer) == complete(store.resolve(TINY), adapters[1], PROMPTS[1], max_new_tokens=10)


async def test_a_cancelled_consumer_frees_its_slot(engine: Engine) -> None:
    stream = engine.generate(greedy(engine, PROMPTS[0], max_new_tokens=1500))
    assert [await anext(stream) for _ in range(2)]
    await stream.aclose()  # type: ignore[attr-defined]
    for _ in range(200):
        if engine.running() == 0:
            break
        await asyncio.sleep(0.01)
    assert engine.running() == 0
    assert (await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=3)))[-1].finish_reason == "length"


async def test_other_architectures_go_through_transformers(tiny_path: Path, tmp_path: Path) -> None:
    # A Llama with attention biases is outside the engine's own forward: transformers + PEFT serve it instead.
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.from_pretrained(str(tiny_path), attention_bias=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(3)
        model = AutoModelForCausalLM.from_config(config)
    folder = tmp_path / "models" / "biased-llama"
    model.save_pretrained(str(folder))
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        if (tiny_path / name).is_file():
            shutil.copy(tiny_path / name, folder / name)
    engine = Engine(BaseModelStore(tmp_path / "cache", tmp_path / "models"))
    try:
        requests = [
            GenerationRequest(
                "biased-llama", engine.encode_text("biased-llama", p), max_new_tokens=6 + i, temperature=0.0
            )
            for i, p in enumerate(PROMPTS)
        ]
        together = await asyncio.gather(*(collect(engine, r) for r in requests))
        for prompt, request, chunks in zip(PROMPTS, requests, together, strict=True):
            assert text_of(chunks) == complete(folder, None, prompt, max_new_tokens=request.max_new_tokens)
    finally:
        await engine.close()


def test_text_is_sent_only_when_whole(store: BaseModelStore) -> None:
    tokenizer = store.tokenizer(TINY)
    text = "naïve 😀 世界 done"
    state = TextState(tokenizer, threading.Lock(), stop=(" do",))
    pieces = [state.push(t) for t in tokenizer(text, add_special_tokens=False)["input_ids"]]
    assert not any("\ufffd" in p for p, _ in pieces)
    assert "".join(p for p, _ in pieces) == "naïve 😀 世界"
    assert pieces[-1][1] or pieces[-2][1]


async def test_smollm2_batched_chat_matches_the_reference(smollm2_path: Path, store: BaseModelStore) -> None:
    engine = Engine(store)
    try:
        questions = ["What is the capital of France?", "Name a color."]
        requests = [
            GenerationRequest(
                SMOLLM2,
                engine.encode_chat(SMOLLM2, [{"role": "user", "content": q}]),
                max_new_tokens=12,
                temperature=0.0,
            )
            for q in questions
        ]
        results = await asyncio.gather(*(collect(engine, r) for r in requests))
        for q, chunks in zip(questions, results, strict=True):
            assert text_of(chunks) == complete(smollm2_path, None, q, max_new_tokens=12, chat=True)
    finally:
        await engine.close()


async def test_a_bad_request_fails_alone(engine: Engine) -> None:
    with pytest.raises(KeyError):
        await collect(engine, GenerationRequest("no-such-model", (1, 2, 3), max_new_tokens=2))
    with pytest.raises(ValueError, match="at most"):
        await collect(engine, GenerationRequest(TINY, (5,) * 2048, max_new_tokens=2))
    with pytest.raises(ValueError, match="n_logprobs"):
        GenerationRequest(TINY, (1,), n_logprobs=21)
    assert (await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=2)))[-1].finish_reason == "length"


def test_fused_prefill_and_decode_steps_match_torch_operations(tiny_path: Path, tmp_path: Path) -> None:
    """On CPU in float32 decode steps and the prefill of short prompts run the engine's own kernels; elsewhere the
    same pass runs on torch operations. Both paths must give the same logits and write the same cache, with LoRA
    on every projection for some rows and none for others, and after a cached prefix."""
    from app.providers.local.engine._llama import LlamaRunner
    from app.providers.local.engine._lora import load_lora
    from app.providers.local.hf import load_causal_lm

    projections = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    adapter = random_adapter(tiny_path, tmp_path / "all", 11, target_modules=projections)
    model = load_causal_lm(tiny_path, torch.float32, torch.device("cpu")).eval()
    runners = [LlamaRunner(model, fused=True), LlamaRunner(model, fused=False)]
    lora = runners[0].fuse_lora(load_lora(adapter, dtype=torch.float32, device=torch.device("cpu")))
    prompts = [[5, 9, 2, 7], [5, 9, 3], [8, 1, 1, 4, 4, 6], [2]]
    on_lora = torch.tensor([0, 2])
    lengths = [len(p) for p in prompts]
    # Prefill groups index tokens (the prompts concatenated); decode groups index rows.
    token_rows = torch.tensor([sum(lengths[:i]) + t for i in on_lora.tolist() for t in range(lengths[i])])
    with torch.inference_mode():
        # Short prompts are prefilled through the same kernels, each prompt's tokens in order.
        fused, plain = (r.prefill(prompts, [0, 1, 2, 3], [0] * 4, [(lora, token_rows)]) for r in runners)
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
        tokens, positions = [3, 4, 5, 6], list(lengths)
        for _ in range(5):
            fused, plain = (r.decode(tokens, positions, [(lora, on_lora)]) for r in runners)
            torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)
            tokens = fused.argmax(dim=-1).tolist()
            positions = [p + 1 for p in positions]
        for a, b in ((runners[0].cache.k, runners[1].cache.k), (runners[0].cache.v, runners[1].cache.v)):
            for row, n in enumerate(positions):
                torch.testing.assert_close(a[:, row, :, :n], b[:, row, :, :n], rtol=1e-4, atol=1e-4)
        # Rows 4 and 5 continue a prefix cached in row 4 (prompts sharing a chat template's start).
        for runner in runners:
            runner.prefill([[9, 9, 1, 2, 3]], [4], [0], [])
            runner.cache.copy_prefix(4, [5], 5)
        fused, plain = (r.prefill([[7, 7], [6]], [4, 5], [5, 5], []) for r in runners)
        torch.testing.assert_close(fused, plain, rtol=1e-4, atol=1e-4)


def test_padded_prefill_attention_matches_attention_prompt_by_prompt(
    tiny_path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass of several prompts of similar lengths attends in one padded product per layer; it must give the
    logits and cache of one product per prompt, also after a cached prefix, on rows out of order, with LoRA."""
    from app.providers.local.engine import _llama
    from app.providers.local.engine._lora import load_lora
    from app.providers.local.hf import load_causal_lm

    adapter = random_adapter(tiny_path, tmp_path / "a", 5, target_modules=["q_proj", "k_proj", "v_proj"])
    lora = load_lora(adapter, dtype=torch.float32, device=torch.device("cpu"))
    model = load_causal_lm(tiny_path, torch.float32, torch.device("cpu")).eval()
    prefix, prompts = [5, 9, 2, 7, 1, 3], [[4, 4, 6, 8], [2], [8, 1, 1], [7, 3, 9, 9, 5]]
    rows, cached = [5, 1, 2, 0], [6, 6, 0, 0]  # rows 5 and 1 continue the prefix cached in row 5
    token_rows = torch.tensor([0, 1, 2, 3, 4])  # LoRA on the first prompt's tokens and the second's
    pays = _llama._padding_pays
    results = []
    for padded in (True, False):
        monkeypatch.setattr(_llama, "_padding_pays", lambda lengths, cached, padded=padded: padded)
        runner = _llama.LlamaRunner(model, fused=False)  # short prompts on CPU would take the fused kernels
        with torch.inference_mode():
            runner.prefill([prefix], [5], [0], [])
            runner.cache.copy_prefix(5, [1], len(prefix))
            logits = runner.prefill(prompts, rows, cached, [(runner.fuse_lora(lora), token_rows)])
        results.append((logits, runner.cache.k.clone(), runner.cache.v.clone()))
    (logits, k, v), (want, want_k, want_v) = results
    torch.testing.assert_close(logits, want, rtol=1e-4, atol=1e-4)
    for row, n in zip(rows, (10, 7, 3, 5), strict=True):
        torch.testing.assert_close(k[:, row, :, :n], want_k[:, row, :, :n], rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(v[:, row, :, :n], want_v[:, row, :, :n], rtol=1e-4, atol=1e-4)
    # Which the engine picks: padded for a batch of classifier-sized prompts, not where it would mostly pad.
    assert pays([14, 15, 13, 14, 16, 14, 12, 15], [0] * 8)
    assert not pays([200, 3, 4, 5], [0, 0, 0, 0])
    assert not pays([14], [0])


async def test_a_burst_waking_an_idle_engine_is_prefilled_in_one_pass(store: BaseModelStore) -> None:
    # HTTP requests of one burst reach the engine milliseconds apart: the first waits briefly for the rest
    # (here up to 0.5 s, so a busy test machine cannot stretch the gap past it).
    engine = Engine(store, admit_window=0.5)
    try:
        await collect(engine, greedy(engine, PROMPTS[2], max_new_tokens=1))  # model loaded, engine idle again
        passes, steps = engine.prefill_passes, engine.decode_steps
        first = asyncio.ensure_future(collect(engine, greedy(engine, PROMPTS[0], max_new_tokens=3)))
        await asyncio.sleep(0.003)
        second = asyncio.ensure_future(collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=3)))
        await asyncio.gather(first, second)
        assert engine.prefill_passes - passes == 1
        assert engine.decode_steps - steps == 2  # 3 tokens each: one from the prefill, two from shared steps
    finally:
        await engine.close()


async def served(engine: Engine, in_flight: InFlight, request: GenerationRequest, delay: float = 0.0) -> list[Any]:
    """One call of a server: on its way from its start, handed to the engine ``delay`` seconds later."""
    with in_flight.call():
        await asyncio.sleep(delay)
        in_flight.dispatched()
        return await collect(engine, request)


@pytest.mark.parametrize("another_on_its_way", [True, False])
async def test_the_servers_word_on_calls_on_their_way_decides_whether_a_call_waits_for_a_burst(
    store: BaseModelStore, another_on_its_way: bool
) -> None:
    # The same two calls 3 ms apart as above: when the server already has the second on its way as the first
    # arrives, the first waits for it (one prefill pass); when no other call is on its way, the first is prefilled
    # at once and the second gets a pass of its own, the window (0.5 s) not waited.
    in_flight = InFlight()
    engine = Engine(store, admit_window=0.5, traffic=in_flight)
    try:
        await served(engine, in_flight, greedy(engine, PROMPTS[2], max_new_tokens=1))
        passes = engine.prefill_passes
        first = asyncio.ensure_future(served(engine, in_flight, greedy(engine, PROMPTS[0], max_new_tokens=3)))
        if another_on_its_way:
            request = greedy(engine, PROMPTS[1], max_new_tokens=3)
            second = asyncio.ensure_future(served(engine, in_flight, request, delay=0.003))
        else:
            await asyncio.sleep(0.003)
            second = asyncio.ensure_future(served(engine, in_flight, greedy(engine, PROMPTS[1], max_new_tokens=3)))
        await asyncio.gather(first, second)
        assert engine.prefill_passes - passes == (1 if another_on_its_way else 2)
        assert (in_flight.calls(), in_flight.routing()) == (0, 0)
    finally:
        await engine.close()


async def test_requests_submitted_together_share_a_pass_even_when_the_server_sees_one_call_and_the_next_round_waits(
    store: BaseModelStore,
) -> None:
    # The prompts of one call (n > 1, a list of prompts) are submitted together by one call the server counts
    # once: none of them is alone, so they are prefilled in one pass.
    in_flight = InFlight()
    engine = Engine(store, admit_window=0.5, traffic=in_flight)
    try:
        await served(engine, in_flight, greedy(engine, PROMPTS[2], max_new_tokens=1))
        passes = engine.prefill_passes
        with in_flight.call():
            in_flight.dispatched()
            await asyncio.gather(*(collect(engine, greedy(engine, p, max_new_tokens=2)) for p in PROMPTS[:3]))
        assert engine.prefill_passes - passes == 1
        # After a pass of several, a call that looks alone is taken for the first of the next round: it waits.
        passes = engine.prefill_passes
        first = asyncio.ensure_future(served(engine, in_flight, greedy(engine, PROMPTS[0], max_new_tokens=3)))
        await asyncio.sleep(0.003)
        second = asyncio.ensure_future(served(engine, in_flight, greedy(engine, PROMPTS[1], max_new_tokens=3)))
        await asyncio.gather(first, second)
        assert engine.prefill_passes - passes == 1
    finally:
        await engine.close()


async def test_the_wait_for_a_burst_ends_once_no_call_is_on_its_way(store: BaseModelStore) -> None:
    # Three calls reach the engine 3 ms apart: the window is 2 s, but once the third is here no other call is on
    # its way, and the pass starts.
    in_flight = InFlight()
    engine = Engine(store, admit_window=2.0, traffic=in_flight)
    try:
        await served(engine, in_flight, greedy(engine, PROMPTS[2], max_new_tokens=1))
        passes, started = engine.prefill_passes, time.monotonic()
        calls = [
            served(engine, in_flight, greedy(engine, prompt, max_new_tokens=1), delay=0.003 * i)
            for i, prompt in enumerate(PROMPTS[:3])
        ]
        await asyncio.gather(*calls)
        assert engine.prefill_passes - passes == 1
        assert time.monotonic() - started < 1.0
        # A call the server is still routing keeps it waiting: the call arriving 0.1 s after the first still
        # shares its pass.
        engine._admit_window = 0.5
        passes = engine.prefill_passes
        with in_flight.call():
            await asyncio.gather(
                served(engine, in_flight, greedy(engine, PROMPTS[0], max_new_tokens=1)),
                served(engine, in_flight, greedy(engine, PROMPTS[1], max_new_tokens=1), delay=0.1),
            )
        assert engine.prefill_passes - passes == 1
    finally:
        await engine.close()


# --- one sequence never fails another -------------------------------------------------------------------------


def adapter_for_another_base(tiny_path: Path, folder: Path) -> Path:
    """A LoRA adapter whose A matrices take a wider input than the tiny model's projections, as an adapter trained on
    a bigger base of the same family would: it loads, and fails in the forward pass of its rows."""
    from safetensors.torch import load_file, save_file

    random_adapter(tiny_path, folder, 5)
    weights = folder / "adapter_model.safetensors"
    tensors = load_file(str(weights))
    for key in [k for k in tensors if "lora_A" in k]:
        rank, width = tensors[key].shape
        tensors[key] = torch.randn(rank, width + 32)
    save_file(tensors, str(weights))
    return folder


async def drained(engine: Engine) -> bool:
    """Whether the worker holds no sequence within 2 s (it drops a finished row just after sending its end)."""
    for _ in range(200):
        if engine.active() == 0:
            return True
        await asyncio.sleep(0.01)
    return False


async def outcome(engine: Engine, request: GenerationRequest) -> list[GenerationChunk] | BaseException:
    try:
        return await collect(engine, request)
    except Exception as error:
        return error


async def test_a_sequence_failing_in_sampling_fails_alone(store: BaseModelStore) -> None:
    # A logit_bias on a token id past the model's logits passes the request's own checks (the gateway checks
    # ids against the model) and fails when that row's token is picked, in the middle of a batched prefill.
    engine = Engine(store, admit_window=0.5)  # the whole burst in one prefill pass with the poisoned row
    try:
        healthy = [greedy(engine, p, n_logprobs=2, max_new_tokens=6 + i) for i, p in enumerate(PROMPTS)]
        # Temperatures so small that logits / temperature overflow: greedy decoding, as temperature 0.
        tiny = [greedy(engine, PROMPTS[0], temperature=t, n_logprobs=2, max_new_tokens=6) for t in (1e-300, 1e-45)]
        poisoned = greedy(engine, PROMPTS[1], logit_bias=((10**9, 1.0),))
        alone = [await collect(engine, r) for r in healthy]
        passes = engine.prefill_passes
        together = await asyncio.gather(*(outcome(engine, r) for r in [*healthy, poisoned, *tiny]))
        assert engine.prefill_passes - passes == 1, "the poisoned row was not in the others' prefill pass"
        *others, failed, first_tiny, second_tiny = together
        assert isinstance(failed, GenerationFailed) and isinstance(failed.__cause__, IndexError)
        assert all(isinstance(o, list) for o in others)
        assert_same_generations(alone, others)  # type: ignore[arg-type]
        assert_same_generations([alone[0][:6]] * 2, [first_tiny, second_tiny])  # type: ignore[list-item]
        assert await drained(engine)
    finally:
        await engine.close()


async def test_a_failing_prefill_pass_is_retried_prompt_by_prompt(
    engine: Engine, tiny_path: Path, tmp_path: Path, adapters: list[Path]
) -> None:
    broken = adapter_for_another_base(tiny_path, tmp_path / "other-base")
    choices: list[Path | None] = [None, adapters[0], broken, None]
    requests = [greedy(engine, p, adapter=a, n_logprobs=2) for p, a in zip(PROMPTS, choices, strict=True)]
    alone = [await outcome(engine, r) for r in requests]
    together = await asyncio.gather(*(outcome(engine, r) for r in requests))
    assert isinstance(alone[2], GenerationFailed) and isinstance(together[2], GenerationFailed)
    assert_same_generations([alone[i] for i in (0, 1, 3)], [together[i] for i in (0, 1, 3)])  # type: ignore[misc]


async def test_a_failing_decode_step_is_redone_sequence_by_sequence(
    engine: Engine, tiny_path: Path, adapters: list[Path]
) -> None:
    choices: list[Path | None] = [None, adapters[1], None]
    requests = [
        greedy(engine, p, adapter=a, n_logprobs=2, max_new_tokens=12) for p, a in zip(PROMPTS[:3], choices, strict=True)
    ]
    alone = [await collect(engine, r) for r in requests]
    streams = [engine.generate(r) for r in requests]
    firsts = [[await anext(s)] for s in streams]  # all three running in one batch now
    # A fault only a decode step meets: adapters[1]'s weights, as loaded, corrupted in memory.
    from app.providers.local.engine._lora import FusedModule

    slot: Any = engine._slots[TINY]
    loaded = slot._loras[slot.adapters[adapters[1].resolve()]]
    for key, module in list(loaded.items()):
        loaded[key] = FusedModule(torch.randn(module.a.shape[0] + 8, module.a.shape[1]), module.b)
    rest = await asyncio.gather(*(outcome_of(s) for s in streams))
    assert isinstance(rest[1], GenerationFailed)
    assert_same_generations([alone[0], alone[2]], [firsts[0] + rest[0], firsts[2] + rest[2]])  # type: ignore[operator]
    assert await drained(engine)


async def outcome_of(stream: AsyncIterator[GenerationChunk]) -> list[GenerationChunk] | BaseException:
    try:
        return [chunk async for chunk in stream]
    except Exception as error:
        return error


async def test_logit_bias_and_penalties_change_the_pick(engine: Engine) -> None:
    def picks(chunks: list[GenerationChunk]) -> list[int]:
        return [c.token_ids[0] for c in chunks]

    plain = picks(await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=12)))
    forced = await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=4, logit_bias=((42, 100.0),)))
    assert picks(forced) == [42] * 4
    banned = await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=4, logit_bias=((plain[0], -100.0),)))
    assert banned[0].token_ids[0] != plain[0]
    # The tiny model repeats one token; OpenAI's penalties make it stop sooner (presence adds to frequency).
    assert plain == [plain[0]] * 12
    frequency = picks(await collect(engine, greedy(engine, PROMPTS[1], max_new_tokens=12, frequency_penalty=2.0)))
    both = picks(
        await collect(
            engine, greedy(engine, PROMPTS[1], max_new_tokens=12, frequency_penalty=2.0, presence_penalty=2.0)
        )
    )
    assert 1 <= both.count(plain[0]) < frequency.count(plain[0]) < 12


def test_penalties_and_bias_are_openais_arithmetic() -> None:
    logits = torch.tensor([1.0, 2.0, 3.0, 4.0])
    request = GenerationRequest(
        TINY, (1,), frequency_penalty=0.5, presence_penalty=-1.0, logit_bias=((0, 10.0), (3, -100.0))
    )
    got = adjusted(logits, request, Counter({1: 3, 3: 1}))
    # mu[j] - c[j] * frequency - (c[j] > 0) * presence + bias[j]
    assert got.tolist() == [11.0, 2.0 - 1.5 + 1.0, 3.0, 4.0 - 0.5 + 1.0 - 100.0]
    assert adjusted(logits, GenerationRequest(TINY, (1,)), Counter({1: 3})) is logits


async def test_any_int64_seed_samples_reproducibly(engine: Engine) -> None:
    for seed in (-(2**63), 2**63 - 1, 2**64 + 5):
        request = GenerationRequest(TINY, engine.encode_text(TINY, PROMPTS[0]), max_new_tokens=6, seed=seed)
        first, again = await asyncio.gather(collect(engine, request), collect(engine, request))
        assert [c.token_ids for c in first] == [c.token_ids for c in again]


@settings(max_examples=200, deadline=None)
@given(
    logits=st.lists(st.floats(-1e4, 1e4, width=32), min_size=2, max_size=64),
    temperature=st.one_of(st.floats(0, 2), st.sampled_from([1e-300, 1e-45, 5e-324, 1e-6, 1e-5])),
    top_p=st.one_of(st.floats(0, 1), st.just(0.0), st.just(1.0)),
    seed=st.integers(0, 2**63),
)
def test_picking_a_token_never_fails_for_any_accepted_temperature(
    logits: list[float], temperature: float, top_p: float, seed: int
) -> None:
    row = torch.tensor(logits)
    token = pick_token(row, temperature=temperature, top_p=top_p, generator=torch.Generator().manual_seed(seed))
    assert 0 <= token < len(logits)
    if temperature < GREEDY_BELOW or top_p == 0:
        assert token == int(row.argmax())
    elif top_p < 1:  # nucleus: the tokens more likely than the pick have less than top_p of the mass together
        probs = torch.softmax((row.double() - row.max()) / temperature, dim=-1)
        assert float(probs[probs > probs[token]].sum()) < top_p + 1e-9


def test_int8_decode_steps_stay_near_float32(smollm2_path: Path) -> None:
    """The int8 serving mode (decode-step products on int8 weights) on SmolLM2's real weights: every step's
    distribution within a small KL of float32's and the same greedy token on nearly every step, fed the same tokens.
    The logits are not float32's bit for bit: the int8 products did run."""
    from transformers import AutoTokenizer

    from app.providers.local.engine._llama import LlamaRunner
    from app.providers.local.hf import load_causal_lm

    model = load_causal_lm(smollm2_path, torch.float32, torch.device("cpu")).eval()
    exact, int8 = LlamaRunner(model), LlamaRunner(model, int8=True)
    tokenizer = AutoTokenizer.from_pretrained(str(smollm2_path), local_files_only=True)
    texts = ["The capital of France is", "Once upon a time there was", "The recipe calls for two", "In 1969, the"]
    prompts = [tokenizer(t)["input_ids"] for t in texts]
    kls, agree, steps = [], 0, 0
    with torch.inference_mode():
        a = exact.prefill(prompts, [0, 1, 2, 3], [0] * 4, [])
        b = int8.prefill(prompts, [0, 1, 2, 3], [0] * 4, [])
        positions = [len(p) for p in prompts]
        for _ in range(12):
            p, q = torch.log_softmax(a, dim=-1), torch.log_softmax(b, dim=-1)
            kls += (p.exp() * (p - q)).sum(dim=-1).tolist()
            agree += int((a.argmax(-1) == b.argmax(-1)).sum())
            steps += len(prompts)
            assert not torch.equal(a, b)
            tokens = a.argmax(dim=-1).tolist()  # both fed float32's greedy pick
            a, b = exact.decode(tokens, positions, []), int8.decode(tokens, positions, [])
            positions = [n + 1 for n in positions]
    assert max(kls) < 0.02 and sum(kls) / len(kls) < 0.005, kls
    assert agree >= 0.9 * steps


async def test_an_engine_serves_the_models_it_is_told_to_on_int8_weights(store: BaseModelStore) -> None:
    """``int8_models`` reaches the model's slot: the same request's logprobs move a little (the int8 products),
    not a lot; a model not named stays float32 bit for bit."""
    plain, int8 = Engine(store), Engine(store, int8_models=frozenset({TINY}))
    other = Engine(store, int8_models=frozenset({SMOLLM2}))
    try:
        request = greedy(plain, PROMPTS[2], n_logprobs=5, max_new_tokens=4)
        want, got, same = [await collect(e, request) for e in (plain, int8, other)]
        assert_same_generations([want], [same])
        assert [t.logprob for c in got for lp in c.logprobs for t in lp.top] != [
            t.logprob for c in want for lp in c.logprobs for t in lp.top
        ]
        first, want_first = got[0].logprobs[0], want[0].logprobs[0]
        assert [t.logprob for t in first.top] == pytest.approx([t.logprob for t in want_first.top], abs=0.1)
    finally:
        for engine in (plain, int8, other):
            await engine.close()
