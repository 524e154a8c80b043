"""One channel's code in one block as one range code: its layers, their side information, all of it.

In order (docs/sanc-format.md): `layers` (1 with a residual layer), the SAN step and the block
offset, the spike count of every kernel; each kernel's first spike, its second spike's interval,
the change of every later interval, its first level and the change of every later level (each a
whole array over the kernels at once); then, with a residual layer, its step, its row shift and its
coefficients band by band, coarsest first: each band's even-indexed coefficients (contexts from the band
before it), then its odd-indexed ones (contexts also from their even neighbours), then the band's
escapes in that order. Spikes never depend on coefficients, nor coefficients on spikes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
from google.protobuf.message import DecodeError

from sancodec.bandcontexts import band_levels, band_symbols, even_pass, odd_pass
from sancodec.codebook import Codebook, kernels_from_proto, kernels_to_proto
from sancodec.codes import MAX_SAMPLE, BlockCode, ChannelCode, ResidualLayer, SanLayer
from sancodec.coefficients import SHIFT_STEP, SHIFTS, ResidualEstimate, estimate_residual
from sancodec.compiled import compiled
from sancodec.entropy import (
    CODER_ERRORS,
    MAGNITUDES,
    Decoder,
    Encoder,
    SymbolRow,
    unzigzag_one,
    zigzag,
    zigzag_one,
)
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.quantization import LEVEL_LIMIT
from sancodec.residual import band_sizes
from sancodec.tables import CodingTables, band_class
from sancodec.v1 import codes_pb2

__all__ = [
    "block_bytes",
    "block_message",
    "decode_block",
    "decode_channel",
    "encode_block",
    "encode_channel",
    "parse_block",
    "spike_bits",
]

Ints = npt.NDArray[np.int64]
Symbols = npt.NDArray[np.int32]
# a SAN layer's fields in coding order, after "layers", "san_step" and "offset"
SPIKE_FIELDS = ("spike_count", "spike_first", "spike_interval", "spike_interval_delta",
                "spike_level", "spike_level_delta")  # fmt: skip


class _Fields:
    """Writes named integer fields under their tables (with no encoder, only adds up their ideal
    code length in `bits`); `seen` collects them when asked to (training learns the tables from
    what it collects)."""

    def __init__(
        self, enc: Encoder | None, tables: CodingTables, seen: dict[str, list[Ints]] | None = None
    ) -> None:
        self.enc, self.tables, self.seen, self.bits = enc, tables, seen, 0.0

    def put(self, name: str, values: npt.ArrayLike) -> None:
        v = np.asarray(values, dtype=np.int64)
        if self.enc is None:
            self.bits += self.tables.table(name).bits(v)
        else:
            self.enc.integers(v, self.tables.table(name))
        if self.seen is not None:
            self.seen.setdefault(name, []).append(v)


def _put_side(out: _Fields, code: ChannelCode, kernel_count: int, start: int) -> None:
    """Everything but the residual's step and coefficients: layers, SAN step, offset, spikes."""
    san, tables = code.san, out.tables
    out.put("layers", [int(code.residual is not None)])
    out.put("san_step", zigzag([san.step_exp - tables.san_step_exp]))
    out.put("offset", zigzag([san.offset_level]))
    _encode_spikes(out, san, kernel_count, start)


def spike_bits(san: SanLayer, tables: CodingTables, kernel_count: int, start: int) -> float:
    """The ideal code length of a SAN layer's spikes beyond that of no spikes at all: what the
    layer choice charges spikes with (the block offset, a few bits either way, is not charged)."""
    out = _Fields(None, tables)
    _encode_spikes(out, san, kernel_count, start)
    none = tables.table("spike_count").bits(np.zeros(kernel_count, dtype=np.int64))
    return out.bits - none


