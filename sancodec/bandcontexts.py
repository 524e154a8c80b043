"""The residual's per-coefficient loops, compiled with numba: contexts, symbols, coding groups.

A band's contexts follow the rules of docs/sanc-format.md (`band_contexts`, `odd_contexts`). The
decoder applies them band by band, pass by pass, since they depend on what it decoded before;
the encoder, which knows every coefficient, applies the very same functions to a whole block in
one call (`code_order`). Every loop here runs per coefficient, where NumPy would take dozens of
calls per band (`compiled`).
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sancodec.compiled import compiled
from sancodec.entropy import MAGNITUDES, SYMBOLS
from sancodec.tables import CONTEXTS

__all__ = [
    "band_contexts",
    "band_levels",
    "band_symbols",
    "code_order",
    "even_pass",
    "odd_contexts",
    "odd_pass",
    "quantized_order",
]

Ints = npt.NDArray[np.int64]
Symbols = npt.NDArray[np.int32]

_ESCAPE = 2 * MAGNITUDES + 1  # +escape; -escape is one more


@compiled
def _context_class(magnitude: int) -> int:
    """0 | 1-2 | 3-5 | 6-11 | 12+"""
    if magnitude < 1:
        return 0
    if magnitude < 3:
        return 1
    if magnitude < 6:
        return 2
    if magnitude < 12:
        return 3
    return 4


@compiled
def _symbol(value: int) -> int:
    m = abs(value)
    if m > MAGNITUDES:
        return _ESCAPE if value > 0 else _ESCAPE + 1
    return 2 * m - 1 if value > 0 else 2 * m


@compiled
def band_contexts(parent: Ints, size: int, parent_is_approximation: bool) -> tuple[Ints, Ints]:
    """The parent contexts of a band of `size` coefficients, (its evens', its odds'), from the
    levels of the band one coarser (none for the approximation: all 0). Coefficient j's parent
    is p = min(j * P // size, P - 1) of the P parent levels; its magnitude 2|p| + |p-1| + |p+1|
    (neighbours clamped), or |p+1 - p-1| where the parent is the approximation."""
    evens = np.zeros((size + 1) // 2, dtype=np.int64)
    odds = np.zeros(size // 2, dtype=np.int64)
    count = parent.size
    if count == 0:
        return evens, odds
    classes = np.empty(count, dtype=np.int64)  # each parent's, found once for its children
    for p in range(count):
        left, right = parent[max(p - 1, 0)], parent[min(p + 1, count - 1)]
        if parent_is_approximation:
            classes[p] = _context_class(abs(right - left))
        else:
            classes[p] = _context_class(2 * abs(parent[p]) + abs(left) + abs(right))
    below, over = 0, 0  # j * count // size and the remainder, kept without a division
    for j in range(size):
        c = classes[min(below, count - 1)]
        if j % 2 == 0:
            evens[j // 2] = c
        else:
            odds[j // 2] = c
        over += count
        while over >= size:
            over -= size
            below += 1
    return evens, odds


@compiled
def odd_contexts(even_symbols: Ints, parent_contexts: Ints, approximation: bool) -> Ints:
    """The contexts of a band's odd coefficients from its even ones' symbols: odd j lies between
    evens j and j + 1 (the last even twice), n = their magnitudes' sum (an escape's is K + 1). In
    the approximation its context is n's class; in a detail band its parent context, one lower
    when n is 0 and one higher when n is 3 or more."""
    count, evens = parent_contexts.size, even_symbols.size
    out = np.empty(count, dtype=np.int64)
    for j in range(count):
        n = (even_symbols[j] + 1) // 2 + (even_symbols[min(j + 1, evens - 1)] + 1) // 2
        if approximation:
            out[j] = _context_class(n)
        elif n == 0:
            out[j] = max(parent_contexts[j] - 1, 0)
        elif n >= 3:
            out[j] = min(parent_contexts[j] + 1, CONTEXTS - 1)
        else:
            out[j] = parent_contexts[j]
    return out


@compiled
def _counts(contexts: Ints) -> Ints:
    counts = np.zeros(CONTEXTS, dtype=np.int64)
    for c in contexts:
        counts[c] += 1
    return counts


@compiled
def _scatter(contexts: Ints, counts: Ints, grouped: Symbols) -> Ints:
    """A pass's symbols in place from their groups (context 0's in order, then 1's, ...);
    `counts`: how many of the contexts are each."""
    next_of = np.zeros(CONTEXTS, dtype=np.int64)
    for c in range(1, CONTEXTS):
        next_of[c] = next_of[c - 1] + counts[c - 1]
    out = np.empty(contexts.size, dtype=np.int64)
    for i in range(contexts.size):
        c = contexts[i]
        out[i] = grouped[next_of[c]]
        next_of[c] += 1
    return out


@compiled
def even_pass(parent: Ints, size: int, parent_is_approximation: bool) -> tuple[Ints, Ints, Ints]:
    """The decoder's first pass of a band, before it is decoded: (its contexts, how many have
    each, the odd coefficients' parent contexts), from the levels of the band one coarser."""
    evens, odd_parents = band_contexts(parent, size, parent_is_approximation)
    return evens, _counts(evens), odd_parents


