"""The local inference engine: continuous batching of many requests over one base model and many LoRA adapters.

All torch work runs on one background thread, so the event loop never blocks on a forward pass. Each iteration
the thread admits the requests that arrived since the last one (their prompts prefilled together, a prefix they
share run once, each sent its first token), then runs ONE batched decode step for every running sequence of each
base model, and hands each sequence's new token to its consumer's event loop. A consumer that stops iterating (a
client disconnect) marks its sequence cancelled; the thread drops it before the next step. How a model's batch is
computed lives in :mod:`._batch` (Llama-family models through the engine's own forward, :mod:`._llama`).

One sequence never fails another: each row's pick is guarded on its own, a prefill pass that raises is retried one
prompt at a time, and a decode step that raises is redone by prefilling each sequence alone again (prompt plus
what it generated so far); only a sequence that fails alone gets the error (:class:`GenerationFailed`).

Use::

    engine = Engine(store)
    ids = engine.encode_chat("smollm2-135m-instruct", [{"role": "user", "content": "Hi"}])
    async for chunk in engine.generate(GenerationRequest("smollm2-135m-instruct", ids, max_new_tokens=32)):
        ...
    await engine.close()
"""

from __future__ import annotations

import asyncio
import logging
import queue
import random
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from app.providers.local.base_models import BaseModelStore
from app.providers.local.engine._batch import Slot, context_length, load_slot
from app.providers.local.engine._decode import RowLogprobs, TextState, TopLogprobs, adjusted, pick_token
from app.providers.local.engine._types import (
    FinishReason,
    GenerationChunk,
    GenerationFailed,
    GenerationRequest,
    TokenLogprob,
    Traffic,
    Usage,
)
from app.providers.local.hf import LOADING, default_device, render_prompt

__all__ = ["Engine", "EngineClosed", "GenerationChunk", "GenerationFailed", "GenerationRequest"]

log = logging.getLogger(__name__)

PREFILL_TOKENS = 512
ADMIT_WINDOW = 0.025  # seconds: a burst of HTTP requests arrives within a few ms (Engine._take_inbox)
ARRIVAL_CHECK = 0.001  # seconds: while waiting for a burst, how often to ask whether the rest is on its way


class EngineClosed(RuntimeError):
    """The engine was closed before or while this request ran."""


@dataclass(eq=False)
class _Sequence:
    """A request in flight: worker-thread state plus the consumer's queue."""

    request: GenerationRequest
    loop: asyncio.AbstractEventLoop
    out: asyncio.Queue[GenerationChunk | BaseException]
    cancelled: threading.Event = field(default_factory=threading.Event)
    alone: bool = False  # no other call was on its way when it was submitted: it need not wait for a burst
    # Set by the worker thread at admission:
    adapter: str = ""
    text: TextState | None = None
    generator: torch.Generator | None = None
    last_token: int = 0
    counts: Counter[int] = field(default_factory=Counter)  # generated tokens, for the penalties

    def context(self) -> list[int]:
        """Every token so far: the prompt and what was generated (prefilled again when a batch is rebuilt)."""
        return [*self.request.prompt_ids, *(self.text.ids if self.text is not None else ())]

    def send(self, item: GenerationChunk | BaseException) -> None:
        try:
            self.loop.call_soon_threadsafe(self.out.put_nowait, item)
        except RuntimeError:  # the consumer's loop is closed: nobody is listening any more
            self.cancelled.set()


@dataclass(frozen=True, slots=True)
class _Warm:
    """Load a base model (and an adapter) ahead of its first request: see :meth:`Engine.warm`."""

    model: str
    adapter: Path | None