def encode_channel(code: ChannelCode, tables: CodingTables, kernel_count: int, start: int,
                   sizes: tuple[int, ...], seen: dict[str, list[Ints]] | None = None,
                   estimate: ResidualEstimate | None = None) -> bytes:  # fmt: skip
    """The range code of a channel; `sizes` are the residual transform's band sizes. With
    `seen`, every field's values are also collected there, and the residual symbols under
    "band <class> <context>" as their magnitudes. `estimate`: the residual layer's, made already
    (`coefficients.estimate_residual` of exactly its levels), so that it is not made twice."""
    enc, r = Encoder(), code.residual
    out = _Fields(enc, tables, seen)
    _put_side(out, code, kernel_count, start)
    if r is not None:
        out.put("residual_step", zigzag([r.step_exp - tables.residual_step_exp]))
        if estimate is None:
            dense = np.zeros(sum(sizes), dtype=np.int64)
            if r.indices.size and r.indices[-1] >= dense.size:
                raise InvalidInputError(
                    f"residual index {int(r.indices[-1])} beyond {dense.size} coefficients"
                )
            dense[r.indices] = r.levels
            estimate = estimate_residual(dense, sizes, tables, r.step_exp)
        coefficients, shift = estimate.coefficients, estimate.shift
        step_class = tables.step_class(r.step_exp)
        out.put("row_shift", zigzag([shift]))
        row_step = r.step_exp + SHIFT_STEP * shift
        for klass, groups, excess in coefficients.bands():
            rows = tables.step_rows(row_step, klass)
            for c, symbols, values in groups:
                enc.symbols(symbols, rows[c])
                if seen is not None:
                    seen.setdefault(f"band {step_class} {klass} {c}", []).append(np.abs(values))
            out.put("escape", excess)
    return enc.finish()


def _encode_spikes(out: _Fields, san: SanLayer, kernel_count: int, start: int) -> None:
    if san.kernel_ids.size and san.kernel_ids.max() >= kernel_count:
        raise InvalidInputError(
            f"kernel id {int(san.kernel_ids.max())} is not in a codebook of {kernel_count}"
        )
    fields = _spike_fields(san.kernel_ids, san.positions, san.levels, kernel_count, start)
    for name, values in zip(SPIKE_FIELDS, fields, strict=True):
        out.put(name, values)


@compiled
def _spike_fields(kernel_ids: npt.NDArray[np.int32], positions: Ints, levels: npt.NDArray[np.int32],
                  kernel_count: int, start: int) -> tuple[Ints, Ints, Ints, Ints, Ints, Ints]:  # fmt: skip
    """The spikes' fields, sorted by (kernel, position) as a SanLayer holds them, so each
    kernel's spikes are one run: SPIKE_FIELDS' values in order."""
    n = kernel_ids.size
    counts = np.zeros(kernel_count, dtype=np.int64)
    for k in kernel_ids:
        counts[k] += 1
    present = 0
    for c in counts:
        present += int(c > 0)
    first = np.empty(present, dtype=np.int64)
    level = np.empty(present, dtype=np.int64)
    interval = np.empty(present, dtype=np.int64)
    interval_delta = np.empty(n, dtype=np.int64)
    level_delta = np.empty(n, dtype=np.int64)
    runs, seconds, deltas, changes = 0, 0, 0, 0
    for i in range(n):
        if i == 0 or kernel_ids[i] != kernel_ids[i - 1]:  # a kernel's first spike
            first[runs], level[runs] = positions[i] - start, zigzag_one(np.int64(levels[i]))
            runs += 1
            continue
        level_delta[changes] = zigzag_one(np.int64(levels[i]) - levels[i - 1])
        changes += 1
        gap = positions[i] - positions[i - 1]
        if i == 1 or kernel_ids[i - 2] != kernel_ids[i]:  # its second
            interval[seconds] = gap - 1
            seconds += 1
        else:
            interval_delta[deltas] = zigzag_one(gap - (positions[i - 1] - positions[i - 2]))
            deltas += 1
    return (counts, first, interval[:seconds], interval_delta[:deltas], level,
            level_delta[:changes])  # fmt: skip


