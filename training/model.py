"""The Sparsely Activated Network: q kernels, a sparse activation, and a decoder that paints them."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import torch
from torch import nn
from torch.nn import functional as nnf

from sancodec import Codebook, DecoderMode
from training.activations import Activation, SparseActivation

__all__ = ["SAN", "correlate_same", "paint"]


def _pads(m: int) -> tuple[int, int]:
    """Left/right zero padding of the paper's "same" correlation: floor and ceil of (m-1)/2."""
    return (m - 1) // 2, m // 2


def correlate_same(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """s[t] = sum_j w[j] x[t + j - (m-1)//2], zero outside: (B, 1, n) -> (B, 1, n)."""
    xp = nnf.pad(x, _pads(w.numel()))  # (B, 1, n + m - 1)
    return nnf.conv1d(xp, w.view(1, 1, -1))  # (B, 1, n)


def paint(alpha: torch.Tensor, w: torch.Tensor, mode: DecoderMode) -> torch.Tensor:
    """Decode one kernel's activation map (B, 1, n) to its partial reconstruction (B, 1, n)."""
    if mode is DecoderMode.CORRELATION:
        return correlate_same(alpha, w)  # the authors' decoder: the same op again
    left, _ = _pads(w.numel())
    full = nnf.conv_transpose1d(alpha, w.view(1, 1, -1))  # (B, 1, n + m - 1), the adjoint
    return full[..., left : left + alpha.shape[-1]]  # (B, 1, n)


class SAN(nn.Module):
    """q kernels of sizes m_i, no bias; x_hat = sum_i paint(act(correlate(x, w_i)), w_i).

    `sparsifier` replaces the paper's activation when given (e.g. a k-sparse layer); it maps the
    stacked similarity maps (B, q, n) to activations of the same shape.
    """

    def __init__(
        self,
        kernel_sizes: Sequence[int],
        activation: Activation | str = Activation.EXTREMA,
        decoder_mode: DecoderMode | str = DecoderMode.ADJOINT,
        border_tolerance: int = 3,
        sparsifier: nn.Module | None = None,
    ) -> None:
        super().__init__()
        if not kernel_sizes or min(kernel_sizes) < 1:
            raise ValueError(f"kernel sizes must be positive, got {list(kernel_sizes)}")
        self.kernel_sizes = tuple(int(m) for m in kernel_sizes)
        self.decoder_mode = DecoderMode(decoder_mode)
        self.weights = nn.ParameterList(nn.Parameter(torch.zeros(m)) for m in self.kernel_sizes)
        self.activations = nn.ModuleList(
            SparseActivation(activation, m, border_tolerance) for m in self.kernel_sizes
        )
        self.sparsifier = sparsifier
        self.init_normal(torch.Generator().manual_seed(0))

    @property
    def weight_count(self) -> int:
        return sum(self.kernel_sizes)

    def init_normal(self, generator: torch.Generator, std: float = 0.1) -> None:
        """N(0, std) weights, as the paper's code initializes them."""
        with torch.no_grad():
            for w in self.weights:
                w.copy_(torch.randn(w.shape, generator=generator) * std)

    def init_from(self, kernels: Sequence[npt.ArrayLike]) -> None:
        with torch.no_grad():
            for w, k in zip(self.weights, kernels, strict=True):
                w.copy_(torch.as_tensor(np.asarray(k), dtype=w.dtype))

    def similarity(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, n) -> (B, q, n): each kernel's cross-correlation with the signal."""
        return torch.cat([correlate_same(x, w) for w in self.weights], dim=1)

    def activate(self, s: torch.Tensor) -> torch.Tensor:
        if self.sparsifier is not None:
            return self.sparsifier(s)  # type: ignore[no-any-return]
        parts = [act(s[:, i : i + 1]) for i, act in enumerate(self.activations)]
        return torch.cat(parts, dim=1)  # (B, q, n)

    def decode(self, alpha: torch.Tensor) -> torch.Tensor:
        """(B, q, n) activations -> (B, 1, n) reconstruction."""
        parts = [
            paint(alpha[:, i : i + 1], w, self.decoder_mode) for i, w in enumerate(self.weights)
        ]
        return torch.stack(parts, dim=0).sum(dim=0)  # (B, 1, n)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 1, n) -> (reconstruction (B, 1, n), activations (B, q, n))."""
        alpha = self.activate(self.similarity(x))
        return self.decode(alpha), alpha

    def codebook(self) -> Codebook:
        """The kernels as the codec's decoder needs them."""
        kernels = tuple(w.detach().cpu().numpy().astype(np.float32) for w in self.weights)
        return Codebook(kernels, self.decoder_mode)