@compiled
def odd_pass(even_contexts: Ints, even_counts: Ints, even_groups: Symbols, odd_parents: Ints,
             approximation: bool) -> tuple[Ints, Ints, Ints]:  # fmt: skip
    """The first pass decoded (`even_groups`: its symbols group by group, as coded), and the
    second one before it is: (the even symbols in place, the odd contexts, how many have each)."""
    evens = _scatter(even_contexts, even_counts, even_groups)
    odds = odd_contexts(evens, odd_parents, approximation)
    return evens, odds, _counts(odds)


@compiled
def band_symbols(odd_contexts: Ints, odd_counts: Ints, odd_groups: Symbols,
                 evens: Ints) -> tuple[Ints, int]:  # fmt: skip
    """The second pass decoded: (the odd symbols in place, the band's escape count)."""
    odds = _scatter(odd_contexts, odd_counts, odd_groups)
    n = 0
    for s in evens:
        n += s >= _ESCAPE
    for s in odds:
        n += s >= _ESCAPE
    return odds, n


@compiled
def band_levels(evens: Ints, odds: Ints, excess: Ints) -> Ints:
    """A band's signed levels from its two passes' symbols and its escapes' excess (in pass
    order: |v| = K + 1 + excess)."""
    band = np.empty(evens.size + odds.size, dtype=np.int64)
    e = 0
    for k in range(band.size):
        s = evens[k] if k < evens.size else odds[k - evens.size]
        m = (s + 1) // 2
        if s >= _ESCAPE:
            m = MAGNITUDES + 1 + excess[e]
            e += 1
        where = 2 * k if k < evens.size else 2 * (k - evens.size) + 1
        band[where] = m if s % 2 == 1 else -m
    return band


Order = tuple[npt.NDArray[np.int32], Ints, Ints, Ints, Ints, Ints]
_NO_VALUES = np.zeros(0)
_NO_COSTS = np.zeros((0, 0, 0))


def code_order(dense: Ints, sizes: Ints) -> Order:
    """A block's coefficients (flat, coarsest band first) as the coder codes them, under the
    decoder's own context rules: (symbols and values grouped by band, pass and context, each
    group in coding order; the groups' ends, (bands x 2 x CONTEXTS) flat; the escapes' excess
    in coding order; each band's end in it; how often each (band, context, symbol) occurs,
    (bands x CONTEXTS x SYMBOLS) flat)."""
    return _ordered(dense, sizes, _NO_VALUES, 1.0, _NO_COSTS, 0.0, False)[1:]


def quantized_order(rounded: npt.NDArray[np.int32], sizes: Ints, values: npt.NDArray[np.float64],
                    step: float, costs: npt.NDArray[np.float64],
                    slope: float) -> tuple[Ints, Order]:  # fmt: skip
    """Rate-distortion quantization of a block's coefficients (`values`, flat, coarsest band
    first; `rounded`: rint(values / step), their nearest levels), and code_order of the levels
    chosen: (the levels, code_order). Each level is kept, or moved one nearer zero where that
    lowers its squared error (in steps^2) + slope * its bits: those of its symbol under the row
    of its context (`costs`: CodingTables.band_costs, (bands, CONTEXTS, SYMBOLS)), found in
    coding order from the levels chosen before it, as the decoder finds them (what a level does
    to the contexts after it is not weighed). Zeros and escapes stay."""
    out = _ordered(rounded.astype(np.int64), sizes, values, step, costs, slope, True)
    return out[0], out[1:]