def decode_channel(data: bytes, channel: int, tables: CodingTables, kernel_count: int,
                   start: int, count: int, sizes: tuple[int, ...]) -> ChannelCode:  # fmt: skip
    """The inverse of encode_channel; CorruptCodeError for a code that cannot be one."""
    dec = Decoder(data)
    try:
        (has_residual,) = dec.integers(1, tables.table("layers")).tolist()
        if has_residual > 1:
            raise CorruptCodeError(f"layers value {has_residual}")
        san_step = tables.san_step_exp + _signed(dec, tables, "san_step")
        offset = _signed(dec, tables, "offset")
        san = _decode_spikes(dec, tables, kernel_count, start, count, san_step, offset)
        residual = None
        if has_residual:
            step = tables.residual_step_exp + _signed(dec, tables, "residual_step")
            shift = _signed(dec, tables, "row_shift")
            if shift not in SHIFTS:
                raise CorruptCodeError(f"row shift {shift}")
            residual = _decode_residual(dec, tables, sizes, step, step + SHIFT_STEP * shift)
        dec.finish()
        return ChannelCode(channel, san, residual)
    except InvalidInputError as exc:
        raise CorruptCodeError(f"channel {channel}: {exc}") from None
    except CODER_ERRORS as exc:  # the coder's own refusals
        raise CorruptCodeError(f"channel {channel}: the code does not decode ({exc})") from None


def _signed(dec: Decoder, tables: CodingTables, name: str) -> int:
    """One zigzag-coded field, as a Python int."""
    return int(unzigzag_one(dec.integers(1, tables.table(name))[0]))


def _decode_spikes(dec: Decoder, tables: CodingTables, kernel_count: int, start: int,
                   count: int, step_exp: int, offset: int) -> SanLayer:  # fmt: skip
    counts = dec.integers(kernel_count, tables.table("spike_count"))
    if counts.sum() > count * kernel_count:
        raise CorruptCodeError(f"{int(counts.sum())} spikes in a block of {count} samples")
    present = np.flatnonzero(counts)
    many = [n for n in counts.tolist() if n]
    fields = [
        dec.integers(n, tables.table(name))
        for name, n in zip(SPIKE_FIELDS[1:], (len(many), sum(n >= 2 for n in many),
                           sum(max(n - 2, 0) for n in many), len(many), sum(many) - len(many)),
                           strict=True)
    ]  # fmt: skip
    positions, levels = _spike_runs(counts[present], start, *fields)
    if positions.size and (positions.min() < start or positions.max() >= start + count):
        raise CorruptCodeError("a spike lies outside its block")
    if levels.size and np.abs(levels).max() >= LEVEL_LIMIT:
        raise CorruptCodeError(f"a spike level is beyond ±{LEVEL_LIMIT}")
    ids = np.repeat(present, many).astype(np.int32)
    return SanLayer(step_exp, ids, positions, levels.astype(np.int32), offset)


@compiled
def _spike_runs(many: Ints, start: int, first: Ints, interval: Ints, interval_delta: Ints,
                level: Ints, level_delta: Ints) -> tuple[Ints, Ints]:  # fmt: skip
    """The inverse of _spike_fields: each present kernel's run of positions and levels."""
    positions = np.empty(np.sum(many), dtype=np.int64)
    levels = np.empty(positions.size, dtype=np.int64)
    at, seconds, deltas, changes = 0, 0, 0, 0
    for k in range(many.size):
        p, v, gap = first[k] + start, unzigzag_one(level[k]), np.int64(0)
        for i in range(many[k]):
            if i == 1:
                gap = interval[seconds] + 1
                seconds += 1
            elif i > 1:
                gap += unzigzag_one(interval_delta[deltas])
                deltas += 1
            if i > 0:
                p += gap
                v += unzigzag_one(level_delta[changes])
                changes += 1
            positions[at], levels[at] = p, v
            at += 1
    return positions, levels


def _groups(dec: Decoder, rows: tuple[SymbolRow, ...], counts: Ints) -> Symbols:
    """A pass's symbols as coded: those of context 0 in order, then of context 1, ..."""
    grouped = [dec.symbols(n, rows[c]) for c, n in enumerate(counts.tolist()) if n]
    if len(grouped) == 1:
        return grouped[0]
    return np.concatenate(grouped) if grouped else np.zeros(0, dtype=np.int32)


