"""Tests of the SAN sparse activations (reference vectors, gradients, exact vectorized Extrema)."""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from training.activations import (
    Activation,
    SparseActivation,
    extrema,
    extrema_candidates,
    extrema_fixed_point,
    extrema_greedy_reference,
    extrema_mask,
    extrema_pool_indices,
    identity,
    relu,
    sparse_activation,
    sparsity_parameter,
    topk_absolutes,
)

DATA_DIR = Path(__file__).resolve().parents[3] / "shared" / "data"
MITDB_100 = DATA_DIR / "wfdb" / "mitdb" / "100.dat"

VEC_A = [0.0, 1.1, 0.0, 2.7, 3.2]
VEC_B = [1.2, 0.0, 2.9, 7.8, 0.0]


def row(values: list[float]) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float64).view(1, 1, -1)  # (1, 1, n)


def vectorized_row(values: npt.NDArray[np.float64], med: int) -> npt.NDArray[np.float64]:
    return extrema(torch.from_numpy(values).view(1, 1, -1), med).view(-1).numpy()


def assert_matches_reference(s: torch.Tensor, med: int) -> None:
    got = extrema(s, med).reshape(-1, s.shape[-1]).numpy()  # (N, n)
    for r, s_row in enumerate(s.reshape(-1, s.shape[-1]).numpy()):
        np.testing.assert_array_equal(got[r], extrema_greedy_reference(s_row, med))


def read_mitdb_channel0(path: Path, count: int) -> npt.NDArray[np.float64]:
    """First ``count`` samples of channel 0 of a 2-channel WFDB format-212 file."""
    raw = np.fromfile(path, dtype=np.uint8, count=3 * count).astype(np.int32).reshape(-1, 3)
    s0 = raw[:, 0] | ((raw[:, 1] & 0x0F) << 8)
    return np.where(s0 >= 2048, s0 - 4096, s0).astype(np.float64)


# ---------------------------------------------------------------- reference vectors


@pytest.mark.parametrize(
    ("values", "expected", "mask"),
    [
        (VEC_A, [0, 0, 0, 0, 3.2], [True, False, False, False, True]),  # zero valley kept at 0
        (VEC_B, [0, 0, 0, 7.8, 0], [False, False, False, True, False]),
    ],
)
def test_extrema_reference_vectors(
    values: list[float], expected: list[float], mask: list[bool]
) -> None:
    assert extrema(row(values), 3).view(-1).tolist() == expected
    assert extrema_mask(row(values), 3).view(-1).tolist() == mask
    np.testing.assert_array_equal(extrema_greedy_reference(np.array(values), 3), expected)


def test_extrema_candidates_peaks_and_valleys() -> None:
    s = row([0.0, 1.0, 1.0, 0.0, -1.0, -1.0, 2.0, 0.0, 0.0, 3.0])
    # A plateau peak is marked at its first sample, a plateau valley at its last one.
    expected = [True, True, False, False, False, True, True, False, True, True]
    assert extrema_candidates(s).view(-1).tolist() == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [(VEC_A, [0, 0, 0, 2.7, 3.2]), (VEC_B, [0, 0, 2.9, 7.8, 0])],
)
def test_topk_reference_vectors(values: list[float], expected: list[float]) -> None:
    assert topk_absolutes(row(values), 2).view(-1).tolist() == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [(VEC_A, [0, 1.1, 0, 0, 0]), (VEC_B, [0, 0, 2.9, 0, 0])],
)
def test_extrema_pool_reference_vectors(values: list[float], expected: list[float]) -> None:
    assert extrema_pool_indices(row(values), 3).view(-1).tolist() == expected


def test_module_reproduces_reference_vectors() -> None:
    s = torch.cat([row(VEC_A), row(VEC_B)])  # (2, 1, 5)
    assert SparseActivation("extrema", kernel_size=6)(s).tolist() == [
        [[0, 0, 0, 0, 3.2]],
        [[0, 0, 0, 7.8, 0]],
    ]
    assert SparseActivation("topk_absolutes", kernel_size=2)(s).tolist() == [
        [[0, 0, 0, 2.7, 3.2]],
        [[0, 0, 2.9, 7.8, 0]],
    ]
    pool = SparseActivation(Activation.EXTREMA_POOL_INDICES, kernel_size=3)
    assert pool(s).tolist() == [[[0, 1.1, 0, 0, 0]], [[0, 0, 2.9, 0, 0]]]


# ---------------------------------------------------------------- identity, relu, gradients


def test_identity_and_relu() -> None:
    s = torch.tensor([[[-2.0, -0.5, 0.0, 0.5, 3.0]]])  # (1, 1, 5)
    assert torch.equal(identity(s), s)
    assert relu(s).tolist() == [[[0.0, 0.0, 0.0, 0.5, 3.0]]]
    assert torch.equal(relu(s), torch.relu(s))
    assert torch.equal(SparseActivation("identity", 4)(s), s)
    assert torch.equal(SparseActivation("relu", 4)(s), torch.relu(s))


