"""The compiled context loops follow the rules of docs/sanc-format.md, written here once more in
plain NumPy as the reference, for every block length: the encoder's whole-block `code_order`
and the decoder's band-by-band functions alike, and the encoder's rate-distortion quantizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from sancodec import CodingTables, ResidualSpec, WaveletTransform
from sancodec.bandcontexts import (
    band_levels,
    band_symbols,
    code_order,
    even_pass,
    odd_pass,
    quantized_order,
)
from sancodec.bundle import load_bundle
from sancodec.coefficients import (
    Coefficients,
    estimate_residual,
    quantize_residual,
    rd_lambda,
)
from sancodec.entropy import MAGNITUDES, SYMBOLS
from sancodec.errors import InvalidInputError
from sancodec.residual import band_sizes
from sancodec.tables import CONTEXTS

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "ecg" / "1"
BOUNDS = np.array([1, 3, 6, 12])  # parent magnitude -> context: 0 | 1-2 | 3-5 | 6-11 | 12+


def _class(magnitude: np.ndarray) -> np.ndarray:
    return np.searchsorted(BOUNDS, magnitude, side="right").astype(np.int64)


def _parent(parent: np.ndarray, size: int, approximation: bool) -> np.ndarray:
    if parent.size == 0:
        return np.zeros(size, dtype=np.int64)
    padded = np.concatenate([parent[:1], parent, parent[-1:]])
    if approximation:  # the local slope of the approximation predicts detail
        magnitude = np.abs(padded[2:] - padded[:-2])
    else:
        a = np.abs(padded)
        magnitude = 2 * a[1:-1] + a[:-2] + a[2:]
    return _class(magnitude[np.minimum(np.arange(size) * parent.size // size, parent.size - 1)])


def _odd(evens: np.ndarray, parent: np.ndarray | None, size: int) -> np.ndarray:
    a = np.minimum(np.abs(evens), MAGNITUDES + 1)  # an escape's magnitude is K + 1
    n = (a + np.concatenate([a[1:], a[-1:]]))[:size]
    if parent is None:
        return _class(n)
    return np.where(n == 0, np.maximum(parent - 1, 0),
                    np.where(n >= 3, np.minimum(parent + 1, CONTEXTS - 1), parent))  # fmt: skip


def _symbols(values: np.ndarray) -> np.ndarray:
    m = np.abs(values)
    s = np.where(values > 0, 2 * m - 1, 2 * m)
    return np.where(m > MAGNITUDES, np.where(values > 0, 2 * MAGNITUDES + 1, 2 * MAGNITUDES + 2), s)


def _reference(dense: np.ndarray, sizes: tuple[int, ...]) -> dict[str, np.ndarray]:
    bands = np.split(dense, np.cumsum(sizes)[:-1]) if sizes else []
    values, ctx, key = [], [], []
    for i, band in enumerate(bands):
        parent = _parent(bands[i - 1] if i else band[:0], band.size, i == 1)
        evens, odds = band[0::2], band[1::2]
        for p, (v, c) in enumerate([(evens, parent[0::2]),
                                    (odds, _odd(evens, None if i == 0 else parent[1::2], odds.size))]):  # fmt: skip
            values.append(v)
            ctx.append(c)
            key.append((2 * i + p) * CONTEXTS + c)
    v = np.concatenate([np.zeros(0, dtype=np.int64), *values])
    c = np.concatenate([np.zeros(0, dtype=np.int64), *ctx])
    k = np.concatenate([np.zeros(0, dtype=np.int64), *key])
    s = _symbols(v)
    band = np.repeat(np.arange(len(sizes)), sizes)
    order = np.argsort(k, kind="stable")
    escaped = np.abs(v) > MAGNITUDES
    return {
        "symbols": s[order],
        "values": v[order],
        "ends": np.cumsum(np.bincount(k, minlength=2 * len(sizes) * CONTEXTS)),
        "excess": np.abs(v[escaped]) - MAGNITUDES - 1,
        "escape_ends": np.searchsorted(band[escaped], np.arange(len(sizes)), "right"),
        "counts": np.bincount(
            (band * CONTEXTS + c) * SYMBOLS + s, minlength=len(sizes) * CONTEXTS * SYMBOLS
        ),
    }


@pytest.mark.parametrize("count", [1, 2, 7, 33, 100, 1023, 2048, 4096])
@pytest.mark.parametrize("wavelet", ["bior4.4", "haar"])
def test_a_whole_block_is_ordered_by_the_per_band_rules(count: int, wavelet: str) -> None:
    sizes = band_sizes(ResidualSpec(wavelet, 5), count)
    rng = np.random.default_rng(count)
    for scale in (0.3, 2.0, 40.0):  # mostly zeros, small, escapes
        dense = np.rint(rng.laplace(0, scale, sum(sizes))).astype(np.int64)
        got = dict(zip(["symbols", "values", "ends", "excess", "escape_ends", "counts"],
                       code_order(dense, np.array(sizes, dtype=np.int64)), strict=True))  # fmt: skip
        for name, expected in _reference(dense, sizes).items():
            assert np.array_equal(got[name], expected), name


def _grouped(symbols: np.ndarray, contexts: np.ndarray) -> np.ndarray:
    """A pass's symbols as the coder sends them: context 0's in order, then 1's, ..."""
    return symbols[np.argsort(contexts, kind="stable")].astype(np.int32)


