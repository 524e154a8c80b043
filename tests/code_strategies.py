"""Hypothesis strategies for random sparse codes, codebooks and stream headers."""

from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    ChannelInfo,
    Codebook,
    DecoderMode,
    ModelRef,
    ResidualLayer,
    ResidualSpec,
    SanLayer,
    StreamHeader,
    WaveletTransform,
)

LEVEL = st.integers(-(2**20), 2**20).filter(lambda v: v != 0)


@st.composite
def codebooks(draw: st.DrawFn, max_kernels: int = 3, residual: bool | None = None) -> Codebook:
    sizes = draw(st.lists(st.integers(1, 40), min_size=1, max_size=max_kernels))
    kernels = tuple(
        np.asarray(draw(st.lists(st.floats(-2, 2, width=32), min_size=m, max_size=m)), np.float32)
        for m in sizes
    )
    has_residual = draw(st.booleans()) if residual is None else residual
    spec = ResidualSpec(draw(st.sampled_from(["bior4.4", "db4", "haar"])), draw(st.integers(0, 6)))
    mode = draw(st.sampled_from(list(DecoderMode)))
    return Codebook(kernels, mode, spec if has_residual else None)


@st.composite
def channel_codes(
    draw: st.DrawFn, channel: int, start: int, count: int, codebook: Codebook
) -> ChannelCode:
    spikes = draw(
        st.lists(
            st.tuples(
                st.integers(0, len(codebook.kernels) - 1), st.integers(start, start + count - 1)
            ),
            unique=True,
            max_size=min(30, count * len(codebook.kernels)),
        )
    )
    levels = draw(st.lists(LEVEL, min_size=len(spikes), max_size=len(spikes)))
    san = SanLayer(
        step_exp=draw(st.integers(-40, 40)),
        kernel_ids=np.array([k for k, _ in spikes], dtype=np.int32),
        positions=np.array([p for _, p in spikes], dtype=np.int64),
        levels=np.array(levels, dtype=np.int32),
        offset_level=draw(st.integers(-1000, 1000)),
    )
    residual = None
    if codebook.residual is not None and draw(st.booleans()):
        n_coef = WaveletTransform(codebook.residual).coefficient_count(count)
        indices = sorted(draw(st.sets(st.integers(0, n_coef - 1), max_size=20)))
        coef_levels = draw(st.lists(LEVEL, min_size=len(indices), max_size=len(indices)))
        residual = ResidualLayer(
            draw(st.integers(-40, 40)),
            np.array(indices),
            np.array(coef_levels),
        )
    return ChannelCode(channel, san, residual)


@st.composite
def block_streams(
    draw: st.DrawFn, codebook: Codebook, channel_count: int, max_blocks: int = 4
) -> list[BlockCode]:
    """Contiguous blocks from sample 0, of random lengths; some carry a codebook update (new
    kernels, none longer than the longest before), whose kernels they and later blocks use."""
    lengths = draw(st.lists(st.integers(1, 300), min_size=1, max_size=max_blocks))
    blocks, start = [], 0
    for count in lengths:
        update: tuple[np.ndarray, ...] = ()
        if draw(st.booleans()):
            longest = max(w.size for w in codebook.kernels)
            sizes = draw(st.lists(st.integers(1, longest), min_size=1, max_size=3))
            kernels = [
                np.asarray(draw(st.lists(st.floats(-2, 2, width=32), min_size=m, max_size=m)),
                           np.float32)
                for m in sizes
            ]  # fmt: skip
            codebook = codebook.updated(kernels)
            update = codebook.kernels
        channels = [
            draw(channel_codes(c, start, count, codebook))
            for c in range(channel_count)
            if draw(st.booleans()) or c == 0
        ]
        blocks.append(BlockCode(start, count, tuple(channels), kernels=update))
        start += count
    return blocks


@st.composite
def headers(draw: st.DrawFn, codebook: Codebook, channel_count: int) -> StreamHeader:
    return StreamHeader(
        model=ModelRef("ecg", draw(st.sampled_from(["1", "2026.11.21"])), "ab" * 32),
        codebook=codebook,
        sample_rate_hz=draw(st.sampled_from([360.0, 173.61, 125.0])),
        block_length=draw(st.integers(16, 4096)),
        channels=tuple(
            ChannelInfo(
                f"ch{c}", "mV", draw(st.floats(-5, 5)), draw(st.floats(0.01, 10)), 200.0, 1024, 11
            )
            for c in range(channel_count)
        ),
        start_time="2026-11-21T10:00:00Z",
        metadata={"record": "100"},
    )
