"""Sparse activation functions of Sparsely Activated Networks (identity, ReLU, top-k, Extrema)."""

from __future__ import annotations

import enum
import math

import numpy as np
import numpy.typing as npt
import torch
from torch.nn import functional as nnf

__all__ = [
    "Activation",
    "SparseActivation",
    "extrema",
    "extrema_candidates",
    "extrema_fixed_point",
    "extrema_greedy_reference",
    "extrema_mask",
    "extrema_pool_indices",
    "identity",
    "relu",
    "sparse_activation",
    "sparsity_parameter",
    "topk_absolutes",
]


class Activation(enum.StrEnum):
    """Names of the sparse activations (the values are the names used in configs)."""

    IDENTITY = "identity"
    RELU = "relu"
    TOPK_ABSOLUTES = "topk_absolutes"
    EXTREMA_POOL_INDICES = "extrema_pool_indices"
    EXTREMA = "extrema"


def _keep(s: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Keep ``s`` where ``mask`` (bool, no grad) is set and exact +0 elsewhere.

    Gradient flows to kept positions only, exactly as for ``s * mask`` (but without
    producing ``-0.0`` or ``nan`` from non-finite discarded values).
    """
    return torch.where(mask, s, torch.zeros_like(s))  # (..., n)


def identity(s: torch.Tensor) -> torch.Tensor:
    """Identity activation: every sample is kept."""
    return s


def relu(s: torch.Tensor) -> torch.Tensor:
    """ReLU activation: ``max(s, 0)``."""
    return _keep(s, s.detach() > 0)  # (..., n)


def topk_absolutes(s: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the ``k`` entries of largest ``|s|`` in every row (last axis).

    ``k == 0`` keeps nothing (the reference code does not guard ``k >= 1``; this happens
    when the signal is shorter than the kernel). ``k > n`` keeps every sample. Ties in
    ``|s|`` are broken by ``torch.topk`` (unspecified order).
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    k = min(k, s.shape[-1])
    with torch.no_grad():
        idx = torch.topk(s.abs(), k, dim=-1, sorted=False).indices  # (..., k)
        mask = torch.zeros_like(s, dtype=torch.bool)  # (..., n)
        mask.scatter_(-1, idx, True)
    return _keep(s, mask)  # (..., n)


def extrema_pool_indices(s: torch.Tensor, pool: int) -> torch.Tensor:
    """Keep ``s`` at the argmax of ``|s|`` in each non-overlapping window of ``pool`` samples.

    Windows are ``max_pool1d(kernel_size=pool, stride=pool, padding=0, ceil_mode=False)``,
    so the trailing ``n % pool`` samples are never activated (nothing when ``n < pool``).
    """
    if pool < 1:
        raise ValueError(f"pool must be >= 1, got {pool}")
    n = s.shape[-1]
    mask = torch.zeros(s.shape, dtype=torch.bool, device=s.device)  # (..., n)
    if n >= pool:
        with torch.no_grad():
            rows = s.detach().abs().reshape(-1, 1, n)  # (N, 1, n)
            _, idx = nnf.max_pool1d(rows, pool, stride=pool, return_indices=True)  # (N, 1, n//pool)
            mask.view(-1, n).scatter_(-1, idx.squeeze(1), True)  # (N, n)
    return _keep(s, mask)  # (..., n)


def extrema_candidates(s: torch.Tensor) -> torch.Tensor:
    """Bool mask of local peaks (``s > 0``) and valleys (``s <= 0``) along the last axis."""
    x = s.detach()  # (..., n)
    d = x[..., 1:] - x[..., :-1]  # (..., n-1)
    right = nnf.pad(d, (0, 1))  # (..., n)  R[t] = s[t+1] - s[t], R[n-1] = 0
    left = nnf.pad(d, (1, 0))  # (..., n)  L[t] = s[t] - s[t-1], L[0] = 0
    valley = (right > 0) & (left <= 0) & (x <= 0)  # (..., n)
    peak = (right <= 0) & (left > 0) & (x > 0)  # (..., n)
    return peak | valley  # (..., n)


def extrema_fixed_point(s: torch.Tensor, med: int) -> tuple[torch.Tensor, int]:
    """Vectorized exact Extrema selection; returns ``(kept mask, number of rounds)``.

    Candidates are ordered by ``|s|`` descending, ties to the lower index; the result
    equals greedy non-maximum suppression with radius ``med`` (see
    :func:`extrema_greedy_reference`). Each round keeps every undecided candidate that
    beats all undecided candidates within ``±med`` and removes the candidates within
    ``±med`` of the newly kept ones. Rounds are at most ``ceil(n / (med + 1))``.
    """
    if med < 1:
        raise ValueError(f"med must be >= 1, got {med}")
    n = s.shape[-1]
    with torch.no_grad():
        x = s.detach().reshape(math.prod(s.shape[:-1]), n)  # (N, n)
        a = x.abs()  # (N, n)
        undecided = extrema_candidates(x)  # (N, n)
        kept = torch.zeros_like(undecided)  # (N, n)
        rounds = 0
        while bool(undecided.any()):
            rounds += 1
            v = torch.where(undecided, a, -1.0)  # (N, n)
            padded = nnf.pad(v, (med, med), value=-1.0).unsqueeze(1)  # (N, 1, n+2med)
            win = nnf.max_pool1d(padded, med, stride=1).squeeze(1)  # (N, n+med+1)
            left = win[:, :n]  # (N, n)  max v[t-med .. t-1]
            right = win[:, med + 1 :]  # (N, n)  max v[t+1 .. t+med]
            keep_now = undecided & (v > left) & (v >= right)  # (N, n)
            kept |= keep_now
            near = keep_now.to(x.dtype).unsqueeze(1)  # (N, 1, n)
            blocked = nnf.max_pool1d(near, 2 * med + 1, stride=1, padding=med)  # (N, 1, n)
            undecided &= blocked.squeeze(1) <= 0  # (N, n)
    return kept.view(s.shape), rounds  # (..., n)


def extrema_mask(s: torch.Tensor, med: int) -> torch.Tensor:
    """Bool mask of the Extrema kept along the last axis (vectorized over all rows)."""
    return extrema_fixed_point(s, med)[0]  # (..., n)


def extrema(s: torch.Tensor, med: int) -> torch.Tensor:
    """Extrema activation: keep the non-suppressed peaks/valleys, at least ``med + 1`` apart."""
    return _keep(s, extrema_mask(s, med))  # (..., n)


def extrema_greedy_reference(s_row: npt.NDArray[np.floating], med: int) -> npt.NDArray[np.floating]:
    """Sequential NumPy Extrema on one row, written as the reference pseudocode (for tests)."""
    x = np.asarray(s_row)
    n = x.shape[0]
    d = x[1:] - x[:-1]
    right = np.concatenate([d, np.zeros(1, dtype=x.dtype)])
    left = np.concatenate([np.zeros(1, dtype=x.dtype), d])
    valley = (right > 0) & (left <= 0) & (x <= 0)
    peak = (right <= 0) & (left > 0) & (x > 0)
    cand = np.flatnonzero(peak | valley)
    order = cand[np.argsort(-np.abs(x[cand]), kind="stable")]
    blocked = np.zeros(n, dtype=bool)
    out = np.zeros_like(x)
    for t in order:
        if not blocked[t]:
            out[t] = x[t]
            blocked[max(t - med, 0) : t + med + 1] = True
    return out


def sparsity_parameter(
    activation: Activation | str, kernel_size: int, length: int, border_tolerance: int = 3
) -> int:
    """Sparsity parameter ``d`` of an activation for kernel size ``m`` and length ``n``.

    identity/relu: ``m`` (unused); topk_absolutes: ``n // m``; extrema_pool_indices: ``m``;
    extrema: ``max(m - border_tolerance, 1)``.
    """
    act = Activation(activation)
    if kernel_size < 1:
        raise ValueError(f"kernel_size must be >= 1, got {kernel_size}")
    if act is Activation.TOPK_ABSOLUTES:
        return length // kernel_size
    if act is Activation.EXTREMA:
        return max(kernel_size - border_tolerance, 1)
    return kernel_size


def sparse_activation(
    s: torch.Tensor, activation: Activation | str, kernel_size: int, border_tolerance: int = 3
) -> torch.Tensor:
    """Apply ``activation`` to similarity maps ``s`` (..., n), with ``d`` from ``s.shape[-1]``."""
    act = Activation(activation)
    d = sparsity_parameter(act, kernel_size, s.shape[-1], border_tolerance)
    if act is Activation.IDENTITY:
        return identity(s)
    if act is Activation.RELU:
        return relu(s)
    if act is Activation.TOPK_ABSOLUTES:
        return topk_absolutes(s, d)
    if act is Activation.EXTREMA_POOL_INDICES:
        return extrema_pool_indices(s, d)
    return extrema(s, d)


class SparseActivation(torch.nn.Module):
    """Sparse activation of one SAN kernel; ``d`` is recomputed from each input's length."""

    def __init__(
        self, activation: Activation | str, kernel_size: int, border_tolerance: int = 3
    ) -> None:
        super().__init__()
        self.activation = Activation(activation)
        self.kernel_size = kernel_size
        self.border_tolerance = border_tolerance

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        """Map similarity ``s`` of shape (B, K, n) to sparse activations of the same shape."""
        return sparse_activation(s, self.activation, self.kernel_size, self.border_tolerance)

    def extra_repr(self) -> str:
        return (
            f"activation={self.activation.value}, kernel_size={self.kernel_size}, "
            f"border_tolerance={self.border_tolerance}"
        )