def _decode_residual(dec: Decoder, tables: CodingTables, sizes: tuple[int, ...], step_exp: int,
                     row_step: int) -> ResidualLayer:  # fmt: skip
    bands, parent = [], np.zeros(0, dtype=np.int64)
    for i, size in enumerate(sizes):
        rows = tables.step_rows(row_step, band_class(i, len(sizes)))
        even_contexts, even_counts, odd_parents = even_pass(parent, size, i == 1)
        evens, odd_contexts, odd_counts = odd_pass(
            even_contexts, even_counts, _groups(dec, rows, even_counts), odd_parents, i == 0
        )
        odds, escapes = band_symbols(
            odd_contexts, odd_counts, _groups(dec, rows, odd_counts), evens
        )
        excess = dec.integers(escapes, tables.table("escape"))
        if escapes and excess.max() >= LEVEL_LIMIT - MAGNITUDES - 1:
            raise CorruptCodeError(f"a residual level is beyond ±{LEVEL_LIMIT}")
        parent = band_levels(evens, odds, excess)
        bands.append(parent)
    return ResidualLayer.from_levels(
        step_exp, np.concatenate([np.zeros(0, dtype=np.int64), *bands])
    )


def _sizes(codebook: Codebook, count: int) -> tuple[int, ...]:
    return band_sizes(codebook.residual, count) if codebook.residual is not None else ()


def encode_block(block: BlockCode, codebook: Codebook) -> codes_pb2.EncodedBlock:
    """The block's message: its codebook update, if any, and each channel's payload under the
    tables of `codebook` (the stream's before this block) with the update applied."""
    codebook = codebook.updated(block.kernels)
    sizes = _sizes(codebook, block.sample_count)
    count = len(codebook.kernels)
    payloads = []
    for c in block.channels:
        if c.residual is not None and codebook.residual is None:
            raise InvalidInputError("a residual layer needs a codebook with a residual transform")
        payloads.append(
            (c.channel, encode_channel(c, codebook.tables, count, block.start_sample, sizes))
        )
    update = codebook.kernels if block.kernels else ()
    return block_message(block.start_sample, block.sample_count, payloads, update)


def block_message(
    start: int,
    count: int,
    payloads: list[tuple[int, bytes]],
    kernels: Sequence[npt.NDArray[np.float32]] = (),
) -> codes_pb2.EncodedBlock:
    """A block's message from its channels' payloads, coded already, and its codebook update
    (kernels on the format's grid, as a Codebook holds them)."""
    return codes_pb2.EncodedBlock(
        start_sample=start,
        sample_count=count,
        channels=[codes_pb2.ChannelCode(channel=c, payload=p) for c, p in sorted(payloads)],
        kernels=kernels_to_proto(kernels),
    )


def block_bytes(block: BlockCode, codebook: Codebook) -> bytes:
    """The serialized EncodedBlock: exactly the bytes the rate metrics count."""
    return encode_block(block, codebook).SerializeToString(deterministic=True)


def decode_block(
    message: codes_pb2.EncodedBlock, codebook: Codebook, stored_bytes: int = 0
) -> BlockCode:
    """Validate and decode a received block (`codebook`: the stream's before it, to which the
    block's update, if any, applies); any inconsistency raises CorruptCodeError."""
    start, count = message.start_sample, message.sample_count
    if start >= MAX_SAMPLE or not 0 < count < 2**32:
        raise CorruptCodeError(f"invalid encoded block: start {start}, {count} samples")
    kernels = kernels_from_proto(message.kernels)
    try:
        codebook = codebook.updated(kernels)
    except InvalidInputError as exc:
        raise CorruptCodeError(f"invalid codebook update: {exc}") from None
    sizes = _sizes(codebook, count)
    channels = tuple(
        decode_channel(
            c.payload, c.channel, codebook.tables, len(codebook.kernels), start, count, sizes
        )
        for c in message.channels
    )
    try:
        return BlockCode(start, count, channels, stored_bytes or message.ByteSize(),
                         tuple(len(c.payload) for c in sorted(message.channels, key=lambda c: c.channel)),
                         codebook.kernels if kernels else ())  # fmt: skip
    except InvalidInputError as exc:
        raise CorruptCodeError(f"invalid encoded block: {exc}") from None


def parse_block(data: bytes, codebook: Codebook) -> BlockCode:
    """Parse, validate and decode a serialized EncodedBlock."""
    message = codes_pb2.EncodedBlock()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise CorruptCodeError(f"encoded block does not parse: {exc}") from None
    return decode_block(message, codebook, len(data))
