from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from beat_codes import beat_blocks, beat_kernel
from code_strategies import block_streams, codebooks, headers
from hypothesis import given, settings
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    ChannelInfo,
    Codebook,
    ModelRef,
    Quantizer,
    ResidualSpec,
    SancWriter,
    SanLayer,
    StreamHeader,
    WaveletTransform,
    block_bytes,
    decode,
    decode_file,
    encode_residual,
    read_sanc,
)
from sancodec.errors import CorruptFileError, InvalidInputError
from sancodec.metrics import bits_per_sample, prdn
from sancodec.sancfile import PREAMBLE_BYTES


def _write(header: StreamHeader, blocks: list[BlockCode]) -> bytes:
    buffer = io.BytesIO()
    with SancWriter(buffer, header) as writer:
        for block in blocks:
            writer.write(block)
    return buffer.getvalue()


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_file_round_trip(data: st.DataObject) -> None:
    codebook = data.draw(codebooks())
    blocks = data.draw(block_streams(codebook, channel_count=2))
    header = data.draw(headers(codebook, channel_count=2))
    longest = max((b.sample_count for b in blocks), default=1)
    header = replace(header, block_length=max(header.block_length, longest))
    contents = read_sanc(_write(header, blocks))
    assert contents.header == header
    assert list(contents.blocks) == blocks
    assert contents.trailer is not None
    assert contents.trailer.block_count == len(blocks)
    stored, before = 0, header.codebook  # each block under the stream's codebook before it
    for b in blocks:
        stored += len(block_bytes(b, before))
        before = before.updated(b.kernels)
    assert contents.trailer.code_bytes == stored
    _, samples = decode_file(_write(header, blocks), physical=False)
    assert np.array_equal(samples, decode(blocks, codebook, 2))


def _small_file() -> tuple[bytes, list[BlockCode], list[int]]:
    """A 3-block file and the byte offset where each block record starts (then the trailer)."""
    codebook = Codebook(
        (np.array([0.5, 1.0, -0.25], np.float32),), residual=ResidualSpec("haar", 2)
    )
    header = StreamHeader(ModelRef("ecg", "1"), codebook, 360.0, 16, (ChannelInfo("MLII", "mV"),))
    q = Quantizer(0)
    transform = WaveletTransform(codebook.residual)  # type: ignore[arg-type]
    blocks = []
    for b in range(3):
        san = SanLayer.from_spikes([0, 0], [16 * b + 2, 16 * b + 9], [3.0, -2.0 - b], q)
        residual = encode_residual(
            np.arange(16.0) * (b + 1), transform, q.step_exp, codebook.tables
        )
        blocks.append(BlockCode(16 * b, 16, (ChannelCode(0, san, residual),)))
    data = _write(header, blocks)
    starts, offset = [], PREAMBLE_BYTES
    for _ in range(5):  # header, 3 blocks, trailer
        starts.append(offset)
        length, pos, shift = 0, offset + 1, 0
        while True:
            length |= (data[pos] & 0x7F) << shift
            pos, shift = pos + 1, shift + 7
            if not data[pos - 1] & 0x80:
                break
        offset = pos + length + 4
    assert offset == len(data)
    return data, blocks, starts[1:]


def _expected_index(position: int, record_starts: list[int]) -> int | None:
    """The block a damaged byte belongs to: None for signature/header, 3 for the trailer."""
    owners = [i for i, start in enumerate(record_starts) if position >= start]
    return owners[-1] if owners else None


def test_every_single_byte_corruption_is_detected() -> None:
    data, blocks, starts = _small_file()
    for position in range(len(data)):
        for flip in (0x01, 0x80, 0xFF):
            damaged = bytearray(data)
            damaged[position] ^= flip
            expected = _expected_index(position, starts)
            with pytest.raises(CorruptFileError) as caught:
                read_sanc(bytes(damaged))
            if expected is None:
                assert caught.value.block_index is None
                continue
            salvaged = read_sanc(bytes(damaged), salvage=True)
            assert list(salvaged.blocks) == blocks[: min(expected, 3)]
            assert salvaged.error is not None
            if expected < 3:
                assert salvaged.error.block_index == expected
                assert f"block {expected}" in str(salvaged.error)


def test_every_truncation_is_detected_and_salvaged() -> None:
    data, blocks, starts = _small_file()
    for length in range(len(data)):
        with pytest.raises(CorruptFileError):
            read_sanc(data[:length])
        if length < starts[0]:
            continue  # the header itself is cut: nothing to salvage
        salvaged = read_sanc(data[:length], salvage=True)
        intact = sum(1 for i in range(3) if length >= starts[i + 1])
        assert list(salvaged.blocks) == blocks[:intact]


def test_dropped_block_is_detected() -> None:
    data, _, starts = _small_file()
    without_block_1 = data[: starts[1]] + data[starts[2] :]
    with pytest.raises(CorruptFileError, match="block 1 starts at sample 32"):
        read_sanc(without_block_1)


def test_trailing_garbage_and_foreign_files_are_refused() -> None:
    data, _, _ = _small_file()
    with pytest.raises(CorruptFileError, match="after the trailer"):
        read_sanc(data + b"\x00")
    with pytest.raises(CorruptFileError, match=r"not a \.sanc file"):
        read_sanc(b"%PDF-1.7 not a sanc file")


def test_interrupted_writer_leaves_a_salvageable_file(tmp_path: Path) -> None:
    _, blocks, _ = _small_file()
    header = read_sanc(_small_file()[0]).header
    path = tmp_path / "cut.sanc"
    with pytest.raises(RuntimeError), SancWriter(path, header) as writer:
        writer.write(blocks[0])
        writer.write(blocks[1])
        raise RuntimeError("device disconnected")
    with pytest.raises(CorruptFileError, match="truncated"):
        read_sanc(path)
    assert list(read_sanc(path, salvage=True).blocks) == blocks[:2]


