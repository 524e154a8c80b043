"""Real codes without a server: beat-template kernels, a spike per annotated beat, a residual."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sancodec import (
    BlockCode,
    ChannelCode,
    Codebook,
    Quantizer,
    SanLayer,
    WaveletTransform,
    decode,
    encode_residual,
)

BEFORE, AFTER = 100, 156  # the template window around each annotated beat


def beat_kernel(
    row: npt.NDArray[np.float64], beats: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """The mean beat, mean removed, unit norm."""
    template = np.stack([row[b - BEFORE : b + AFTER] for b in beats]).mean(axis=0)
    template -= template.mean()
    return np.asarray(template / np.linalg.norm(template), dtype=np.float32)


def beat_blocks(
    x: npt.NDArray[np.float64],
    beats: npt.NDArray[np.int64],
    codebook: Codebook,
    block: int = 2048,
    san_step: float = 0.02,
    residual_step: float = 0.06,
) -> list[BlockCode]:
    """(channels, n) signal to blocks: kernel c spikes once per beat on channel c, amplitudes by
    projection; with a residual transform, the residual is taken against all spikes, since they
    paint across block borders."""
    n = x.shape[1]
    centre = (BEFORE + AFTER - 1) // 2
    positions = beats - BEFORE + centre
    blocks = []
    for start in range(0, n, block):
        count = min(block, n - start)
        mine = positions[(positions >= start) & (positions < start + count)]
        codes = []
        for c, (row, w) in enumerate(zip(x, codebook.kernels, strict=True)):
            amplitudes = [row[p - centre : p - centre + w.size] @ w for p in mine]
            san = SanLayer.from_spikes(
                np.full(mine.size, c), mine, amplitudes, Quantizer.from_step(san_step)
            )
            codes.append(ChannelCode(c, san))
        blocks.append(BlockCode(start, count, tuple(codes)))
    if codebook.residual is None:
        return blocks
    missed = x - decode(blocks, codebook, x.shape[0])
    transform, quantizer = WaveletTransform(codebook.residual), Quantizer.from_step(residual_step)
    return [
        BlockCode(b.start_sample, b.sample_count, tuple(
            ChannelCode(c.channel, c.san, encode_residual(missed[c.channel, b.start_sample : b.end_sample], transform, quantizer.step_exp, codebook.tables))
            for c in b.channels
        ))
        for b in blocks
    ]  # fmt: skip