@pytest.mark.parametrize("activation", list(Activation))
def test_gradient_flows_only_through_kept(activation: Activation) -> None:
    torch.manual_seed(0)
    s = torch.randn(3, 2, 40, dtype=torch.float64, requires_grad=True)  # (B, K, n)
    alpha = sparse_activation(s, activation, kernel_size=5)
    (grad,) = torch.autograd.grad(alpha.sum(), s)
    kept = (alpha != 0).to(s.dtype)  # no exact zeros in randn
    assert torch.equal(grad, kept)
    assert torch.equal(alpha.detach(), s.detach() * kept)
    if activation is not Activation.IDENTITY:
        assert 0 < int(kept.sum()) < s.numel()


# ---------------------------------------------------------------- top-k and extrema-pool


def test_topk_keeps_exactly_k_per_row_from_runtime_length() -> None:
    torch.manual_seed(1)
    act = SparseActivation(Activation.TOPK_ABSOLUTES, kernel_size=7)
    for n in (3, 7, 20, 50, 99):
        s = torch.randn(4, 3, n)  # (B, K, n)
        kept = (act(s) != 0).sum(dim=-1)  # (B, K)
        assert torch.all(kept == n // 7), n
        expected = torch.topk(s.abs(), n // 7, dim=-1).values.sum(dim=-1)  # (B, K)
        torch.testing.assert_close(act(s).abs().sum(dim=-1), expected)


def test_topk_k_zero_and_k_above_length() -> None:
    s = row([3.0, -1.0, 2.0])
    assert torch.equal(topk_absolutes(s, 0), torch.zeros_like(s))
    assert torch.equal(topk_absolutes(s, 10), s)
    with pytest.raises(ValueError, match="k must be"):
        topk_absolutes(s, -1)


def test_extrema_pool_one_per_window_and_trailing_never_active() -> None:
    torch.manual_seed(2)
    m, n = 5, 23
    s = torch.randn(3, 2, n)  # (B, K, n)
    s[..., 20:] = 100.0  # trailing n % m samples dominate but must stay inactive
    alpha = extrema_pool_indices(s, m)  # (B, K, n)
    assert torch.all(alpha[..., 20:] == 0)
    windows = alpha[..., :20].reshape(3, 2, 4, m)  # (B, K, n // m, m)
    assert torch.all((windows != 0).sum(dim=-1) == 1)
    expected = s[..., :20].reshape(3, 2, 4, m).abs().amax(dim=-1)  # (B, K, n // m)
    assert torch.equal(windows.abs().amax(dim=-1), expected)
    assert torch.equal(extrema_pool_indices(s[..., :4], m), torch.zeros_like(s[..., :4]))


def test_sparsity_parameter() -> None:
    assert sparsity_parameter("identity", 8, 100) == 8
    assert sparsity_parameter("relu", 8, 100) == 8
    assert sparsity_parameter("topk_absolutes", 8, 100) == 12
    assert sparsity_parameter("topk_absolutes", 8, 7) == 0
    assert sparsity_parameter("extrema_pool_indices", 8, 100) == 8
    assert sparsity_parameter("extrema", 8, 100) == 5
    assert sparsity_parameter("extrema", 8, 100, border_tolerance=1) == 7
    assert sparsity_parameter(Activation.EXTREMA, 2, 100) == 1
    with pytest.raises(ValueError, match="kernel_size"):
        sparsity_parameter("extrema", 0, 100)
    with pytest.raises(ValueError, match="softmax"):
        sparsity_parameter("softmax", 8, 100)


# ---------------------------------------------------------------- exact vectorized Extrema

float_rows = st.lists(
    st.floats(-1e3, 1e3, allow_nan=False, allow_subnormal=False), min_size=1, max_size=48
)
int_rows = st.lists(st.integers(-2, 2).map(float), min_size=1, max_size=48)
const_rows = st.tuples(st.floats(-5, 5), st.integers(1, 20)).map(lambda t: [t[0]] * t[1])
tiny_rows = st.lists(st.sampled_from([-1.0, 0.0, 1.0, 2.0]), min_size=1, max_size=3)


@settings(max_examples=400, deadline=None)
@given(values=st.one_of(float_rows, int_rows, const_rows, tiny_rows), data=st.data())
def test_extrema_matches_greedy_reference(values: list[float], data: st.DataObject) -> None:
    med = data.draw(st.integers(1, len(values) + 2), label="med")
    x = np.array(values, dtype=np.float64)
    np.testing.assert_array_equal(vectorized_row(x, med), extrema_greedy_reference(x, med))


@settings(max_examples=60, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 80)),
    med=st.integers(1, 12),
    seed=st.integers(0, 2**31 - 1),
    quantized=st.booleans(),
)
def test_extrema_batched_matches_reference(
    shape: tuple[int, int, int], med: int, seed: int, quantized: bool
) -> None:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)  # (B, K, n)
    if quantized:
        x = np.round(2 * x)  # many exact ties and zeros
    assert_matches_reference(torch.from_numpy(x), med)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_extrema_dtypes(dtype: torch.dtype) -> None:
    torch.manual_seed(3)
    s = torch.randn(5, 3, 200, dtype=dtype)  # (B, K, n)
    alpha = extrema(s, 4)
    assert alpha.dtype == dtype
    assert alpha.shape == s.shape
    assert_matches_reference(s, 4)


