"""CPU kernels for the engine's layers (numba): int8 matrix products of a few rows, and the rest of a layer fused.

A decode step multiplies a handful of rows by every weight of the model, so it is bound by streaming the weights
from memory. :func:`matmul_wt_int8` (the engine's int8 serving mode) reads each int8 weight row once, straight from
its ``[out, in]`` layout, and keeps one running dot product per input row in registers (LLVM vectorises the ``in``
loop into 8-wide FMAs), after asking the memory system for the whole weight row up front. Float32 products go to
oneDNN on packed weights (:class:`app.providers.local.engine._llama._Linear`): the same loops on float32 weights
took 42-56 ms for SmolLM2's products at 8 rows on the 2-core AMD EPYC we measured, oneDNN 22 ms.

Between the products, torch spends ~5 us of dispatch per small operation; :func:`rms_norm`, :func:`add_rms_norm`
(residual add and norm in one pass) and :func:`attend` (rotary embedding, KV-cache write and attention of every
row) each replace several of them. Together: a SmolLM2 decode step of 8 rows from 97 ms to 66 ms.

Each kernel is compiled by numba on first use, cached on disk where numba finds a writable place (else compiled in
every process).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

MAX_ROWS = 8
_LINE_BYTES = 64  # a cache line
_LINE_FLOATS = _LINE_BYTES // 4
# Reassociation lets LLVM vectorise the dot products; contraction fuses multiply and add. No finite-math
# assumptions: a NaN or inf in the activations still comes out as one.
_FASTMATH = {"reassoc", "contract"}


_Kernel = TypeVar("_Kernel", bound=Callable[..., None])


def _compiled(function: _Kernel) -> _Kernel:
    options: dict[str, Any] = {"fastmath": _FASTMATH, "nogil": True, "boundscheck": False}
    try:
        return cast(_Kernel, njit(cache=True, **options)(function))
    except RuntimeError:  # nowhere writable to cache (read-only install, no home): compile in every process
        return cast(_Kernel, njit(cache=False, **options)(function))


def _prefetch_typing(typingctx: Any, array: Any, row: Any, column: Any) -> Any:
    """``llvm.prefetch`` of ``array[row, column]`` into L2 (read, locality 2, data cache)."""
    signature = types.void(array, row, column)

    def codegen(context: Any, builder: Any, sig: Any, args: Any) -> Any:
        array_type = sig.args[0]
        view = context.make_array(array_type)(context, builder, args[0])
        pointer = cgutils.get_item_pointer(
            context, builder, array_type, view, [args[1], args[2]], wraparound=False, boundscheck=False
        )
        byte_pointer = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        function = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(ir.VoidType(), [byte_pointer, i32, i32, i32]), "llvm.prefetch.p0i8"
        )
        builder.call(function, [builder.bitcast(pointer, byte_pointer), i32(0), i32(2), i32(1)])
        return context.get_dummy_value()

    return signature, codegen


_prefetch = cast(Callable[[np.ndarray, int, int], None], intrinsic(_prefetch_typing))


# One kernel per row count (1, 2, 4, 8): the running sums must be named scalars for LLVM to keep them in
# registers, so each row count is written out. Fewer rows than a kernel's count are padded with zero rows. The
# weights are int8 (read as float32: exact for -127..127); float32 ones compile too.
@_compiled
def _rows1(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_BYTES // w.itemsize):
            _prefetch(w, j, c)
        s0 = np.float32(0)
        for k in range(k_size):
            s0 += x[0, k] * np.float32(w[j, k])
        out[0, j] = s0


@_compiled
def _rows2(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_BYTES // w.itemsize):
            _prefetch(w, j, c)
        s0 = s1 = np.float32(0)
        for k in range(k_size):
            wk = np.float32(w[j, k])
            s0 += x[0, k] * wk
            s1 += x[1, k] * wk
        out[0, j] = s0
        out[1, j] = s1


@_compiled
def _rows4(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_BYTES // w.itemsize):
            _prefetch(w, j, c)
        s0 = s1 = s2 = s3 = np.float32(0)
        for k in range(k_size):
            wk = np.float32(w[j, k])
            s0 += x[0, k] * wk
            s1 += x[1, k] * wk
            s2 += x[2, k] * wk
            s3 += x[3, k] * wk
        out[0, j] = s0
        out[1, j] = s1
        out[2, j] = s2
        out[3, j] = s3


@_compiled
def _rows8(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_BYTES // w.itemsize):
            _prefetch(w, j, c)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0)
        for k in range(k_size):
            wk = np.float32(w[j, k])
            s0 += x[0, k] * wk
            s1 += x[1, k] * wk
            s2 += x[2, k] * wk
            s3 += x[3, k] * wk
            s4 += x[4, k] * wk
            s5 += x[5, k] * wk
            s6 += x[6, k] * wk
            s7 += x[7, k] * wk
        out[0, j] = s0
        out[1, j] = s1
        out[2, j] = s2
        out[3, j] = s3
        out[4, j] = s4
        out[5, j] = s5
        out[6, j] = s6
        out[7, j] = s7


_KERNELS: tuple[tuple[int, Callable[[np.ndarray, np.ndarray, np.ndarray], None]], ...] = (
    (1, _rows1),
    (2, _rows2),
    (4, _rows4),
    (8, _rows8),
)


def _few_rows(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` through the kernel for ``x``'s row count (at most ``MAX_ROWS``), ``x`` padded with zero rows up
    to it; ``w`` float32 or int8."""
    rows = x.shape[0]
    size, kernel = next((size, kernel) for size, kernel in _KERNELS if size >= rows)
    if rows < size or not x.flags.c_contiguous:
        padded = np.zeros((size, x.shape[1]), dtype=np.float32)
        padded[:rows] = x
        x = padded
    out = np.empty((size, w.shape[0]), dtype=np.float32)
    kernel(x, w, out)
    return out[:rows]