class Engine:
    """Serves :class:`GenerationRequest` streams from local base models plus LoRA adapter folders.

    ``max_adapters`` bounds the adapters loaded per base model (least recently used ones are unloaded);
    ``max_batch_size`` bounds the running sequences per base model (later requests wait their turn);
    ``admit_window`` is how long a request waking an idle engine waits at most for the rest of its burst;
    ``traffic``, when given, is the server's word on the calls on their way: a request that wakes an idle engine
    while none is does not wait (a lone call would otherwise pay the whole window), unless the last requests
    admitted came several together; and the wait ends once none is and at least as many requests wait as the last
    pass admitted. The base models named in ``int8_models`` are served on int8 weights (CPU, Llama family).
    """

    def __init__(
        self,
        store: BaseModelStore,
        *,
        max_adapters: int = 8,
        max_batch_size: int = 32,
        admit_window: float = ADMIT_WINDOW,
        traffic: Traffic | None = None,
        dtype: torch.dtype = torch.float32,
        device: torch.device | None = None,
        int8_models: frozenset[str] = frozenset(),
    ) -> None:
        if max_adapters < 1 or max_batch_size < 1:
            raise ValueError("max_adapters and max_batch_size must be at least 1")
        self._store = store
        self._max_adapters = max_adapters
        self._max_batch_size = max_batch_size
        self._admit_window = admit_window
        self._traffic = traffic
        self._arriving = 0  # generate() calls between their yield and their submission (written on the event loop)
        self._dtype = dtype
        self._device = device or default_device()
        self._int8_models = int8_models
        self._inbox: queue.SimpleQueue[_Sequence | _Warm | None] = queue.SimpleQueue()
        self._tokenizers: dict[str, tuple[Any, threading.Lock]] = {}
        self._limits: dict[str, tuple[int, int]] = {}  # model -> (context length, vocabulary size)
        self._slots: dict[str, Slot] = {}  # worker thread only
        self._running: dict[str, list[_Sequence]] = {}  # worker thread only
        self._waiting: list[_Sequence] = []  # worker thread only
        self._last_admitted = 0  # requests admitted together the last time any were (worker thread only)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._start_lock = threading.Lock()
        # Counters, written by the worker thread only (for tests and metrics):
        self.prefill_passes = 0  # forward passes over new prompts (several prompts per pass when batched)
        self.decode_steps = 0  # batched decode steps, one token for every running sequence of a base model

    # -- encoding (callers apply templates here, then build a request) -----------------------------------------
    def _tokenizer(self, model: str) -> tuple[Any, threading.Lock]:
        if model not in self._tokenizers and (slot := self._slots.get(model)) is not None:
            self._tokenizers[model] = (slot.tokenizer, slot.tokenizer_lock)  # loaded with the weights already
        if model not in self._tokenizers:
            self._tokenizers[model] = (self._store.tokenizer(model), threading.Lock())
        return self._tokenizers[model]

    def encode_text(self, model: str, text: str) -> tuple[int, ...]:
        """Plain text as prompt tokens (no special tokens added: the text is the whole prompt)."""
        tokenizer, lock = self._tokenizer(model)
        with lock:
            return tuple(tokenizer(text, add_special_tokens=False)["input_ids"])

    def limits(self, model: str) -> tuple[int, int]:
        """``model``'s context length and vocabulary size (its logits' width), from its config: no weights load."""
        if model not in self._limits:
            folder = self._store.resolve(model)
            with LOADING:
                from transformers import AutoConfig

                config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
            self._limits[model] = (context_length(config), int(config.vocab_size))
        return self._limits[model]

    def encode_chat(self, model: str, messages: list[dict[str, Any]]) -> tuple[int, ...]:
        """A conversation rendered with the model's chat template, ending where the assistant's reply starts."""
        tokenizer, lock = self._tokenizer(model)
        with lock:
            text = render_prompt(tokenizer, messages)
        return self.encode_text(model, text)

    # -- the async API ------------------------------------------------------------------------------------------
    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationChunk]:
        """Stream the completion of ``request``, one chunk per generated token; the last carries finish + usage."""
        if self._closed:
            raise EngineClosed("the engine is closed")
        self._ensure_started()
        seq = _Sequence(request, asyncio.get_running_loop(), asyncio.Queue())
        if self._traffic is None:
            self._inbox.put(seq)
        else:
            # One turn of the event loop first: the calls that arrived with this one (a burst, or the other prompts
            # of the same call) get to the gateway, and to this line, before it decides it is alone. Counted as
            # arriving until it is in the inbox: the worker does not take a call for whole while it is not.
            self._arriving += 1
            try:
                await asyncio.sleep(0)
                seq.alone = self._arriving == 1 and self._traffic.routing() == 0
                self._inbox.put(seq)
            finally:
                self._arriving -= 1
        try:
            while True:
                item = await seq.out.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            # Also reached when the consumer stops early (aclose, task cancelled): the worker drops the row.
            seq.cancelled.set()

    def warm(self, model: str, adapter: Path | None = None) -> None:
        """Load ``model``'s weights and tokenizer (and ``adapter``) on the engine's thread now, without waiting, so
        the first request for it does not pay for the load (seconds on a CPU). The embedded worker calls it as a
        local job starts (the base model) and succeeds (its adapter). A load that fails is only logged: a request
        for the model reports the error."""
        if self._closed:
            return
        self._ensure_started()
        self._inbox.put(_Warm(model, adapter))

    async def close(self) -> None:
        """Stop the worker thread; requests still running end with :class:`EngineClosed`."""
        self._closed = True
        thread = self._thread
        if thread is not None:
            self._inbox.put(None)
            await asyncio.to_thread(thread.join)

    @property
    def max_adapters(self) -> int:
        return self._max_adapters

    @property
    def max_batch_size(self) -> int:
        return self._max_batch_size

    @property
    def int8_models(self) -> frozenset[str]:
        return self._int8_models

    def loaded_adapters(self, model: str) -> list[Path]:
        """The adapter folders loaded for ``model``, least recently used first (a snapshot, for tests/metrics)."""
        slot = self._slots.get(model)
        return list(slot.adapters) if slot is not None else []

    def running(self) -> int:
        """How many sequences are in a batch right now (a snapshot)."""
        return sum(len(seqs) for seqs in list(self._running.values()))

    def active(self) -> int:
        """Sequences the worker holds, running or waiting for a place in a batch (a snapshot, for metrics)."""
        return self.running() + len(self._waiting)

    def _ensure_started(self) -> None:
        with self._start_lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="ftgw-engine", daemon=True)
                self._thread.start()

    # -- the worker thread --------------------------------------------------------------------------------------
    def _work(self) -> None:
        from threadpoolctl import threadpool_limits  # type: ignore[import-untyped]

        try:
            # numpy's BLAS runs the Llama path's products (engine_llama) on this thread only: its own worker threads
            # would spin on the cores torch's threads use (measured: 2 + 2 threads on 2 cores, 10x slower).
            with torch.inference_mode(), threadpool_limits(limits=1, user_api="blas"):
                while self._take_inbox():
                    self._admit()
                    for name in list(self._running):
                        try:
                            self._decode(name)
                        except Exception as error:  # e.g. out of memory: fail this batch, keep serving
                            self._fail_batch(name, error)
        except BaseException as error:  # a bug in here must not leave consumers waiting forever
            self._closed = True
            self._fail_all(error)
            raise
        self._fail_all(EngineClosed("the engine is closed"))

    def _take_inbox(self) -> bool:
        """Move new requests to the waiting list (blocking while idle); False once the engine is closing.

        A request that wakes an idle engine waits up to ``admit_window`` for others of the same burst (requests
        parsed one after another by the event loop, milliseconds apart), so they are prefilled in one pass
        instead of the first alone and the rest after it; the wait ends early once the burst is whole
        (:meth:`_burst_whole`). A busy engine takes what has arrived, without waiting.
        """
        idle = not self._waiting and not any(self._running.values())
        deadline: float | None = None
        while True:
            try:
                if idle:
                    item = self._inbox.get()
                elif deadline is not None:
                    item = self._inbox.get(timeout=min(max(0.0, deadline - time.monotonic()), ARRIVAL_CHECK))
                else:
                    item = self._inbox.get_nowait()
            except queue.Empty:
                if deadline is None or time.monotonic() >= deadline or self._burst_whole():
                    return True
                continue
            if item is None:
                return False
            if isinstance(item, _Warm):
                self._warm(item)
                continue
            self._waiting.append(item)
            if idle:
                # Calls tend to come back as they left: after a pass of several, a call that looks alone is
                # likely the first of the next round (clients sending again as their answers arrive).
                lone = item.alone and self._last_admitted <= 1
                idle, deadline = False, time.monotonic() + (0.0 if lone else self._admit_window)
            if deadline is not None and self._burst_whole():
                return True

    def _burst_whole(self) -> bool:
        """Whether the burst is whole: no call is on its way (the server is routing none, none is between
        ``generate`` and the inbox, the inbox is drained) and at least as many requests wait as the last pass
        admitted (that pass's clients may not have sent theirs yet: the server cannot know of them). Asked while
        the engine waits for a burst. Without the server's word, never."""
        # In this order: a request is in the inbox before it stops counting as arriving.
        if self._traffic is None or self._arriving or not self._inbox.empty():
            return False
        return len(self._waiting) >= self._last_admitted and self._traffic.routing() == 0

    def _admit(self) -> None:
        """Prefill the waiting requests that fit, several prompts per forward pass (per base model)."""
        waiting, self._waiting = self._waiting, []
        admitted: dict[str, list[_Sequence]] = {}
        for seq in waiting:
            if seq.cancelled.is_set():
                continue
            try:
                slot = self._slot(seq.request.model)
                running = self._running.setdefault(seq.request.model, [])
                batch = admitted.setdefault(seq.request.model, [])
                if len(running) + len(batch) >= self._max_batch_size:
                    self._waiting.append(seq)
                    continue
                self._start(slot, seq, {s.adapter for s in running} | {s.adapter for s in batch})
                batch.append(seq)
            except Exception as error:  # a bad request (unknown model, broken adapter) fails alone
                seq.send(error)
        if admitted:
            self._last_admitted = sum(len(batch) for batch in admitted.values())
        for model, batch in admitted.items():
            for chunk in _prefill_chunks(batch):
                try:
                    self._prefill(self._slots[model], chunk, self._running[model])
                except Exception as error:  # joining the batch failed (a bug): fail these, keep serving
                    for seq in chunk:
                        seq.send(_failed(error))

    def _warm(self, item: _Warm) -> None:
        started = time.monotonic()
        try:
            slot = self._slot(item.model)
            in_use = {seq.adapter for seq in self._running.get(item.model, [])}
            slot.adapter_name(item.adapter, in_use)
        except Exception:
            log.warning("warming %s (adapter %s) failed", item.model, item.adapter, exc_info=True)
            return
        log.info("warmed %s (adapter %s) in %.1f s", item.model, item.adapter, time.monotonic() - started)

    def _slot(self, model: str) -> Slot:
        if model not in self._slots:
            self._slots[model] = load_slot(
                self._store.resolve(model),
                dtype=self._dtype,
                device=self._device,
                max_adapters=self._max_adapters,
                int8=model in self._int8_models,
            )
        return self._slots[model]

    def _start(self, slot: Slot, seq: _Sequence, in_use: set[str]) -> None:
        """Check ``seq``'s prompt and set up its adapter, text state and sampler."""
        request = seq.request
        if len(request.prompt_ids) >= slot.context_length:
            raise ValueError(
                f"the prompt has {len(request.prompt_ids)} tokens; {request.model} takes at most "
                f"{slot.context_length - 1} before the first generated token"
            )
        seq.adapter = slot.adapter_name(request.adapter, in_use)
        seq.text = TextState(slot.tokenizer, slot.tokenizer_lock, request.stop)
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        seq.generator = torch.Generator().manual_seed(seed % 2**64)  # any int: torch takes 64 bits

    def _prefill(self, slot: Slot, seqs: list[_Sequence], running: list[_Sequence]) -> None:
        """Prefill ``seqs`` in one pass, send each its next token and add those that go on to ``running``.

        If the pass raises, each sequence is prefilled alone: only one that fails alone gets the error.
        """
        try:
            logits = slot.prefill([s.context() for s in seqs], [s.adapter for s in seqs]).cpu()
        except Exception as error:  # e.g. out of memory, or one broken adapter among the pass's rows
            if len(seqs) == 1:
                seqs[0].send(_failed(error))
                return
            for seq in seqs:
                self._prefill(slot, [seq], running)
            return
        self.prefill_passes += 1
        keep = self._accept_all(slot, seqs, logits)
        slot.join(keep)
        running.extend(seqs[i] for i in keep)

    def _decode(self, model: str) -> None:
        running = self._running[model]
        slot = self._slots[model]
        live = [i for i, s in enumerate(running) if not s.cancelled.is_set()]
        if len(live) < len(running):
            slot.keep_rows(live)
            running[:] = [running[i] for i in live]
        if not running:
            slot.evict(set())
            return
        assert all(s.text is not None for s in running)
        try:
            logits = slot.step(
                [s.last_token for s in running],
                [len(s.request.prompt_ids) + len(s.text.ids) - 1 for s in running if s.text is not None],
                [s.adapter for s in running],
            ).cpu()  # one device-to-host copy per step, not one per row
        except Exception:  # e.g. out of memory, or one row's broken adapter: find who fails alone
            self._rebuild(model)
            return
        self.decode_steps += 1
        keep = self._accept_all(slot, running, logits)
        if len(keep) < len(running):
            slot.keep_rows(keep)
            running[:] = [running[i] for i in keep]

    def _rebuild(self, model: str) -> None:
        """After a failed decode step: the batch's cache is in an unknown state, so empty it and prefill every
        sequence again alone, on all it has so far; that yields the next token the step would have."""
        slot, seqs = self._slots[model], self._running[model]
        slot.keep_rows([])
        self._running[model] = []
        for seq in seqs:
            if not seq.cancelled.is_set():
                self._prefill(slot, [seq], self._running[model])

    def _accept_all(self, slot: Slot, seqs: list[_Sequence], logits: torch.Tensor) -> list[int]:
        """Pick and send each sequence's next token from its row of ``logits``; the indices of those that go on.

        The greedy picks, and the logprobs of the rows that asked for them, are computed for all rows at once, and
        the chunks reach their consumers' event loops together, once every row is done: per row, the event loop
        woke up while the rest were still being picked and the two threads took turns holding the GIL."""
        best = logits.argmax(dim=-1).tolist()  # every row's greedy pick in one call
        distributions = TopLogprobs(logits, [s.request.n_logprobs for s in seqs])
        outbox: list[tuple[_Sequence, GenerationChunk | BaseException]] = []
        keep = []
        for i, seq in enumerate(seqs):
            try:
                if self._accept(slot, seq, logits[i], best[i], distributions.row(i), outbox):
                    keep.append(i)
            except Exception as error:  # this sequence alone fails
                outbox.append((seq, _failed(error)))
        _deliver(outbox)
        return keep

    def _accept(
        self,
        slot: Slot,
        seq: _Sequence,
        logits: torch.Tensor,
        greedy: int,
        distribution: RowLogprobs | None,
        outbox: list[tuple[_Sequence, GenerationChunk | BaseException]],
    ) -> bool:
        """Pick (``greedy``, the batch's argmax of this row, when nothing adjusts it) ``seq``'s next token and put
        its chunk in ``outbox``; whether it goes on running."""
        request, text, generator = seq.request, seq.text, seq.generator
        assert text is not None and generator is not None
        scores = adjusted(logits, request, seq.counts)
        if request.greedy:
            token = greedy if scores is logits else int(scores.argmax())
        else:
            token = pick_token(scores, temperature=request.temperature, top_p=request.top_p, generator=generator)
        if request.frequency_penalty or request.presence_penalty:
            seq.counts[token] += 1
        logprobs: tuple[TokenLogprob, ...] = ()
        if distribution is not None:
            logprobs = (distribution.of(token, lambda i: text.decode([i])),)
        finish: FinishReason | None = None
        if token in slot.eos_ids:
            text.ids.append(token)
            piece, finish = text.flush(), "stop"
        else:
            piece, stopped = text.push(token)
            total = len(request.prompt_ids) + len(text.ids)
            if stopped:
                finish = "stop"
            elif len(text.ids) >= request.max_new_tokens or total >= slot.context_length:
                piece, finish = piece + text.flush(), "length"
        usage = Usage(len(request.prompt_ids), len(text.ids)) if finish else None
        outbox.append((seq, GenerationChunk(piece, (token,), logprobs, finish, usage)))
        seq.last_token = token
        return finish is None and not seq.cancelled.is_set()

    def _fail_batch(self, model: str, error: Exception) -> None:
        for seq in self._running.pop(model, []):
            seq.send(_failed(error))
        self._slots[model].keep_rows([])

    def _fail_all(self, error: BaseException) -> None:
        for seq in [*self._waiting, *(s for seqs in self._running.values() for s in seqs)]:
            seq.send(error if isinstance(error, Exception) else EngineClosed(str(error)))
        while True:
            try:
                item = self._inbox.get_nowait()
            except queue.Empty:
                break
            if isinstance(item, _Sequence):
                item.send(EngineClosed("the engine is closed"))
        self._waiting.clear()
        self._running.clear()