def check_independent_and_maximal(
    x: npt.NDArray[np.float64], kept: npt.NDArray[np.bool_], med: int
) -> None:
    cand = np.flatnonzero(extrema_candidates(torch.from_numpy(x)).numpy())
    kept_idx = np.flatnonzero(kept)
    assert set(kept_idx) <= set(cand)
    assert np.all(np.diff(kept_idx) > med)
    a = np.abs(x)
    for t in sorted(set(cand) - set(kept_idx)):
        near = kept_idx[np.abs(kept_idx - t) <= med]
        assert any(a[u] > a[t] or (a[u] == a[t] and u < t) for u in near), t


@settings(max_examples=150, deadline=None)
@given(values=st.one_of(float_rows, int_rows), data=st.data())
def test_extrema_independent_and_maximal(values: list[float], data: st.DataObject) -> None:
    med = data.draw(st.integers(1, len(values) + 2), label="med")
    x = np.array(values, dtype=np.float64)
    kept = extrema_mask(torch.from_numpy(x), med).numpy()
    check_independent_and_maximal(x, kept, med)


def test_extrema_rounds_bound_and_worst_case_chain() -> None:
    n, med = 60, 1
    # Alternating-sign ramp: every sample is a candidate and each round only decides the
    # largest remaining one, so the fixed point needs the maximal number of rounds.
    x = np.arange(1, n + 1, dtype=np.float64) * np.where(np.arange(n) % 2 == 0, -1.0, 1.0)
    kept, rounds = extrema_fixed_point(torch.from_numpy(x), med)
    assert bool(extrema_candidates(torch.from_numpy(x)).all())
    assert rounds == math.ceil(n / (med + 1))
    np.testing.assert_array_equal(np.where(kept.numpy(), x, 0), extrema_greedy_reference(x, med))


def test_extrema_rejects_bad_med_and_handles_empty() -> None:
    with pytest.raises(ValueError, match="med must be"):
        extrema(row([1.0, 2.0]), 0)
    empty = torch.zeros(2, 3, 0)
    assert extrema(empty, 3).shape == (2, 3, 0)


@pytest.mark.skipif(not MITDB_100.exists(), reason=f"MIT-BIH record absent: {MITDB_100}")
@pytest.mark.parametrize("m", [8, 24, 64])
def test_extrema_on_ecg_excerpt(m: int) -> None:
    ecg = read_mitdb_channel0(MITDB_100, 4000)
    rng = np.random.default_rng(m)
    kernels = [rng.standard_normal(m), rng.integers(-2, 3, m).astype(np.float64)]
    s = np.stack([np.correlate(ecg, kern, mode="same") for kern in kernels])[None]  # (1, 2, n)
    med = sparsity_parameter("extrema", m, s.shape[-1])
    st_ = torch.from_numpy(s)
    kept, rounds = extrema_fixed_point(st_, med)
    assert rounds <= math.ceil(s.shape[-1] / (med + 1))
    assert_matches_reference(st_, med)
    for r in range(2):
        check_independent_and_maximal(s[0, r], kept[0, r].numpy(), med)
    assert_matches_reference(st_.float(), med)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_activations_on_cuda_match_cpu() -> None:
    torch.manual_seed(4)
    s = torch.randn(4, 3, 500, dtype=torch.float64)  # (B, K, n)
    for activation in Activation:
        cpu = sparse_activation(s, activation, kernel_size=9)
        gpu = sparse_activation(s.cuda(), activation, kernel_size=9).cpu()
        assert torch.equal((cpu != 0), (gpu != 0)), activation
        assert torch.equal(cpu, gpu), activation


def test_all_activations_preserve_shape_and_values() -> None:
    torch.manual_seed(5)
    s = torch.randn(2, 4, 33)  # (B, K, n)
    fns: list[Callable[[torch.Tensor], torch.Tensor]] = [
        identity,
        relu,
        lambda t: topk_absolutes(t, 3),
        lambda t: extrema_pool_indices(t, 4),
        lambda t: extrema(t, 2),
    ]
    for fn in fns:
        alpha = fn(s)
        assert alpha.shape == s.shape
        nz = alpha != 0
        assert torch.equal(alpha[nz], s[nz])