def quantize_rows(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``w`` (float32 ``[out, in]``) as int8 and one float32 scale per row: ``w ~= q * scale[:, None]``, each row's
    largest magnitude mapped to 127 (symmetric, round to nearest)."""
    scale = (np.abs(w).max(axis=1) / 127).astype(np.float32)
    scale[scale == 0] = 1  # an all-zero row stays zeros
    q = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return np.ascontiguousarray(q), scale


def matmul_wt_int8(x: np.ndarray, q: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``x @ (q * scale[:, None]).T`` for float32 ``x`` ``[m, in]`` (at most ``MAX_ROWS`` rows) and
    :func:`quantize_rows`' int8 ``q`` and scales."""
    if x.shape[0] > MAX_ROWS:
        raise ValueError(f"int8 products take at most {MAX_ROWS} rows, not {x.shape[0]}")
    product = _few_rows(x, q)
    product *= scale
    return product


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel now rather than inside the first request."""
    w = np.zeros((2, _LINE_FLOATS), dtype=np.float32)
    q, scale = quantize_rows(w)
    for size, _ in _KERNELS:
        matmul_wt_int8(np.zeros((size, _LINE_FLOATS), dtype=np.float32), q, scale)
    h, out = np.ones((1, 4), dtype=np.float32), np.empty((1, 4), dtype=np.float32)
    rms_norm(h, h[0], 1e-5, out)
    add_rms_norm(h, out, h[0], 1e-5, out)
    # One row, one query head on one kv head of width 2: qkv = q | k | v.
    cache = np.zeros((1, 1, 1, 1, 2), dtype=np.float32)
    table = np.ones((1, 2), dtype=np.float32)
    head = np.empty((1, 2), dtype=np.float32)
    zero = np.zeros(1, np.int64)
    attend(np.ones((1, 6), dtype=np.float32), table, table, cache, cache.copy(), 0, zero, zero, 1, 1.0, head)


# -- the rest of a decode step: normalisation and attention, fused per layer ----------------------------------
@_compiled
def rms_norm(h: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray) -> None:  # pragma: no cover
    """``out = h / sqrt(mean(h**2) + eps) * weight`` row by row (Llama's RMSNorm in float32)."""
    rows, width = h.shape
    for r in range(rows):
        total = np.float32(0)
        for c in range(width):
            total += h[r, c] * h[r, c]
        scale = np.float32(1) / np.sqrt(total / np.float32(width) + np.float32(eps))
        for c in range(width):
            out[r, c] = h[r, c] * scale * weight[c]


@_compiled
def add_rms_norm(
    h: np.ndarray, delta: np.ndarray, weight: np.ndarray, eps: float, out: np.ndarray
) -> None:  # pragma: no cover
    """The residual add ``h += delta`` (in place), then ``out = rms_norm(h)``: one pass where torch makes five."""
    rows, width = h.shape
    for r in range(rows):
        total = np.float32(0)
        for c in range(width):
            value = h[r, c] + delta[r, c]
            h[r, c] = value
            total += value * value
        scale = np.float32(1) / np.sqrt(total / np.float32(width) + np.float32(eps))
        for c in range(width):
            out[r, c] = h[r, c] * scale * weight[c]


@_compiled
def attend(
    qkv: np.ndarray,
    cos: np.ndarray,
    sin: np.ndarray,
    keys: np.ndarray,
    values: np.ndarray,
    layer: int,
    rows: np.ndarray,
    positions: np.ndarray,
    heads: int,
    scale: float,
    out: np.ndarray,
) -> None:  # pragma: no cover
    """Grouped-query attention of tokens, one after another, rotary embedding included: a decode step of every
    row, or a prefill of short prompts.

    ``qkv`` ``[tokens, (heads + 2 * kv_heads) * d]`` is the fused projection; token i belongs to cache row
    ``rows[i]`` at position ``positions[i]``, where its rotated key and its value are written into the cache
    ``keys``/``values`` ``[layers, rows, kv_heads, columns, d]``. ``cos``/``sin`` ``[context, d]`` are the rotary
    tables, ``sin`` with its first half negated (so ``rotate_half(x) * sin == roll(x, d/2) * sin``). Each query
    attends to its row's columns ``0..positions[i]``, so a prompt's tokens, in order, attend causally (each
    written before the next reads it); ``out`` ``[tokens, heads * d]`` gets the attention output.
    """
    tokens = qkv.shape[0]
    kv_heads, d = keys.shape[2], keys.shape[4]
    half = d // 2
    per_kv = heads // kv_heads
    q_width = heads * d
    v_start = q_width + kv_heads * d
    queries = np.empty((per_kv, d), dtype=np.float32)
    weights = np.empty((per_kv, keys.shape[3]), dtype=np.float32)
    top = np.empty(per_kv, dtype=np.float32)
    total = np.empty(per_kv, dtype=np.float32)
    for i in range(tokens):
        r, p = rows[i], positions[i]
        for g in range(kv_heads):
            # This kv head's new key (rotated) and value go into the cache at column p.
            k_start = q_width + g * d
            for j in range(half):
                keys[layer, r, g, p, j] = qkv[i, k_start + j] * cos[p, j] + qkv[i, k_start + j + half] * sin[p, j]
            for j in range(half, d):
                keys[layer, r, g, p, j] = qkv[i, k_start + j] * cos[p, j] + qkv[i, k_start + j - half] * sin[p, j]
            for j in range(d):
                values[layer, r, g, p, j] = qkv[i, v_start + g * d + j]
            # Its query heads, rotated, each scored against every cached key of this row (one pass over them).
            for e in range(per_kv):
                q_start = (g * per_kv + e) * d
                for j in range(half):
                    queries[e, j] = qkv[i, q_start + j] * cos[p, j] + qkv[i, q_start + j + half] * sin[p, j]
                for j in range(half, d):
                    queries[e, j] = qkv[i, q_start + j] * cos[p, j] + qkv[i, q_start + j - half] * sin[p, j]
                top[e] = -np.inf
                total[e] = 0
            for c in range(p + 1):
                for e in range(per_kv):
                    score = np.float32(0)
                    for j in range(d):
                        score += queries[e, j] * keys[layer, r, g, c, j]
                    score *= np.float32(scale)
                    weights[e, c] = score
                    top[e] = max(top[e], score)
            for e in range(per_kv):
                for c in range(p + 1):
                    weight = np.exp(weights[e, c] - top[e])
                    weights[e, c] = weight
                    total[e] += weight
                inverse = np.float32(1) / total[e]
                q_start = (g * per_kv + e) * d
                for j in range(d):
                    out[i, q_start + j] = 0
                for c in range(p + 1):
                    weight = weights[e, c] * inverse
                    for j in range(d):
                        out[i, q_start + j] += weight * values[layer, r, g, c, j]
