"""Where each residual coefficient of a block is coded, and under which context, for all of them at
once: the encoder's side of `tables.contexts` and `tables.odd_contexts`.

The decoder must find contexts band by band, pass by pass, since they depend on what it decoded
before. The encoder knows every coefficient already, so it gathers every context with a few
array operations over index maps that depend on the band sizes only (cached per block length):
the same contexts (tests/sancodec/test_bandlayout.py checks them against the per-band rules).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt

from sancodec.tables import CONTEXTS, context_class

__all__ = ["BandLayout", "band_layout"]

Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, eq=False)
class BandLayout:
    """Index maps of a block's coefficients (flat, coarsest band first) in coding order: band by
    band, its even-indexed coefficients, then its odd-indexed ones."""

    sizes: tuple[int, ...]
    order: Ints  # flat index of each coded position
    band: Ints  # its band
    odd: npt.NDArray[np.bool_]  # in its band's second pass
    parent: Ints  # its parent's flat index and its neighbours' (clamped; band 0: 0)
    parent_left: Ints
    parent_right: Ints
    odd_positions: Ints  # the coded positions of odd coefficients, band 0's first
    even_left: Ints  # each one's two even neighbours (flat, the last one clamped)
    even_right: Ints

    def contexts(self, dense: Ints) -> Ints:
        """The context of each coded position, from the block's quantized coefficients."""
        sizes, a = self.sizes, np.abs(dense)
        if not sizes:
            return np.zeros(0, dtype=np.int64)
        magnitude = 2 * a[self.parent] + a[self.parent_left] + a[self.parent_right]
        lo, hi = sizes[0], sizes[0] + (sizes[1] if len(sizes) > 1 else 0)
        # band 1's parent is the approximation: its local slope predicts detail
        magnitude[lo:hi] = np.abs(dense[self.parent_right[lo:hi]] - dense[self.parent_left[lo:hi]])
        ctx = context_class(magnitude)
        ctx[:lo] = 0  # the approximation's even coefficients
        n = a[self.even_left] + a[self.even_right]
        step = (n >= 3).astype(np.int64) - (n == 0)
        odd = np.clip(ctx[self.odd_positions] + step, 0, CONTEXTS - 1)
        approx = sizes[0] // 2  # band 0's odd coefficients: n's class
        odd[:approx] = context_class(n[:approx])
        ctx[self.odd_positions] = odd
        return ctx


_FIELDS = (
    "order",
    "band",
    "odd",
    "parent",
    "parent_left",
    "parent_right",
    "even_left",
    "even_right",
)


@lru_cache(maxsize=256)
def band_layout(sizes: tuple[int, ...]) -> BandLayout:
    """The layout of a block whose bands (coarsest first) have these sizes."""
    starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
    parts: dict[str, list[npt.NDArray[np.generic]]] = {key: [np.zeros(0)] for key in _FIELDS}
    for i, size in enumerate(sizes):
        j = np.concatenate([np.arange(0, size, 2), np.arange(1, size, 2)]).astype(np.int64)
        psize = sizes[i - 1] if i > 0 else 0
        p = np.minimum(j * psize // size, psize - 1) if psize else np.zeros(size, dtype=np.int64)
        base = starts[i - 1] if i > 0 else 0
        odds = np.arange(1, size, 2)  # odd coefficient 2m + 1: evens 2m and 2m + 2 (clamped)
        values = {
            "order": starts[i] + j,
            "band": np.full(size, i),
            "odd": j % 2 == 1,
            "parent": base + p,
            "parent_left": base + np.maximum(p - 1, 0),
            "parent_right": base + np.minimum(p + 1, max(psize - 1, 0)),
            "even_left": starts[i] + odds - 1,
            "even_right": starts[i] + np.minimum(odds + 1, 2 * ((size - 1) // 2)),
        }
        for key, value in values.items():
            parts[key].append(np.asarray(value))
    joined = {key: np.concatenate(arrays).astype(np.int64) for key, arrays in parts.items()}
    odd = joined.pop("odd").astype(bool)
    return BandLayout(sizes, odd=odd, odd_positions=np.flatnonzero(odd).astype(np.int64), **joined)
