"""Literature sparsity options: k-sparse layer with adaptive sensitivity, activity regularizers."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

__all__ = [
    "REGULARIZER_KINDS",
    "KSparse",
    "Regularizer",
    "fan_in_init",
    "kl_penalty",
    "l1_penalty",
    "l2_penalty",
    "mean_target_penalty",
    "student_t_penalty",
    "zero_fraction",
]

KL_EPS = 1e-6


class _SensitiveKeep(torch.autograd.Function):
    """``where(mask, s, 0)`` whose backward scales the kept entries' gradient by ``sens``."""

    @staticmethod
    def forward(ctx: Any, s: torch.Tensor, mask: torch.Tensor, sens: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(mask, sens)
        return torch.where(mask, s, torch.zeros_like(s))  # (..., K, n)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        mask, sens = ctx.saved_tensors  # (..., K, n), (K, n)
        scaled = grad * sens.to(grad.dtype)  # (..., K, n) same sensitivity for every example
        return torch.where(mask, scaled, torch.zeros_like(grad)), None, None


class KSparse(nn.Module):
    """k-sparse layer with adaptive sensitivity on a similarity map ``s`` of shape ``(B, K, n)``.

    Keeps the ``k`` largest activities of every (example, kernel) row. With
    ``by_magnitude=True`` (default) the selection is on ``|s|`` and the kept values stay
    signed, like the SAN top-k; ``by_magnitude=False`` selects the largest raw values, as in
    Makhzani & Frey's k-sparse autoencoder. ``k`` is fixed, or ``max(1, floor(ratio * n))``
    computed from the length ``n`` of each input.

    In training mode every node (kernel ``i``, position index ``t``) carries a sensitivity
    ``>= 1``: the gradient of a selected node is multiplied by its sensitivity, which then
    resets to 1, while unselected nodes drift toward ``s_max`` by
    ``s += (s_max - s) / tau`` per step. This revives nodes that are rarely selected. A node
    counts as selected in a step if it is selected in any batch element. Since ``n`` varies
    at run time, the ``sensitivity`` buffer is ``(K, n_max)`` and grows on demand (new
    positions start at 1); ``K`` is fixed by the first input. The update happens in
    ``forward`` whenever the module is in training mode. In eval mode this is a plain top-k.
    """

    sensitivity: torch.Tensor

    def __init__(
        self,
        k: int | None = None,
        ratio: float | None = None,
        s_max: float = 10.0,
        tau: float = 100.0,
        by_magnitude: bool = True,
    ) -> None:
        super().__init__()
        if (k is None) == (ratio is None):
            raise ValueError(f"give exactly one of k and ratio, got k={k!r}, ratio={ratio!r}")
        if k is not None and k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if ratio is not None and not 0.0 < ratio <= 1.0:
            raise ValueError(f"ratio must be in (0, 1], got {ratio}")
        if not math.isfinite(s_max) or s_max < 1.0:
            raise ValueError(f"s_max must be finite and >= 1, got {s_max}")
        # tau >= 1 keeps the update a convex step, so the sensitivity never overshoots s_max.
        if not math.isfinite(tau) or tau < 1.0:
            raise ValueError(f"tau must be finite and >= 1, got {tau}")
        self.k = k
        self.ratio = ratio
        self.s_max = float(s_max)
        self.tau = float(tau)
        self.by_magnitude = by_magnitude
        self.register_buffer("sensitivity", torch.ones(0, 0))  # (K, n_max)

    def extra_repr(self) -> str:
        size = f"k={self.k}" if self.k is not None else f"ratio={self.ratio}"
        return f"{size}, s_max={self.s_max}, tau={self.tau}, by_magnitude={self.by_magnitude}"

    def k_for(self, n: int) -> int:
        """Number of entries kept in a row of length ``n`` (never more than ``n``)."""
        if self.k is not None:
            return min(self.k, n)
        assert self.ratio is not None
        return min(max(1, math.floor(self.ratio * n)), n)

    def select(self, s: torch.Tensor) -> torch.Tensor:
        """Bool mask (no grad) of the kept entries of ``s`` along the last axis."""
        with torch.no_grad():
            score = s.detach().abs() if self.by_magnitude else s.detach()  # (..., K, n)
            idx = torch.topk(score, self.k_for(s.shape[-1]), dim=-1, sorted=False).indices
            mask = torch.zeros_like(s, dtype=torch.bool)  # (..., K, n)
            mask.scatter_(-1, idx, True)
        return mask

    def forward(self, s: torch.Tensor) -> torch.Tensor:
        if s.dim() < 2:
            raise ValueError(f"expected s of shape (B, K, n), got {tuple(s.shape)}")
        mask = self.select(s)  # (..., K, n)
        if not self.training:
            return torch.where(mask, s, torch.zeros_like(s))  # (..., K, n)
        num_kernels, n = s.shape[-2], s.shape[-1]
        self._grow(num_kernels, n, s.device)
        # Snapshot: backward must see the sensitivity from before this step's reset.
        sens = self.sensitivity[:, :n].clone()  # (K, n)
        out = _SensitiveKeep.apply(s, mask, sens)  # type: ignore[no-untyped-call]
        self._update(mask.reshape(-1, num_kernels, n).any(dim=0))
        assert isinstance(out, torch.Tensor)
        return out  # (..., K, n)

    def reset_sensitivity(self) -> None:
        """Set every sensitivity back to 1 (keeps the buffer's size)."""
        with torch.no_grad():
            self.sensitivity.fill_(1.0)

    def _grow(self, num_kernels: int, n: int, device: torch.device) -> None:
        old = self.sensitivity  # (K, n_old)
        if old.numel() > 0 and old.shape[0] != num_kernels:
            raise ValueError(f"KSparse was used with K={old.shape[0]}, got K={num_kernels}")
        if old.shape[0] == num_kernels and old.shape[1] >= n and old.device == device:
            return
        new = torch.ones(num_kernels, max(n, old.shape[1]), dtype=old.dtype, device=device)
        if old.shape[0] == num_kernels:
            new[:, : old.shape[1]] = old.to(device)
        self.sensitivity = new  # (K, n_max)

    def _update(self, selected: torch.Tensor) -> None:
        n = selected.shape[-1]
        with torch.no_grad():
            cur = self.sensitivity[:, :n]  # (K, n) view into the buffer
            drifted = cur + (self.s_max - cur) / self.tau
            cur.copy_(torch.where(selected, torch.ones_like(cur), drifted))

    def _load_from_state_dict(
        self,
        state_dict: dict[str, Any],
        prefix: str,
        local_metadata: dict[str, Any],
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        # The buffer's shape depends on the inputs seen, so adopt the saved shape first.
        saved = state_dict.get(prefix + "sensitivity")
        if isinstance(saved, torch.Tensor) and saved.dim() == 2:
            cur = self.sensitivity
            self.sensitivity = torch.ones(saved.shape, dtype=cur.dtype, device=cur.device)
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )


def fan_in_init(weight: torch.Tensor, k: int) -> None:
    """In-place ``N(0, 1/k)`` init of a layer fed by a k-sparse layer.

    Fan-in-aware schemes scale by the number of inputs a unit sums over. Behind a k-sparse
    layer only ``k`` units are non-zero per row, so the decoder's effective fan-in is ``k``,
    not the layer width; ``std = 1/sqrt(k)`` keeps the output variance at the input's.
    """
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    with torch.no_grad():
        weight.normal_(0.0, 1.0 / math.sqrt(k))


def _check_batched(h: torch.Tensor, min_dim: int) -> None:
    if h.dim() < min_dim or h.shape[0] == 0:
        raise ValueError(f"expected a non-empty batched map (B, K, n), got {tuple(h.shape)}")


def _per_example_sum(x: torch.Tensor) -> torch.Tensor:
    return x.reshape(x.shape[0], -1).sum(dim=1).mean()  # mean over B of the sum over (K, n)


def l1_penalty(h: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum |h|``."""
    _check_batched(h, 1)
    return _per_example_sum(h.abs())


def l2_penalty(h: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum h**2``."""
    _check_batched(h, 1)
    return _per_example_sum(h.square())


def student_t_penalty(h: torch.Tensor) -> torch.Tensor:
    """Mean over the batch of ``sum log(1 + h**2)`` (Student-t log-prior on activities)."""
    _check_batched(h, 1)
    return _per_example_sum(torch.log1p(h.square()))


def kl_penalty(h: torch.Tensor, target_rate: float, eps: float = KL_EPS) -> torch.Tensor:
    """``sum_j KL(p || rho_j)`` with ``rho_j`` the mean of ``sigmoid(h)`` per kernel ``j``.

    The rate is per kernel (mean over batch and time, dims 0 and 2+) rather than per unit
    (K, n): ``n`` varies at run time and a kernel's positions share weights, so the firing
    rate is a property of the kernel. Meant for sigmoid-bounded units: on a sparse map the
    zeros count as ``sigmoid(0) = 0.5``. ``rho`` is clamped to ``(eps, 1 - eps)``.
    """
    _check_batched(h, 2)
    dims = [0, *range(2, h.dim())]
    rho = torch.sigmoid(h).mean(dim=dims).clamp(eps, 1.0 - eps)  # (K,)
    p = target_rate
    kl = p * torch.log(p / rho) + (1.0 - p) * torch.log((1.0 - p) / (1.0 - rho))  # (K,)
    return kl.sum()


def mean_target_penalty(h: torch.Tensor, target_rate: float) -> torch.Tensor:
    """``sum_j (p - mean_batch h_j)**2`` over units ``j`` (every (K, n) entry)."""
    _check_batched(h, 1)
    return (target_rate - h.mean(dim=0)).square().sum()


REGULARIZER_KINDS = ("l1", "l2", "student_t", "kl", "mean_target")

_FIXED: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "l1": l1_penalty,
    "l2": l2_penalty,
    "student_t": student_t_penalty,
}


@dataclasses.dataclass(frozen=True)
class Regularizer:
    """Weighted activity penalty on an activation map ``h`` (B, K, n); call returns weight × penalty.

    ``target_rate`` is used by ``"kl"`` (must be in (0, 1)) and ``"mean_target"`` (in
    [0, 1]); the other kinds ignore it but still require it in [0, 1].
    """

    kind: str
    weight: float
    target_rate: float = 0.05

    def __post_init__(self) -> None:
        if self.kind not in REGULARIZER_KINDS:
            raise ValueError(
                f"unknown regularizer kind {self.kind!r}; expected one of {REGULARIZER_KINDS}"
            )
        if not math.isfinite(self.weight) or self.weight < 0.0:
            raise ValueError(f"weight must be finite and >= 0, got {self.weight!r}")
        p = self.target_rate
        if self.kind == "kl" and not 0.0 < p < 1.0:
            raise ValueError(f"target_rate must be in (0, 1) for kind 'kl', got {p!r}")
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"target_rate must be in [0, 1], got {p!r}")

    def penalty(self, h: torch.Tensor) -> torch.Tensor:
        """The unweighted penalty (scalar tensor)."""
        if self.kind == "kl":
            return kl_penalty(h, self.target_rate)
        if self.kind == "mean_target":
            return mean_target_penalty(h, self.target_rate)
        return _FIXED[self.kind](h)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        return self.weight * self.penalty(h)


def zero_fraction(h: torch.Tensor) -> float:
    """Fraction of entries of ``h`` that are exactly zero (NaN counts as non-zero)."""
    if h.numel() == 0:
        raise ValueError("zero_fraction of an empty tensor is undefined")
    return float((h.detach() == 0).sum().item()) / h.numel()