def _failed(error: Exception) -> GenerationFailed:
    failure = GenerationFailed(f"the generation failed: {type(error).__name__}: {error}")
    failure.__cause__ = error
    return failure


def _prefill_chunks(seqs: list[_Sequence]) -> list[list[_Sequence]]:
    """``seqs`` in runs of at most PREFILL_TOKENS prompt tokens (a longer prompt alone): one forward pass each.

    Several prompts per pass multiply larger matrices, nearer the CPU's peak (SmolLM2's projections on one thread:
    2.4 ms per token at 296 rows, 3.5 at 37), and bounding the pass bounds how long running sequences wait.
    """
    chunks: list[list[_Sequence]] = []
    tokens = PREFILL_TOKENS
    for seq in seqs:
        n = len(seq.request.prompt_ids)
        if tokens + n > PREFILL_TOKENS:
            chunks.append([])
            tokens = 0
        chunks[-1].append(seq)
        tokens += n
    return chunks


def _deliver(outbox: list[tuple[_Sequence, GenerationChunk | BaseException]]) -> None:
    """Hand each sequence its item, waking each consumers' event loop once for all of its items."""
    by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Sequence, GenerationChunk | BaseException]]] = {}
    for seq, item in outbox:
        by_loop.setdefault(seq.loop, []).append((seq, item))
    for loop, items in by_loop.items():
        try:
            loop.call_soon_threadsafe(_put_each, items)
        except RuntimeError:  # the consumers' loop is closed: nobody is listening any more
            for seq, _ in items:
                seq.cancelled.set()


def _put_each(items: list[tuple[_Sequence, GenerationChunk | BaseException]]) -> None:
    for seq, item in items:
        seq.out.put_nowait(item)