@compiled
def _cheaper(scaled: float, level: int, costs: npt.NDArray[np.float64], slope: float) -> int:
    """level, or one nearer zero where that lowers (scaled - level)^2 + slope * bits (bits: its
    symbol's under `costs`, one row); zero and escapes stay."""
    if level == 0 or abs(level) > MAGNITUDES:
        return level
    nearer = level - 1 if level > 0 else level + 1
    kept = (scaled - level) ** 2 + slope * costs[_symbol(level)]
    moved = (scaled - nearer) ** 2 + slope * costs[_symbol(nearer)]
    return nearer if moved < kept else level


@compiled
def _ordered(dense: Ints, sizes: Ints, values: npt.NDArray[np.float64], step: float,
             costs: npt.NDArray[np.float64], slope: float,
             quantize: bool) -> tuple[Ints, npt.NDArray[np.int32], Ints, Ints, Ints, Ints, Ints]:  # fmt: skip
    """(dense, *code_order of it); with `quantize`, each level of `dense` first moved (in place)
    as quantized_order moves it, just before it is ordered."""
    bands, n = sizes.size, dense.size
    key = np.empty(n, dtype=np.int64)  # (2 band + pass) CONTEXTS + context, in coding order
    symbol = np.empty(n, dtype=np.int32)
    value = np.empty(n, dtype=np.int64)
    counts = np.zeros(bands * CONTEXTS * SYMBOLS, dtype=np.int64)
    excess = np.empty(n, dtype=np.int64)
    escape_ends = np.empty(bands, dtype=np.int64)
    at, start, escapes = 0, 0, 0
    for i in range(bands):
        size = sizes[i]
        band = dense[start : start + size]
        parent = dense[start - sizes[i - 1] : start] if i > 0 else dense[:0]
        evens, odds = band_contexts(parent, size, i == 1)
        even_symbols = np.empty(evens.size, dtype=np.int64)
        for k in range(evens.size):
            if quantize:
                j = start + 2 * k
                band[2 * k] = _cheaper(values[j] / step, band[2 * k], costs[i, evens[k]], slope)
            even_symbols[k] = _symbol(band[2 * k])
        odd = odd_contexts(even_symbols, odds, i == 0)
        for k in range(size):
            first = k < evens.size
            where = 2 * k if first else 2 * (k - evens.size) + 1
            c = evens[k] if first else odd[k - evens.size]
            if quantize and not first:
                band[where] = _cheaper(values[start + where] / step, band[where], costs[i, c],
                                       slope)  # fmt: skip
            v = band[where]
            s = even_symbols[k] if first else _symbol(v)
            key[at], symbol[at], value[at] = (2 * i + (0 if first else 1)) * CONTEXTS + c, s, v
            counts[(i * CONTEXTS + c) * SYMBOLS + s] += 1
            if s >= _ESCAPE:
                excess[escapes] = abs(v) - MAGNITUDES - 1
                escapes += 1
            at += 1
        escape_ends[i] = escapes
        start += size
    grouped_symbols, grouped_values, ends = _grouped(key, symbol, value, 2 * bands * CONTEXTS)
    return dense, grouped_symbols, grouped_values, ends, excess[:escapes], escape_ends, counts


@compiled
def _grouped(key: Ints, symbol: Symbols, value: Ints,
             groups: int) -> tuple[Symbols, Ints, Ints]:  # fmt: skip
    """Symbols and values sorted by key, stably (a counting sort), and each key's end."""
    ends = np.zeros(groups, dtype=np.int64)
    for group in key:
        ends[group] += 1
    for g in range(1, groups):
        ends[g] += ends[g - 1]
    place = np.empty(groups, dtype=np.int64)
    for g in range(groups):
        place[g] = ends[g - 1] if g > 0 else 0
    grouped_symbols = np.empty(key.size, dtype=np.int32)
    grouped_values = np.empty(key.size, dtype=np.int64)
    for j in range(key.size):
        p = place[key[j]]
        grouped_symbols[p], grouped_values[p] = symbol[j], value[j]
        place[key[j]] = p + 1
    return grouped_symbols, grouped_values, ends
