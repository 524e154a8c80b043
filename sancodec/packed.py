"""The packed channel code (`EntropyCoder.PACKED`): one channel's SAN and residual layers,
side information included, in a single range code.

The other coders write each layer apart, inside protobuf messages: on a 2048-sample ECG block
their steps, counts, field tags, lengths and range-coder flushes take about 30 bytes, a third of
the whole code at PRDN 15 %. Here every field is a binarized value of `sancodec.binary_stream`'s
range coder, with adaptive contexts of its own, and the code ends with a lean flush. In order:

1. SAN layer: step_exp, scale_exp, offset_level (signed: zigzag, then Exp-Golomb), the spike
   count n, then the n spikes by rising (position, kernel id): the gap to the previous spike's
   position (the first counts from start_sample − 1, so it is at least 1; a gap of 0 needs a
   larger kernel id), the kernel id, and the level (|level| − 1, then one equiprobable sign bit);
2. one bin, 1 when a residual layer follows;
3. residual layer: step_exp (signed), the coefficient count m, then its m (gap, level) entries
   exactly as `encode_binary` codes them, with the same bands and contexts.

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

__all__ = ["PackedCode", "decode_packed", "encode_packed"]

# context groups, each MAX_BIN + 1 bins; the residual's 2 per band follow them
SAN_STEP, SAN_SCALE, SAN_OFFSET, SPIKES, GAP, KERNEL, LEVEL, HAS_RESIDUAL = range(8)
RESIDUAL_STEP, RESIDUAL_COUNT = 8, 9
FIELD_GROUPS = 10
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


def encode_packed(code: PackedCode, start: int, count: int) -> bytes:
    """Code a channel's layers within the block [start, start + count)."""
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
        residual = layer_values(code.residual[1], code.residual[2], 0, bands)

    probs, enc = probabilities(FIELD_GROUPS + 2 * len(bands)), RangeEncoder()
    put(enc, probs, _base(SAN_STEP), zigzag(code.san_step_exp))
    put(enc, probs, _base(SAN_SCALE), zigzag(code.scale_exp))
    put(enc, probs, _base(SAN_OFFSET), zigzag(code.offset_level))
    put(enc, probs, _base(SPIKES), int(pos.size))
    previous = start - 1
    for p, k, level in zip(pos.tolist(), ids.tolist(), lv.tolist(), strict=True):
        put(enc, probs, _base(GAP), p - previous)
        put(enc, probs, _base(KERNEL), k)
        put_level(enc, probs, _base(LEVEL), level)
        previous = p
    enc.bit(probs, _base(HAS_RESIDUAL), 0 if residual is None else 1)
    if code.residual is not None and residual is not None:
        put(enc, probs, _base(RESIDUAL_STEP), zigzag(code.residual[0]))
        put(enc, probs, _base(RESIDUAL_COUNT), int(residual.levels.size))
        put_entries(enc, probs, FIELD_GROUPS, residual, len(bands))
    return enc.finish(lean=True)


def _count(dec: RangeDecoder, probs: list[int], group: int, size: int, what: str) -> int:
    """A value count, bounded by the code's size (every value sends one whole sign bit) and by
    MAX_VALUES."""
    n = get(dec, probs, _base(group))
    if n > min(MAX_VALUES, 8 * (size + LEAN_PADDING) + 32):
        raise CorruptCodeError(f"{n} {what} cannot fit in {size} bytes")
    return n


def decode_packed(data: bytes, start: int, count: int) -> PackedCode:
    """The inverse of encode_packed; CorruptCodeError for anything that does not decode exactly.
    Value ranges (steps, levels) are left to the layers' own checks."""
    bands = dyadic_bands(count)
    end = start + count
    probs, dec = probabilities(FIELD_GROUPS + 2 * len(bands)), RangeDecoder(data, lean=True)
    san_step = unzigzag(get(dec, probs, _base(SAN_STEP)))
    scale = unzigzag(get(dec, probs, _base(SAN_SCALE)))
    offset = unzigzag(get(dec, probs, _base(SAN_OFFSET)))
    spikes = _count(dec, probs, SPIKES, len(data), "spikes")
    ids, positions, levels = [], [], []
    previous, previous_id = start - 1, -1
    for _ in range(spikes):
        gap = get(dec, probs, _base(GAP))
        kernel = get(dec, probs, _base(KERNEL))
        if not start <= previous + gap < end or kernel > MAX_KERNEL_ID:
            raise CorruptCodeError(
                f"spike at {previous + gap} (kernel {kernel}) lies beyond its block"
            )
        if gap == 0 and kernel <= previous_id:
            raise CorruptCodeError("spikes at one position must come by rising kernel id")
        previous, previous_id = previous + gap, kernel
        ids.append(kernel)
        positions.append(previous)
        levels.append(get_level(dec, probs, _base(LEVEL)))
    residual = None
    if dec.bit(probs, _base(HAS_RESIDUAL)):
        step = unzigzag(get(dec, probs, _base(RESIDUAL_STEP)))
        count = _count(dec, probs, RESIDUAL_COUNT, len(data), "coefficients")
        indices, coefficients = get_entries(dec, probs, FIELD_GROUPS, count, bands)
        residual = (step, np.array(indices, dtype=np.int64), np.array(coefficients, dtype=np.int64))
    dec.finish()

    def array(values: list[int]) -> npt.NDArray[np.int64]:
        return np.array(values, dtype=np.int64)

    return PackedCode(
        san_step, scale, offset, array(ids), array(positions), array(levels), residual
    )
