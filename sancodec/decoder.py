"""The reference NumPy decoder: overlap-adds every spike's kernel footprint across block borders."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook
from sancodec.codes import BlockCode, ChannelCode
from sancodec.compiled import compiled
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.residual import transform_for

__all__ = ["StreamingDecoder", "check_block", "decode", "paint_spikes"]

Samples = npt.NDArray[np.float64]

MAX_PAINT_WEIGHTS = 1 << 25  # spikes x kernel taps one block may paint (~0.02 s of work)


def paint_spikes(
    out: Samples,
    out_start: int,
    codebook: Codebook,
    kernel_ids: npt.NDArray[np.int32],
    positions: npt.NDArray[np.int64],
    amplitudes: npt.NDArray[np.float64],
) -> None:
    """Add each spike's painted kernel into `out`, which holds samples from out_start on;
    footprints are clipped to out's range."""
    for kid in np.unique(kernel_ids).tolist():
        mine = kernel_ids == kid
        values, left = codebook.painted(kid)
        _paint(out, positions[mine] - left - out_start, amplitudes[mine], values)


@compiled
def _paint(out: Samples, where: npt.NDArray[np.int64], scale: Samples,
           values: npt.NDArray[np.float32]) -> None:  # fmt: skip
    """One kernel's spikes (first samples `where`, amplitudes `scale`) summed on their own,
    spike by spike and tap by tap, then added to `out`: a fixed order, so the encoder's and
    every decoder's sums agree bit for bit."""
    painted = np.zeros(out.size)
    for s in range(where.size):
        for t in range(values.size):
            i = where[s] + t
            if 0 <= i < out.size:
                painted[i] += scale[s] * np.float64(values[t])
    out += painted


def check_block(block: BlockCode, codebook: Codebook, channel_count: int) -> None:
    """Raise CorruptCodeError unless this codebook can decode the block within bounded work."""
    sizes = np.array([w.size for w in codebook.kernels], dtype=np.int64)
    painted = 0
    for code in block.channels:
        if code.channel >= channel_count:
            raise CorruptCodeError(
                f"block at {block.start_sample} codes channel {code.channel}, "
                f"but the stream has {channel_count}"
            )
        ids = code.san.kernel_ids
        if ids.size and ids.max() >= len(codebook.kernels):
            raise CorruptCodeError(
                f"kernel id {int(ids.max())} is not in this codebook of {len(codebook.kernels)} kernels"
            )
        painted += int(sizes[ids].sum()) if ids.size else 0
        if painted > MAX_PAINT_WEIGHTS:
            raise CorruptCodeError(
                f"block at {block.start_sample} paints more than {MAX_PAINT_WEIGHTS} kernel "
                "weights (spikes x taps); no encoder writes such a block"
            )
        if code.residual is None:
            continue
        if codebook.residual is None:
            raise CorruptCodeError("block has a residual layer but the codebook names no transform")
        transform_for(codebook.residual).check_layer(code.residual, block.sample_count)


class StreamingDecoder:
    """Decode blocks in stream order; each push returns the samples no later block can change.
    A block's codebook update (`BlockCode.kernels`) holds from that block on: `codebook` is the
    stream's as it stands.

    Samples are in the model domain, shape (channels, n); see `to_physical` for units.
    """

    def __init__(self, codebook: Codebook, channel_count: int, first_sample: int = 0) -> None:
        if channel_count <= 0:
            raise InvalidInputError(f"channel_count must be positive, got {channel_count}")
        self.codebook = codebook
        self.channel_count = channel_count
        self._transform = transform_for(codebook.residual) if codebook.residual else None
        self._left, self._right = codebook.reach
        self._emitted = first_sample  # first sample not yet returned
        self._end = first_sample  # end of the last block pushed
        self._buffer = np.zeros((channel_count, 0), dtype=np.float64)

    @property
    def next_sample(self) -> int:
        """Where the next block must start."""
        return self._end

    def push(self, block: BlockCode) -> tuple[int, Samples]:
        """Add one block; returns (first sample, samples) that are now final."""
        if block.start_sample != self._end:
            raise CorruptCodeError(
                f"block starts at sample {block.start_sample}, expected {self._end} "
                "(blocks must be contiguous and in order)"
            )
        try:
            codebook = self.codebook.updated(block.kernels)
        except InvalidInputError as exc:
            raise CorruptCodeError(f"block at {block.start_sample}: {exc}") from None
        check_block(block, codebook, self.channel_count)
        self.codebook = codebook  # this block's spikes and later ones paint its kernels
        self._grow(block.end_sample + self._right)
        for code in block.channels:
            self._add_channel(block, code)
        if not np.all(np.isfinite(self._buffer)):
            raise CorruptCodeError(
                f"block at {block.start_sample} decodes to samples beyond float range"
            )
        self._end = block.end_sample
        return self._take(max(self._emitted, block.end_sample - self._left))

    def finish(self) -> tuple[int, Samples]:
        """The remaining samples, up to the end of the last block."""
        return self._take(self._end)

    def _grow(self, upto: int) -> None:
        missing = upto - self._emitted - self._buffer.shape[1]
        if missing > 0:
            pad = np.zeros((self.channel_count, missing), dtype=np.float64)
            self._buffer = np.concatenate([self._buffer, pad], axis=1)

    def _add_channel(self, block: BlockCode, code: ChannelCode) -> None:
        row = self._buffer[code.channel]
        san = code.san
        paint_spikes(
            row, self._emitted, self.codebook, san.kernel_ids, san.positions, san.amplitudes()
        )
        lo = block.start_sample - self._emitted
        span = slice(lo, lo + block.sample_count)
        row[span] += san.offset
        if code.residual is not None and self._transform is not None:
            row[span] += self._transform.decode_layer(code.residual, block.sample_count)

    def _take(self, upto: int) -> tuple[int, Samples]:
        count = upto - self._emitted
        start = self._emitted
        out = self._buffer[:, :count].copy()
        self._buffer = self._buffer[:, count:]
        self._emitted = upto
        return start, out


def decode(blocks: Iterable[BlockCode], codebook: Codebook, channel_count: int) -> Samples:
    """Decode a whole stream of blocks (starting at sample 0) to (channels, n) samples."""
    decoder = StreamingDecoder(codebook, channel_count)
    parts = [decoder.push(block)[1] for block in blocks]
    parts.append(decoder.finish()[1])
    return np.concatenate(parts, axis=1)
