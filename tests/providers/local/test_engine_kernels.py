"""The engine's matrix products (float32 on oneDNN's packed weights, int8 through the numba kernels) and its fused
kernels against numpy, at every row count and awkward shapes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from app.providers.local.engine import _llama
from app.providers.local.engine._kernels import (
    MAX_ROWS,
    add_rms_norm,
    matmul_wt_int8,
    quantize_rows,
    rms_norm,
)
from app.providers.local.engine._llama import INT8_ROWS, _Linear


@pytest.mark.parametrize("rows", [*range(1, 11), 37, 300])
@pytest.mark.parametrize(("out", "inner"), [(7, 5), (33, 16), (96, 576), (1, 1537)])
def test_float32_products_match_numpy(rows: int, out: int, inner: int) -> None:
    rng = np.random.default_rng(rows * 1000 + out + inner)
    x = rng.standard_normal((rows, inner), dtype=np.float32)
    w = rng.standard_normal((out, inner), dtype=np.float32)
    linear = _Linear(torch.from_numpy(w[: out // 2]), torch.from_numpy(w[out // 2 :]))  # fused along out, as q|k|v
    got = linear.np(x)
    assert got.shape == (rows, out)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, x.astype(np.float64) @ w.T.astype(np.float64), rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(linear(torch.from_numpy(x)).numpy(), got)


def test_a_row_does_not_depend_on_the_rows_beside_it() -> None:
    # The engine batches whatever requests are running: a request's numbers must not change with the company.
    rng = np.random.default_rng(3)
    x = rng.standard_normal((300, 576), dtype=np.float32)
    linear = _Linear(torch.from_numpy(rng.standard_normal((960, 576), dtype=np.float32)))
    alone = linear.np(x[:1])[0]
    for rows in [*range(2, 2 * MAX_ROWS + 2), 33, 128, 300]:
        np.testing.assert_allclose(linear.np(x[:rows])[0], alone, rtol=1e-5, atol=1e-5)


def test_non_contiguous_rows_and_non_finite_values() -> None:
    rng = np.random.default_rng(4)
    x = rng.standard_normal((6, 48), dtype=np.float32)[::2]  # every other row: a strided view
    w = rng.standard_normal((10, 48), dtype=np.float32)
    linear = _Linear(torch.from_numpy(w))
    np.testing.assert_allclose(linear.np(x), x @ w.T, rtol=1e-5, atol=1e-5)
    x = x.copy()
    x[1, 3] = np.nan
    x[2, 0] = np.inf
    got = linear.np(x)
    assert np.isnan(got[1]).all()  # NaN spreads over its row and stays there: no finite-math shortcuts
    assert np.isfinite(got[0]).all()
    assert not np.isfinite(got[2]).any()


def test_without_onednn_the_products_are_torchs_linear(monkeypatch: pytest.MonkeyPatch) -> None:
    # A torch build or CPU without oneDNN's packed product: the same numbers through torch's linear.
    rng = np.random.default_rng(8)
    w = torch.from_numpy(rng.standard_normal((40, 24), dtype=np.float32))
    x = rng.standard_normal((5, 24), dtype=np.float32)
    packed = _Linear(w)
    assert _llama.onednn_packs() and packed._packed is not None and packed._w is None  # this machine packs
    monkeypatch.setattr(_llama, "onednn_packs", lambda: False)
    plain = _Linear(w)
    assert plain._packed is None
    np.testing.assert_allclose(plain.np(x), packed.np(x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(plain.np(x), x @ w.numpy().T, rtol=1e-5, atol=1e-5)


def test_int8_weights_serve_small_products_and_float32_the_rest() -> None:
    rng = np.random.default_rng(7)
    w = rng.standard_normal((64, 96), dtype=np.float32)
    linear = _Linear(torch.from_numpy(w), int8=True)
    q, scale = quantize_rows(w)
    dequantized = q.astype(np.float64) * scale[:, None]
    for rows in (1, INT8_ROWS, INT8_ROWS + 1, 40):
        x = rng.standard_normal((rows, 96), dtype=np.float32)
        got = linear.np(x)
        on_int8 = np.abs(got - x.astype(np.float64) @ dequantized.T).max()
        on_float32 = np.abs(got - x.astype(np.float64) @ w.T.astype(np.float64)).max()
        # The int8 product is off the float32 one by far more than float32 rounding, so each tells which ran.
        assert (on_int8 < 1e-4) == (rows <= INT8_ROWS), (rows, on_int8, on_float32)
        assert (on_float32 < 1e-4) == (rows > INT8_ROWS), (rows, on_int8, on_float32)
    with pytest.raises(ValueError, match="on CPU from float32"):
        _Linear(torch.zeros((4, 4), dtype=torch.float64), int8=True)


@pytest.mark.parametrize("rows", range(1, MAX_ROWS + 1))
@pytest.mark.parametrize(("out", "inner"), [(7, 5), (33, 16), (96, 576), (1, 1537)])
def test_int8_products_match_numpy_on_the_dequantized_weights(rows: int, out: int, inner: int) -> None:
    rng = np.random.default_rng(rows * 1000 + out + inner)
    x = rng.standard_normal((rows, inner), dtype=np.float32)
    w = rng.standard_normal((out, inner), dtype=np.float32) * rng.uniform(0.01, 3, (out, 1)).astype(np.float32)
    q, scale = quantize_rows(w)
    assert q.dtype == np.int8 and scale.dtype == np.float32 and q.shape == w.shape and scale.shape == (out,)
    dequantized = q.astype(np.float64) * scale[:, None]
    # Each weight within half a step of its row's scale, each row's largest magnitude on +-127.
    assert (np.abs(dequantized - w) <= scale[:, None] * 0.5 + 1e-7).all()
    assert (np.abs(q).max(axis=1) == 127).all()
    got = matmul_wt_int8(x, q, scale)
    assert got.shape == (rows, out) and got.dtype == np.float32
    np.testing.assert_allclose(got, x.astype(np.float64) @ dequantized.T, rtol=1e-4, atol=1e-4)
    # And off the float32 product by no more than rounding each weight can explain: sum |x| * scale / 2.
    exact = x.astype(np.float64) @ w.T.astype(np.float64)
    bound = np.abs(x).astype(np.float64).sum(axis=1, keepdims=True) * scale[None, :] * 0.5
    assert (np.abs(got - exact) <= bound + 1e-3).all()


def test_int8_products_of_strided_rows_zero_weights_and_too_many_rows() -> None:
    rng = np.random.default_rng(6)
    x = rng.standard_normal((6, 48), dtype=np.float32)[::2]
    w = rng.standard_normal((10, 48), dtype=np.float32)
    w[4] = 0  # an all-zero row stays zeros, no division by zero
    q, scale = quantize_rows(w)
    assert not q[4].any() and np.isfinite(scale).all()
    got = matmul_wt_int8(x, q, scale)
    np.testing.assert_allclose(got, x @ (q.astype(np.float32) * scale[:, None]).T, rtol=1e-5, atol=1e-5)
    assert not got[:, 4].any()
    with pytest.raises(ValueError, match="at most 8 rows"):
        matmul_wt_int8(np.zeros((MAX_ROWS + 1, 48), dtype=np.float32), q, scale)


def test_norms_match_llama_rms_norm() -> None:
    rng = np.random.default_rng(5)
    h = rng.standard_normal((3, 40), dtype=np.float32)
    delta = rng.standard_normal((3, 40), dtype=np.float32)
    weight = rng.standard_normal(40, dtype=np.float32)

    def reference(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.float64)
        return v / np.sqrt((v * v).mean(axis=-1, keepdims=True) + 1e-5) * weight

    out = np.empty_like(h)
    rms_norm(h, weight, 1e-5, out)
    np.testing.assert_allclose(out, reference(h), rtol=1e-5, atol=1e-5)
    residual = h.copy()
    add_rms_norm(residual, delta, weight, 1e-5, out)
    np.testing.assert_allclose(residual, h + delta)  # the residual stream is updated in place
    np.testing.assert_allclose(out, reference(h + delta), rtol=1e-5, atol=1e-5)


def test_kernels_compile_where_no_cache_can_be_written() -> None:
    # A read-only install run by a user without a home: numba cannot cache, the engine must still start.
    env = {
        **os.environ,
        "NUMBA_CACHE_LOCATOR_CLASSES": "UserProvidedCacheLocator",  # only NUMBA_CACHE_DIR, and that is not writable
        "NUMBA_CACHE_DIR": "/proc/ftgw-not-writable",
    }
    code = (
        "import numpy as np\n"
        "from app.providers.local.engine import _kernels as k\n"
        "k.warm_up()\n"
        "print(k.matmul_wt_int8(np.ones((3, 4), np.float32), *k.quantize_rows(np.ones((2, 4), np.float32))).tolist())\n"
    )
    repo = Path(__file__).resolve().parents[3]
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str([[4.0, 4.0]] * 3)


def test_a_groups_fused_lora_is_each_projections_own_and_a_misfit_is_refused() -> None:
    from app.providers.local.engine._lora import LoraModule, UnsupportedAdapter, fuse

    rng = torch.Generator().manual_seed(9)
    hidden, widths = 12, {"q_proj": 12, "k_proj": 4, "v_proj": 4}
    # q and v adapted (ranks 3 and 5), k not: its columns of the fused output get nothing.
    weights = {
        (0, "q_proj"): LoraModule(torch.randn(hidden, 3, generator=rng), torch.randn(3, 12, generator=rng), 0.5),
        (0, "v_proj"): LoraModule(torch.randn(hidden, 5, generator=rng), torch.randn(5, 4, generator=rng), 2.0),
    }
    groups = {"qkv": tuple(widths.items())}
    fused = fuse(weights, groups, layers=2)
    assert set(fused) == {(0, "qkv")}  # layer 1 has no LoRA at all
    x = torch.randn(7, hidden, generator=rng)
    got = torch.mm(torch.mm(x, fused[0, "qkv"].a), fused[0, "qkv"].b)
    q, v = weights[0, "q_proj"], weights[0, "v_proj"]
    torch.testing.assert_close(got[:, :12], torch.mm(torch.mm(x, q.a), q.b) * q.scaling)
    torch.testing.assert_close(got[:, 12:16], torch.zeros(7, 4))
    torch.testing.assert_close(got[:, 16:], torch.mm(torch.mm(x, v.a), v.b) * v.scaling)
    # An adapter trained on another base: a projection's output width, or its input, does not fit.
    wrong = {**weights, (0, "v_proj"): LoraModule(torch.randn(hidden, 5), torch.randn(5, 6), 2.0)}
    with pytest.raises(UnsupportedAdapter, match="layer 0 v_proj"):
        fuse(wrong, groups, layers=1)
    wrong = {**weights, (0, "v_proj"): LoraModule(torch.randn(hidden + 8, 5), torch.randn(5, 4), 2.0)}
    with pytest.raises(UnsupportedAdapter, match="another base model"):
        fuse(wrong, groups, layers=1)
