"""The packed channel code (`EntropyCoder.PACKED`): one channel's SAN and residual layers,
side information included, in a single range code.

The other coders write each layer apart, inside protobuf messages: on a 2048-sample ECG block
their steps, counts, field tags, lengths and range-coder flushes take about 30 bytes, a third of
the whole code at PRDN 15 %. Here every field is a binarized value of `sancodec.binary_stream`'s
range coder, with adaptive contexts of its own, and the code ends with a lean flush. In order:

1. SAN layer: step_exp, scale_exp, offset_level (signed: zigzag, then Exp-Golomb), the spike
   count n; in layout 2 one bin, 1 when the spikes are coded relative (below); then the n spikes
   by rising (position, kernel id). Plain: the gap to the previous spike's position (the first
   counts from start_sample − 1, so it is at least 1; a gap of 0 needs a larger kernel id), the
   kernel id, and the level (|level| − 1, then one equiprobable sign bit). Relative: the kernel
   id first; then, from the kernel's third spike in the block on, its position minus the
   previous one's and that spike's interval to the one before (zigzag), else the plain gap; then,
   from its second spike on, its level minus the previous one's (zigzag), else the plain level.
   A regular rhythm's beats then cost a few bits each;
2. one bin, 1 when a residual layer follows;
3. residual layer: step_exp (signed), the coefficient count m, then its m (gap, level) entries
   exactly as `encode_binary` codes them, with the same bands and contexts.

Layout 1 is `ChannelCode.packed` (format version 2), layout 2 `ChannelCode.packed2` (version 3),
whose encoder codes the spikes both ways and keeps the shorter code.
Every value, sign bit and bin is as in `binary_stream`; each field (and each residual band) has
its own context group, all fresh per channel code, so blocks stay independent. The decoder must
end exactly on the code's last byte plus the 3 zero bytes the lean flush leaves out; anything
else raises CorruptCodeError.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from sancodec.binary_stream import (
    LEAN_PADDING,
    MAX_BIN,
    RangeDecoder,
    RangeEncoder,
    get,
    get_entries,
    get_level,
    probabilities,
    put,
    put_entries,
    put_level,
    unzigzag,
    zigzag,
)
from sancodec.errors import CorruptCodeError
from sancodec.sparse_stream import MAX_LEVEL, dyadic_bands, layer_values

__all__ = ["LAYOUTS", "PackedCode", "decode_packed", "encode_packed"]

# context groups, each MAX_BIN + 1 bins; the residual's 2 per band follow them
SAN_STEP, SAN_SCALE, SAN_OFFSET, SPIKES, GAP, KERNEL, LEVEL, HAS_RESIDUAL = range(8)
RESIDUAL_STEP, RESIDUAL_COUNT = 8, 9
RELATIVE, GAP_RELATIVE, LEVEL_RELATIVE = 10, 11, 12  # layout 2 only
FIELD_GROUPS = {1: 10, 2: 13}  # per layout
LAYOUTS = (1, 2)
MAX_KERNEL_ID = 2**31 - 1
MAX_VALUES = 1 << 24  # spikes or coefficients in one layer of one block
Ints = npt.NDArray[np.integer[Any]]


@dataclass(frozen=True)
class PackedCode:
    """The plain values of one channel code, as encode_packed takes and decode_packed gives."""

    san_step_exp: int
    scale_exp: int
    offset_level: int
    kernel_ids: Ints
    positions: Ints  # absolute sample positions
    levels: Ints
    residual: tuple[int, Ints, Ints] | None  # step_exp, indices, levels


def _base(group: int) -> int:
    return group * (MAX_BIN + 1)


def encode_packed(
    code: PackedCode, start: int, count: int, layout: int = 2, relative: bool | None = None
) -> bytes:
    """Code a channel's layers within the block [start, start + count). Layout 2 (`packed2`)
    codes its spikes relative where that is shorter (_relative_is_shorter), or as `relative`
    asks."""
    bands = dyadic_bands(count)  # the residual's, which run 64 past the block for odd lengths
    end = start + count
    ids = np.asarray(code.kernel_ids, dtype=np.int64)
    pos = np.asarray(code.positions, dtype=np.int64)
    lv = np.asarray(code.levels, dtype=np.int64)
    if not ids.size == pos.size == lv.size:
        raise CorruptCodeError("kernel ids, positions and levels differ in length")
    order = np.lexsort((ids, pos))
    ids, pos, lv = ids[order], pos[order], lv[order]
    if pos.size and (
        pos[0] < start or pos[-1] >= end or ids.min() < 0 or ids.max() > MAX_KERNEL_ID
    ):
        raise CorruptCodeError("a spike lies outside its block, or has a bad kernel id")
    if np.any((np.diff(pos) == 0) & (np.diff(ids) == 0)) or np.any(lv == 0):
        raise CorruptCodeError("a kernel spikes twice at one position, or with a zero level")
    if np.any(np.abs(lv) > MAX_LEVEL):
        raise CorruptCodeError("a spike level is too large to code")
    residual = None
    if code.residual is not None:
        residual = code.residual[0], layer_values(code.residual[1], code.residual[2], 0, bands)
    spikes = list(zip(pos.tolist(), ids.tolist(), lv.tolist(), strict=True))
    if layout not in LAYOUTS:
        raise ValueError(f"packed layout must be one of {LAYOUTS}, got {layout}")
    if layout == 1 and relative:
        raise ValueError("layout 1 codes no relative spikes")
    if layout == 2 and relative is None:
        relative = _relative_is_shorter(spikes, start)

    probs, enc = probabilities(FIELD_GROUPS[layout] + 2 * len(bands)), RangeEncoder()
    put(enc, probs, _base(SAN_STEP), zigzag(code.san_step_exp))
    put(enc, probs, _base(SAN_SCALE), zigzag(code.scale_exp))
    put(enc, probs, _base(SAN_OFFSET), zigzag(code.offset_level))
    put(enc, probs, _base(SPIKES), len(spikes))
    if layout == 2:
        enc.bit(probs, _base(RELATIVE), int(bool(relative)))
    (_put_relative if relative else _put_gaps)(enc, probs, spikes, start)
    enc.bit(probs, _base(HAS_RESIDUAL), 0 if residual is None else 1)
    if residual is not None:
        step_exp, values = residual
        put(enc, probs, _base(RESIDUAL_STEP), zigzag(step_exp))
        put(enc, probs, _base(RESIDUAL_COUNT), int(values.levels.size))
        put_entries(enc, probs, FIELD_GROUPS[layout], values, len(bands))
    return enc.finish(lean=True)


def _relative_is_shorter(spikes: list[tuple[int, int, int]], start: int) -> bool:
    """Code the spikes alone both ways and compare. The other fields, the residual's entries
    above all, have contexts of their own and cost the same bits either way, so they are coded
    once; a tie (within the last byte) stays plain."""
    if len(spikes) < 2:
        return False
    sizes = []
    for put_spikes in (_put_gaps, _put_relative):
        probs, enc = probabilities(FIELD_GROUPS[2]), RangeEncoder()
        try:
            put_spikes(enc, probs, spikes, start)
        except _TooFarError:
            return False
        sizes.append(len(enc.finish(lean=True)))
    return sizes[1] < sizes[0]


def _put_gaps(enc: RangeEncoder, probs: list[int], spikes: list[tuple[int, int, int]],
              start: int) -> None:  # fmt: skip
    """Each spike as its gap to the previous one, its kernel id and its level."""
    previous = start - 1
    for p, k, level in spikes:
        put(enc, probs, _base(GAP), p - previous)
        put(enc, probs, _base(KERNEL), k)
        put_level(enc, probs, _base(LEVEL), level)
        previous = p


def _put_relative(enc: RangeEncoder, probs: list[int], spikes: list[tuple[int, int, int]],
                  start: int) -> None:  # fmt: skip
    """Each spike as its kernel id, then its position and level relative to that kernel's
    previous spikes where it has them (_Rhythm)."""
    previous, rhythms = start - 1, dict[int, _Rhythm]()
    for p, k, level in spikes:
        put(enc, probs, _base(KERNEL), k)
        rhythm = rhythms.get(k)
        if rhythm is not None and rhythm.interval is not None:
            put(enc, probs, _base(GAP_RELATIVE), _near(p - rhythm.predicted))
        else:
            put(enc, probs, _base(GAP), p - previous)
        if rhythm is not None:
            put(enc, probs, _base(LEVEL_RELATIVE), _near(level - rhythm.level))
        else:
            put_level(enc, probs, _base(LEVEL), level)
        rhythms[k] = _Rhythm.after(rhythm, p, level)
        previous = p


def _near(difference: int) -> int:
    if abs(difference) >= 1 << 31:
        raise _TooFarError("relative spike values beyond ±2^31: code these spikes plainly")
    return zigzag(difference)


class _TooFarError(CorruptCodeError):
    """A relative value of 2^31 or more (levels ±2^31 apart, a rhythm far past its block): a
    decoder refuses Exp-Golomb values of 2^33 and more, so such spikes are coded plainly."""


@dataclass(frozen=True)
class _Rhythm:
    """A kernel's last spike in the block: its position, its level and the interval from the
    spike before it (None after the kernel's first spike)."""

    position: int
    level: int
    interval: int | None

    @property
    def predicted(self) -> int:
        assert self.interval is not None
        return self.position + self.interval

    @staticmethod
    def after(rhythm: _Rhythm | None, position: int, level: int) -> _Rhythm:
        return _Rhythm(position, level, None if rhythm is None else position - rhythm.position)


def _count(dec: RangeDecoder, probs: list[int], group: int, size: int, what: str) -> int:
    """A value count, bounded by the code's size (every value sends one whole sign bit) and by
    MAX_VALUES."""
    n = get(dec, probs, _base(group))
    if n > min(MAX_VALUES, 8 * (size + LEAN_PADDING) + 32):
        raise CorruptCodeError(f"{n} {what} cannot fit in {size} bytes")
    return n


def decode_packed(data: bytes, start: int, count: int, layout: int = 2) -> PackedCode:
    """The inverse of encode_packed; CorruptCodeError for anything that does not decode exactly.
    Value ranges (steps, levels) are left to the layers' own checks."""
    if layout not in LAYOUTS:
        raise ValueError(f"packed layout must be one of {LAYOUTS}, got {layout}")
    bands = dyadic_bands(count)
    end = start + count
    groups = FIELD_GROUPS[layout]
    probs, dec = probabilities(groups + 2 * len(bands)), RangeDecoder(data, lean=True)
    san_step = unzigzag(get(dec, probs, _base(SAN_STEP)))
    scale = unzigzag(get(dec, probs, _base(SAN_SCALE)))
    offset = unzigzag(get(dec, probs, _base(SAN_OFFSET)))
    spikes = _count(dec, probs, SPIKES, len(data), "spikes")
    relative = layout == 2 and dec.bit(probs, _base(RELATIVE)) == 1
    ids, positions, levels = _get_spikes(dec, probs, spikes, start, end, relative)
    residual = None
    if dec.bit(probs, _base(HAS_RESIDUAL)):
        step = unzigzag(get(dec, probs, _base(RESIDUAL_STEP)))
        count = _count(dec, probs, RESIDUAL_COUNT, len(data), "coefficients")
        indices, coefficients = get_entries(dec, probs, groups, count, bands)
        residual = (step, np.array(indices, dtype=np.int64), np.array(coefficients, dtype=np.int64))
    dec.finish()

    def array(values: list[int]) -> npt.NDArray[np.int64]:
        return np.array(values, dtype=np.int64)

    return PackedCode(
        san_step, scale, offset, array(ids), array(positions), array(levels), residual
    )


def _get_spikes(dec: RangeDecoder, probs: list[int], n: int, start: int, end: int,
                relative: bool) -> tuple[list[int], list[int], list[int]]:  # fmt: skip
    """n spikes (_put_gaps or _put_relative) as kernel ids, positions and levels."""
    ids, positions, levels = [], [], []
    previous, previous_id = start - 1, -1
    rhythms: dict[int, _Rhythm] = {}
    for _ in range(n):
        rhythm = None
        if relative:
            kernel = get(dec, probs, _base(KERNEL))
            rhythm = rhythms.get(kernel)
            if rhythm is not None and rhythm.interval is not None:
                position = rhythm.predicted + unzigzag(get(dec, probs, _base(GAP_RELATIVE)))
            else:
                position = previous + get(dec, probs, _base(GAP))
        else:
            position = previous + get(dec, probs, _base(GAP))
            kernel = get(dec, probs, _base(KERNEL))
        if not start <= position < end or kernel > MAX_KERNEL_ID:
            raise CorruptCodeError(f"spike at {position} (kernel {kernel}) lies beyond its block")
        if position < previous or (position == previous and kernel <= previous_id):
            raise CorruptCodeError("spikes must come by rising position, then kernel id")
        if rhythm is not None:
            level = rhythm.level + unzigzag(get(dec, probs, _base(LEVEL_RELATIVE)))
            if level == 0 or abs(level) > MAX_LEVEL:
                raise CorruptCodeError(f"spike level {level} is zero or beyond ±2^31")
        else:
            level = get_level(dec, probs, _base(LEVEL))
        if relative:
            rhythms[kernel] = _Rhythm.after(rhythm, position, level)
        previous, previous_id = position, kernel
        ids.append(kernel)
        positions.append(position)
        levels.append(level)
    return ids, positions, levels
