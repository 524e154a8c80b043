from __future__ import annotations

import itertools

import numpy as np
import pytest
from code_strategies import block_streams, codebooks
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    Codebook,
    CodingTables,
    DecoderMode,
    Quantizer,
    ResidualSpec,
    SanLayer,
    StreamingDecoder,
    WaveletTransform,
    decode,
    encode_residual,
)
from sancodec.errors import CorruptCodeError
from sancodec.metrics import prdn


def correlation_matrix(w: np.ndarray, n: int) -> np.ndarray:
    """E with (E x)[t] = sum_j w[j] x[t + j - (m-1)//2]: the SAN encoder, zero outside."""
    c = (w.size - 1) // 2
    e = np.zeros((n, n))
    for t in range(n):
        for j, wj in enumerate(w):
            if 0 <= t + j - c < n:
                e[t, t + j - c] += wj
    return e


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 12), st.integers(5, 60), st.data())
def test_modes_match_the_encoder_operator(m: int, n: int, data: st.DataObject) -> None:
    drawn = np.asarray(data.draw(st.lists(st.floats(-1, 1), min_size=m, max_size=m)), np.float32)
    w = Codebook((drawn,)).kernels[0]  # as a codebook holds it: on a grid of 24-bit levels
    positions = sorted(data.draw(st.sets(st.integers(0, n - 1), min_size=1, max_size=n)))
    levels = data.draw(
        st.lists(
            st.integers(-50, 50).filter(bool), min_size=len(positions), max_size=len(positions)
        )
    )
    alpha = np.zeros(n)
    alpha[positions] = levels
    san = SanLayer(0, np.zeros(len(positions)), np.array(positions), np.array(levels))
    block = BlockCode(0, n, (ChannelCode(0, san),))
    e = correlation_matrix(w.astype(np.float64), n)
    adjoint = decode([block], Codebook((w,), DecoderMode.ADJOINT), 1)[0]
    correlation = decode([block], Codebook((w,), DecoderMode.CORRELATION), 1)[0]
    assert np.allclose(adjoint, e.T @ alpha, atol=1e-9)  # the transpose of the encoder
    assert np.allclose(correlation, e @ alpha, atol=1e-9)  # the authors' code: the same conv again


def test_asymmetric_kernel_paints_where_it_matched() -> None:
    w = np.array([0.0, 1.0, 3.0, 0.0, 0.0], np.float32)  # centre index 2
    san = SanLayer(0, np.array([0]), np.array([10]), np.array([1]))
    block = BlockCode(0, 20, (ChannelCode(0, san),))
    adjoint = decode([block], Codebook((w,), DecoderMode.ADJOINT), 1)[0]
    correlation = decode([block], Codebook((w,), DecoderMode.CORRELATION), 1)[0]
    assert adjoint[8:13].tolist() == [0, 1, 3, 0, 0]
    assert correlation[8:13].tolist() == [0, 0, 3, 1, 0]  # time-reversed