@pytest.mark.parametrize("count", [1, 2, 7, 100, 4096])
def test_the_decoder_finds_each_band_from_the_one_before(count: int) -> None:
    """even_pass, odd_pass, band_symbols and band_levels, one band at a time, as the decoder
    calls them, against the reference rules."""
    sizes = band_sizes(ResidualSpec("bior4.4", 5), count)
    dense = np.rint(np.random.default_rng(1).laplace(0, 20.0, sum(sizes))).astype(np.int64)
    bands = np.split(dense, np.cumsum(sizes)[:-1])
    for i, band in enumerate(bands):
        parent = bands[i - 1] if i else band[:0]
        reference = _parent(parent, band.size, i == 1)
        even_contexts, counts, odd_parents = even_pass(parent, band.size, i == 1)
        assert np.array_equal(even_contexts, reference[0::2])
        assert np.array_equal(counts, np.bincount(even_contexts, minlength=CONTEXTS))
        evens, odds = _symbols(band[0::2]), _symbols(band[1::2])
        got_evens, odd_contexts, odd_counts = odd_pass(
            even_contexts, counts, _grouped(evens, even_contexts), odd_parents, i == 0
        )
        expected = _odd(band[0::2], None if i == 0 else reference[1::2], band.size // 2)
        assert np.array_equal(got_evens, evens)
        assert np.array_equal(odd_contexts, expected)
        assert np.array_equal(odd_counts, np.bincount(expected, minlength=CONTEXTS))
        got_odds, escapes = band_symbols(
            odd_contexts, odd_counts, _grouped(odds, odd_contexts), evens
        )
        assert np.array_equal(got_odds, odds)
        in_pass_order = np.concatenate([band[0::2], band[1::2]])
        excess = np.abs(in_pass_order[np.abs(in_pass_order) > MAGNITUDES]) - MAGNITUDES - 1
        assert escapes == excess.size
        assert np.array_equal(band_levels(evens, odds, excess), band)


def test_coefficients_must_fill_their_bands() -> None:
    """The compiled loops read the bands where the sizes say: a mismatch is refused first."""
    with pytest.raises(InvalidInputError, match="2 residual coefficients for bands of 8"):
        Coefficients(np.array([1, 2]), (4, 4))


def test_an_empty_block() -> None:
    symbols, values, ends, excess, _, counts = code_order(
        np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    )
    assert symbols.size == values.size == ends.size == excess.size == counts.size == 0


def _rd_reference(scaled: np.ndarray, sizes: tuple[int, ...], costs: np.ndarray,
                  slope: float) -> np.ndarray:  # fmt: skip
    """Each coefficient in coding order (band by band, its evens, then its odds): its rounded
    level, or the level one nearer zero where (scaled - level)^2 + slope * bits is lower, its
    bits those of its symbol under its context's row, the context found by the rules above from
    the levels chosen before it; zeros and escapes kept."""
    out = np.rint(scaled).astype(np.int64)
    bounds = np.concatenate([[0], np.cumsum(sizes)]).astype(int)

    def pick(j: int, band: int, context: int) -> int:
        level = int(out[j])
        if level == 0 or abs(level) > MAGNITUDES:
            return level
        row = costs[band, context]
        cost = [(scaled[j] - v) ** 2 + slope * row[_symbols(np.array([v]))[0]]
                for v in (level, level - np.sign(level))]  # fmt: skip
        return level - int(np.sign(level)) if cost[1] < cost[0] else level

    for i, size in enumerate(sizes):
        a = bounds[i]
        parent = _parent(out[bounds[i - 1] : a] if i else out[:0], size, i == 1)
        for k in range(0, size, 2):
            out[a + k] = pick(a + k, i, parent[k])
        odd = _odd(out[a : a + size : 2], None if i == 0 else parent[1::2], size // 2)
        for k in range(1, size, 2):
            out[a + k] = pick(a + k, i, odd[k // 2])
    return out


def _blocks(mitdb100: np.ndarray, count: int) -> list[np.ndarray]:
    x = mitdb100 / 200.0 / 0.38  # mV, then about the ecg model's units
    return [x[s : s + count] for s in range(0, x.size - count + 1, count)]


@pytest.mark.parametrize("count", [7, 100, 4096])
def test_the_rate_distortion_quantizer_follows_the_coding_order(
    mitdb100: np.ndarray, count: int
) -> None:
    """quantized_order against the reference, on real coefficients under the shipped tables and on
    Laplace noise (escapes included) under the fallback rows, at steps fine to coarse."""
    spec = ResidualSpec("bior4.4", 5)
    sizes = band_sizes(spec, count)
    tables = load_bundle(SHIPPED).manifest.codebook.tables
    transform = WaveletTransform(spec)
    cases = [(transform.forward(b), tables) for b in _blocks(mitdb100, count)[:3]]
    cases.append((np.random.default_rng(count).laplace(0, 30.0, sum(sizes)), CodingTables()))
    for coefficients, t in cases:
        for step_exp in (-24, -6, 12):
            step = 2.0 ** (step_exp / 8)
            scaled, costs = coefficients / step, t.band_costs(step_exp, len(sizes))
            expected = _rd_reference(scaled, sizes, costs, rd_lambda(1.0))
            levels, order = quantized_order(np.rint(scaled).astype(np.int32),
                                            np.array(sizes, dtype=np.int64), coefficients, step,
                                            costs, rd_lambda(1.0))  # fmt: skip
            assert np.array_equal(levels, expected)
            reference = _reference(expected, sizes)  # and ordered as code_order orders them
            for name, got in zip(reference, order, strict=True):
                assert np.array_equal(got, reference[name]), name
            estimate = quantize_residual(coefficients, sizes, t, step_exp)
            assert np.array_equal(estimate.levels, expected)
            assert estimate.bits == estimate_residual(expected, sizes, t, step_exp).bits


def test_the_quantizer_buys_fidelity_cheaper_than_rounding(mitdb100: np.ndarray) -> None:
    """On every block of a real record, at steps fine to coarse, the coder's levels cost less
    distortion + lambda * bits (the coder's own estimate, contexts and escapes counted) than the
    nearest levels do, and fewer bits."""
    spec = ResidualSpec("bior4.4", 5)
    tables = load_bundle(SHIPPED).manifest.codebook.tables
    transform = WaveletTransform(spec)
    for block in _blocks(mitdb100, 4096):
        coefficients, sizes = transform.forward(block), band_sizes(spec, block.size)
        for step_exp in (-24, -6, 12):
            step = 2.0 ** (step_exp / 8)
            costs = []
            for levels in (np.rint(coefficients / step).astype(np.int64),
                           quantize_residual(coefficients, sizes, tables, step_exp).levels):  # fmt: skip
                bits = estimate_residual(levels, sizes, tables, step_exp).bits
                error = float(np.sum((coefficients - levels * step) ** 2))
                costs.append((error + rd_lambda(step) * bits, bits))
            assert costs[1][0] < costs[0][0]
            assert costs[1][1] < costs[0][1]