def test_writer_refuses_gaps_and_foreign_channels() -> None:
    data, blocks, _ = _small_file()
    header = read_sanc(data).header
    writer = SancWriter(io.BytesIO(), header)
    with pytest.raises(InvalidInputError, match="expected 0"):
        writer.write(blocks[1])
    empty = SanLayer(0, np.array([]), np.array([]), np.array([]))
    with pytest.raises(InvalidInputError, match="channel 3"):
        writer.write(BlockCode(0, 16, (ChannelCode(3, empty),)))


def test_real_ecg_through_san_and_residual_layers(
    tmp_path: Path, shared_data: Path, mitdb100: np.ndarray
) -> None:
    """A beat template as the kernel, one spike per annotated beat, a wavelet residual: the core
    alone stores and restores a real recording, and the file says what it cost."""
    import wfdb

    beats = wfdb.rdann(str(shared_data / "wfdb" / "mitdb" / "100"), "atr", sampto=20000).sample
    beats = beats[(beats > 200) & (beats < 19800)]
    x = mitdb100 / 200.0  # counts to mV (gain 200)
    codebook = Codebook((beat_kernel(x, beats),), residual=ResidualSpec("bior4.4", 5))
    channels = (ChannelInfo("MLII", "mV", 0.0, 1.0, 200.0, 1024, 11),)
    header = StreamHeader(ModelRef("test", "1"), codebook, 360.0, 2048, channels)
    blocks = beat_blocks(x[None, :], beats, codebook)
    assert sum(b.channels[0].san.spike_count for b in blocks) == beats.size
    path, n = tmp_path / "ecg.sanc", x.size
    with SancWriter(path, header) as writer:
        for block in blocks:
            writer.write(block)
    _, decoded = decode_file(path)
    contents = read_sanc(path)
    assert contents.trailer is not None
    rate = bits_per_sample(contents.trailer.code_bytes, n)
    assert prdn(x, decoded[0]) < 8.0  # measured 6.6% at 1.6 bit/sample
    assert rate < 2.0
    assert path.stat().st_size < contents.trailer.code_bytes + 2000  # header and framing are small


def _header(block_length: int = 16, channels: int = 1, taps: int = 3) -> StreamHeader:
    codebook = Codebook((np.ones(taps, np.float32),), residual=ResidualSpec("haar", 2))
    infos = tuple(ChannelInfo(f"c{c}", "mV") for c in range(channels))
    return StreamHeader(ModelRef("ecg", "1"), codebook, 360.0, block_length, infos)


def test_a_splice_of_two_recordings_is_detected_and_salvage_keeps_only_the_first() -> None:
    data, blocks, starts = _small_file()
    other, _, other_starts = _small_file()  # same content, but a file of its own (its own id)
    assert data[:PREAMBLE_BYTES] != other[:PREAMBLE_BYTES]
    spliced = data[: starts[0]] + other[other_starts[0] :]  # my header, its blocks
    with pytest.raises(CorruptFileError, match=r"block 0 fails its checksum.*spliced"):
        read_sanc(spliced)
    salvaged = read_sanc(spliced, salvage=True)
    assert salvaged.blocks == ()
    mixed = data[: starts[1]] + other[other_starts[1] :]  # my block 0, then its blocks
    assert list(read_sanc(mixed, salvage=True).blocks) == blocks[:1]


def test_headers_and_blocks_beyond_the_bounds_are_refused_before_allocating() -> None:
    with pytest.raises(InvalidInputError, match="beyond this reader's bounds"):
        SancWriter(io.BytesIO(), _header(block_length=1 << 21))
    with pytest.raises(InvalidInputError, match="beyond this reader's bounds"):
        SancWriter(io.BytesIO(), _header(block_length=1 << 16, channels=256))
    header = _header(block_length=16)
    big = BlockCode(0, 1 << 26, (ChannelCode(0, SanLayer(0, [], [], [])),))  # 2^26 samples
    with pytest.raises(InvalidInputError, match="longer than the header's block length"):
        SancWriter(io.BytesIO(), header).write(big)
    buffer = io.BytesIO()
    with SancWriter(buffer, header) as writer:
        writer._record(
            b"B", block_bytes(big, header.codebook)
        )  # a hand-made file: the reader must refuse it
    with pytest.raises(CorruptFileError, match="more than the header's block length 16"):
        read_sanc(buffer.getvalue())


def test_a_block_that_paints_too_much_or_decodes_to_inf_is_refused() -> None:
    q = Quantizer(0)
    header = _header(block_length=2048, taps=1 << 16)  # 65536 taps, 1000 spikes: 65M weights
    san = SanLayer.from_spikes([0] * 1000, np.arange(1000) * 2, np.ones(1000), q)
    buffer = io.BytesIO()
    with SancWriter(buffer, header) as writer:
        writer.write(BlockCode(0, 2048, (ChannelCode(0, san),)))
    with pytest.raises(CorruptFileError, match="paints more than"):
        read_sanc(buffer.getvalue())
    loud = SanLayer.from_spikes([0, 0], [3, 4], [1e30, 1e30], Quantizer(600))
    header = replace(_header(), channels=(ChannelInfo("c0", "mV", 0.0, 1e300),))
    buffer = io.BytesIO()
    with SancWriter(buffer, header) as writer:
        writer.write(BlockCode(0, 16, (ChannelCode(0, loud),)))
    with pytest.raises(CorruptFileError, match="beyond float32 range"):
        decode_file(buffer.getvalue())