def _split(block: BlockCode, cuts: list[int]) -> list[BlockCode]:
    """Cut one single-channel block into contiguous blocks at the given sample positions."""
    edges = [block.start_sample, *cuts, block.end_sample]
    san = block.channels[0].san
    out = []
    for lo, hi in itertools.pairwise(edges):
        mine = (san.positions >= lo) & (san.positions < hi)
        part = SanLayer(
            san.step_exp, san.kernel_ids[mine], san.positions[mine], san.levels[mine],
            san.offset_level,
        )  # fmt: skip
        out.append(BlockCode(lo, hi - lo, (ChannelCode(0, part),)))
    return out


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_decoding_has_no_seams_at_block_borders(data: st.DataObject) -> None:
    codebook = data.draw(codebooks(residual=False))
    n = data.draw(st.integers(2, 400))
    whole = data.draw(block_streams(codebook, 1, max_blocks=1))[0]
    codebook = codebook.updated(whole.kernels)  # its cuts keep the kernels it was drawn with
    whole = BlockCode(0, max(n, whole.sample_count), whole.channels)
    cuts = (
        sorted(data.draw(st.sets(st.integers(1, whole.sample_count - 1), max_size=6)))
        if whole.sample_count > 1
        else []
    )
    reference = decode([whole], codebook, 1)
    assert np.allclose(decode(_split(whole, cuts), codebook, 1), reference, atol=1e-9)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_streaming_output_is_final_and_complete(data: st.DataObject) -> None:
    codebook = data.draw(codebooks())
    blocks = data.draw(block_streams(codebook, channel_count=2))
    reference = decode(blocks, codebook, 2)
    decoder = StreamingDecoder(codebook, 2)
    pieces, expected_start = [], 0
    for block in blocks:
        start, samples = decoder.push(block)
        assert start == expected_start
        expected_start += samples.shape[1]
        pieces.append(samples)
    pieces.append(decoder.finish()[1])
    assert np.array_equal(np.concatenate(pieces, axis=1), reference)
    assert reference.shape == (2, blocks[-1].end_sample)


def test_offset_belongs_to_its_block_only() -> None:
    q = Quantizer(0)
    empty = SanLayer.from_spikes([], [], [], q, offset=3.0)
    other = SanLayer.from_spikes([], [], [], q, offset=-1.0)
    blocks = [BlockCode(0, 4, (ChannelCode(0, empty),)), BlockCode(4, 2, (ChannelCode(0, other),))]
    assert decode(blocks, Codebook((np.ones(3, np.float32),)), 1)[0].tolist() == [
        3,
        3,
        3,
        3,
        -1,
        -1,
    ]


def test_gaps_and_unknown_kernels_are_corrupt() -> None:
    codebook = Codebook((np.ones(3, np.float32),))
    empty = SanLayer(0, np.array([]), np.array([]), np.array([]))
    decoder = StreamingDecoder(codebook, 1)
    with pytest.raises(CorruptCodeError, match="expected 0"):
        decoder.push(BlockCode(5, 10, (ChannelCode(0, empty),)))
    bad = SanLayer(0, np.array([3]), np.array([1]), np.array([1]))
    with pytest.raises(CorruptCodeError, match="kernel id 3"):
        decoder.push(BlockCode(0, 10, (ChannelCode(0, bad),)))
    with pytest.raises(CorruptCodeError, match="channel 1"):
        decoder.push(BlockCode(0, 10, (ChannelCode(1, empty),)))


@pytest.mark.parametrize("n", [1, 2, 7, 31, 100, 2048, 2049])
@pytest.mark.parametrize("wavelet", ["bior4.4", "db4", "haar"])
def test_wavelet_round_trip_is_exact(n: int, wavelet: str) -> None:
    transform = WaveletTransform(ResidualSpec(wavelet, 5))
    x = np.random.default_rng(n).normal(size=n)
    coefficients = transform.forward(x)
    assert coefficients.size == transform.coefficient_count(n)
    assert np.allclose(transform.inverse(coefficients, n), x, atol=1e-9)


def test_residual_layer_on_real_ecg(mitdb100: np.ndarray) -> None:
    # A fine step keeps PRDN near the quantization floor; a coarse one keeps few coefficients.
    block = mitdb100[:2048]
    transform = WaveletTransform(ResidualSpec("bior4.4", 5))
    tables = CodingTables()  # the fallback rows
    fine = encode_residual(block, transform, Quantizer.from_step(1.0).step_exp, tables)
    coarse = encode_residual(block, transform, Quantizer.from_step(24.0).step_exp, tables)
    fine_x = transform.decode_layer(fine, block.size)
    coarse_x = transform.decode_layer(coarse, block.size)
    assert prdn(block, fine_x) < 1.5
    assert prdn(block, coarse_x) < 15
    assert coarse.indices.size < fine.indices.size / 4
