"""The encoder's contexts, found for a whole block at once, are the per-band rules the decoder
follows (tables.contexts, tables.odd_contexts), for every block length."""

from __future__ import annotations

import numpy as np
import pytest

from sancodec import ResidualSpec
from sancodec.bandlayout import band_layout
from sancodec.residual import band_sizes
from sancodec.tables import contexts, odd_contexts


def _per_band(dense: np.ndarray, sizes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Values and contexts in coding order, band by band and pass by pass, by the rules."""
    bands = np.split(dense, np.cumsum(sizes)[:-1])
    values, ctx = [], []
    for i, band in enumerate(bands):
        parent = (
            np.zeros(band.size, dtype=np.int64)
            if i == 0
            else contexts(bands[i - 1], band.size, parent_is_approximation=i == 1)
        )
        evens, odds = band[0::2], band[1::2]
        values += [evens, odds]
        ctx += [parent[0::2], odd_contexts(evens, None if i == 0 else parent[1::2], odds.size)]
    return np.concatenate(values), np.concatenate(ctx)


@pytest.mark.parametrize("count", [1, 2, 7, 33, 100, 1023, 2048, 4096])
@pytest.mark.parametrize("wavelet", ["bior4.4", "haar"])
def test_contexts_of_a_whole_block_follow_the_per_band_rules(count: int, wavelet: str) -> None:
    sizes = band_sizes(ResidualSpec(wavelet, 5), count)
    rng = np.random.default_rng(count)
    layout = band_layout(sizes)
    for scale in (0.3, 2.0, 40.0):  # mostly zeros, small, escapes
        dense = np.rint(rng.laplace(0, scale, sum(sizes))).astype(np.int64)
        values, ctx = _per_band(dense, sizes)
        assert np.array_equal(dense[layout.order], values)
        assert np.array_equal(layout.contexts(dense), ctx)


def test_an_empty_layout() -> None:
    layout = band_layout(())
    assert layout.order.size == 0
    assert layout.contexts(np.zeros(0, dtype=np.int64)).size == 0
