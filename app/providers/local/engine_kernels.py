"""Matrix products for decode steps of a few rows on CPU: ``out = x @ W.T`` for ``x`` of 1-8 rows (float32).

A decode step multiplies a handful of rows by every weight of the model, so it is bound by streaming the weights
from memory. BLAS libraries pack the weights into panels on every call and reach about a third of the core's peak
at 8 rows (OpenBLAS on the 2-core AMD EPYC we measured: 65-89 ms for SmolLM2-135M's 132M weights, 78-96 ms at 2-3
rows, against 35 ms at 1 row). These kernels read each weight row once, straight from its ``[out, in]`` layout,
and keep one running dot product per input row in registers (LLVM vectorises the ``in`` loop into 8-wide FMAs),
after asking the memory system for the whole weight row up front: 31 ms at 1 row, 53 ms at 8 on the same machine.

Each kernel is compiled by numba on first use (cached on disk where the package folder is writable). Rows beyond
8 go to BLAS, whose packing pays off at larger sizes (prefill).
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
_LINE_FLOATS = 16  # float32 values in a 64-byte cache line
# Reassociation lets LLVM vectorise the dot products; contraction fuses multiply and add. No finite-math
# assumptions: a NaN or inf in the activations still comes out as one.
_FASTMATH = {"reassoc", "contract"}


_Kernel = TypeVar("_Kernel", bound=Callable[..., None])


def _compiled(function: _Kernel) -> _Kernel:
    return cast(_Kernel, njit(fastmath=_FASTMATH, nogil=True, boundscheck=False, cache=True)(function))


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
# registers, so each row count is written out. Fewer rows than a kernel's count are padded with zero rows.
@_compiled
def _rows1(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_FLOATS):
            _prefetch(w, j, c)
        s0 = np.float32(0)
        for k in range(k_size):
            s0 += x[0, k] * w[j, k]
        out[0, j] = s0


@_compiled
def _rows2(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_FLOATS):
            _prefetch(w, j, c)
        s0 = s1 = np.float32(0)
        for k in range(k_size):
            wk = w[j, k]
            s0 += x[0, k] * wk
            s1 += x[1, k] * wk
        out[0, j] = s0
        out[1, j] = s1


@_compiled
def _rows4(x: np.ndarray, w: np.ndarray, out: np.ndarray) -> None:  # pragma: no cover - compiled
    n, k_size = w.shape
    for j in range(n):
        for c in range(0, k_size, _LINE_FLOATS):
            _prefetch(w, j, c)
        s0 = s1 = s2 = s3 = np.float32(0)
        for k in range(k_size):
            wk = w[j, k]
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
        for c in range(0, k_size, _LINE_FLOATS):
            _prefetch(w, j, c)
        s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = np.float32(0)
        for k in range(k_size):
            wk = w[j, k]
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


def matmul_wt(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``x @ w.T`` for float32 ``x`` ``[m, in]`` and C-contiguous float32 ``w`` ``[out, in]``."""
    rows = x.shape[0]
    if rows > MAX_ROWS:
        product: np.ndarray = np.matmul(x, w.T)
        return product
    size, kernel = next((size, kernel) for size, kernel in _KERNELS if size >= rows)
    if rows < size or not x.flags.c_contiguous:
        padded = np.zeros((size, x.shape[1]), dtype=np.float32)
        padded[:rows] = x
        x = padded
    out = np.empty((size, w.shape[0]), dtype=np.float32)
    kernel(x, w, out)
    return out[:rows]


def warm_up() -> None:
    """Compile (or load from the disk cache) every kernel now rather than inside the first request."""
    w = np.zeros((2, _LINE_FLOATS), dtype=np.float32)
    for size, _ in _KERNELS:
        matmul_wt(np.zeros((size, _LINE_FLOATS), dtype=np.float32), w)
