"""Per-example token counts, computed in batches on worker threads while the main thread keeps parsing.

tiktoken's core releases the GIL, so counting a batch in a thread overlaps with parsing the next one. Counts
are kept as two ``array('I')`` (4 bytes per example), from which the distribution is taken at the end.
"""

from __future__ import annotations

import os
from array import array
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import numpy.typing as npt

from app.datasets.formats import Example
from app.datasets.schemas import TokenBin, TokenStats
from app.tokenizers import Tokenizer

BATCH_TEXTS = 8192
MAX_PENDING = 2
# Leading texts (system prompts) up to this long are counted once, for up to this many distinct ones.
LEADING_CHARS = 2048
LEADING_ENTRIES = 1000
# Ranges of the token-length histogram a report carries.
HISTOGRAM_BINS = 20

# Called for each example over ``limit`` once its count is known: (index in count order, line, total tokens).
OverCallback = Callable[[int, int, int], None]


class TokenTally:
    """Feed examples with :meth:`add`; per-example counts land, in order, in ``totals`` and ``targets``."""

    def __init__(self, tokenizer: Tokenizer, *, limit: int, on_over: OverCallback, threads: int | None = None) -> None:
        self._tokenizer = tokenizer
        self._limit = limit
        self._on_over = on_over
        workers = threads if threads is not None else min(4, os.cpu_count() or 1)
        self._pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="tokens")
        self._pending: list[tuple[_Batch, Future[tuple[_Counts, _Counts]]]] = []
        self._batch = _Batch()
        self._cache: dict[str, int] = {}
        self.totals = array("I")
        self.targets = array("I")

    def add(self, line: int, ex: Example) -> None:
        """Queue one example's texts for counting."""
        batch = self._batch
        cache = self._cache
        known = ex.overhead
        for role in ex.roles:
            count = cache.get(role)
            if count is None:
                count = cache[role] = self._tokenizer.count(role)
            known += count
        texts = ex.texts
        targets = ex.targets
        # An example's first text is, in chat, the system prompt, which most datasets repeat verbatim.
        if texts and len(texts[0]) <= LEADING_CHARS and 0 not in targets:
            count = cache.get(texts[0])
            if count is None and len(cache) < LEADING_ENTRIES:
                count = cache[texts[0]] = self._tokenizer.count(texts[0])
            if count is not None:
                known += count
                texts = texts[1:]
                targets = [index - 1 for index in targets]
        base = len(batch.texts)
        batch.texts += texts
        batch.lengths.append(len(texts))
        for index in targets:
            batch.target_index.append(base + index)
        batch.lines.append(line)
        batch.known.append(known)
        if len(batch.texts) >= BATCH_TEXTS:
            self._submit()

    def _submit(self) -> None:
        batch, self._batch = self._batch, _Batch()
        self._pending.append((batch, self._pool.submit(self._count, batch)))
        while len(self._pending) > MAX_PENDING:
            self._finish_oldest()

    def _count(self, batch: _Batch) -> tuple[_Counts, _Counts]:
        # Runs on a worker: the tokenizer releases the GIL, the numpy sums are short.
        counts = np.asarray(self._tokenizer.count_batch(batch.texts), dtype=np.float64)
        n = len(batch.lines)
        owners = np.repeat(np.arange(n), np.asarray(batch.lengths, dtype=np.int64))
        totals = np.bincount(owners, weights=counts, minlength=n) + np.asarray(batch.known, dtype=np.float64)
        target_index = np.asarray(batch.target_index, dtype=np.int64)
        targets = np.bincount(owners[target_index], weights=counts[target_index], minlength=n)
        return totals.astype(np.uint32), targets.astype(np.uint32)

    def _finish_oldest(self) -> None:
        batch, future = self._pending.pop(0)
        totals, targets = future.result()
        offset = len(self.totals)
        for slot in np.flatnonzero(totals > self._limit).tolist():
            self._on_over(offset + slot, batch.lines[slot], int(totals[slot]))
        self.totals.frombytes(totals.tobytes())
        self.targets.frombytes(targets.tobytes())

    def finish(self) -> None:
        """Count what is queued and wait for every batch."""
        try:
            if self._batch.lines:
                self._submit()
            while self._pending:
                self._finish_oldest()
        finally:
            self._pool.shutdown(wait=True, cancel_futures=True)

    def close(self) -> None:
        """Stop without counting (on error)."""
        self._pool.shutdown(wait=True, cancel_futures=True)


_Counts = npt.NDArray[np.uint32]


class _Batch:
    __slots__ = ("known", "lengths", "lines", "target_index", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.lengths: list[int] = []
        self.target_index: list[int] = []
        self.lines: list[int] = []
        self.known: list[int] = []


def summarize(counts: array[int]) -> TokenStats | None:
    """min/mean/p50/p95/max/total of per-example counts; None for no examples."""
    if not counts:
        return None
    values = np.frombuffer(counts, dtype=np.uint32)
    p50, p95 = np.percentile(values, [50, 95])
    return TokenStats(
        min=int(values.min()),
        mean=round(float(values.mean()), 2),
        p50=float(p50),
        p95=float(p95),
        max=int(values.max()),
        total=int(values.sum(dtype=np.uint64)),
        histogram=histogram(values),
    )


def histogram(values: npt.NDArray[np.uint32], bins: int = HISTOGRAM_BINS) -> list[TokenBin]:
    """Counts per equal-width range of whole numbers from min to max: at most ``bins`` ranges, none empty-width."""
    low, high = int(values.min()), int(values.max())
    width = -(-(high - low + 1) // bins)  # ceiling: every range holds at least one whole number
    counts = np.bincount((values.astype(np.int64) - low) // width)
    return [
        TokenBin(start=low + i * width, end=min(high, low + (i + 1) * width - 1), count=int(n))
        for i, n in enumerate(counts)
    ]


def count_example(tokenizer: Tokenizer, ex: Example) -> tuple[int, int]:
    """(total, target) tokens of one example, counted directly (prepare's per-example path)."""
    total = ex.overhead + sum(tokenizer.count(r) for r in ex.roles)
    target = 0
    for index, text in enumerate(ex.texts):
        count = tokenizer.count(text)
        total += count
        if index in ex.targets:
            target += count
    return total, target
