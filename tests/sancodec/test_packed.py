"""The packed channel code (EntropyCoder.PACKED): both layers and their side information in one
lean range code; layout 1 (`packed`, format version 2) and layout 2 (`packed2`, relative
spikes), which writers now use."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from beat_codes import beat_blocks, beat_kernel
from hypothesis import given
from hypothesis import strategies as st

from sancodec import (
    BlockCode,
    ChannelCode,
    Codebook,
    CorruptCodeError,
    EntropyCoder,
    InvalidInputError,
    ResidualLayer,
    ResidualSpec,
    SanLayer,
    parse_block,
)
from sancodec.binary_stream import RangeDecoder, RangeEncoder, probabilities
from sancodec.packed import PackedCode, decode_packed, encode_packed
from sancodec.v1 import codes_pb2


def _block(start: int = 4096, coder: EntropyCoder = EntropyCoder.PACKED) -> BlockCode:
    san = SanLayer(-19, [0, 1, 0], [start + 10, start + 10, start + 900], [40, -3, 38], -9, 2)
    residual = ResidualLayer(-6, [0, 3, 64, 2000], [5, -1, 2, 1], coder)
    return BlockCode(start, 2048, (ChannelCode(0, san, residual), ChannelCode(1, san, residual)))


def _as_layout_1(message: codes_pb2.EncodedBlock) -> codes_pb2.EncodedBlock:
    """The same block as a version-2 writer packed it (layout 1, `ChannelCode.packed`)."""
    start, count = message.start_sample, message.sample_count
    for channel in message.channels:
        values = decode_packed(channel.packed2, start, count, layout=2)
        channel.packed = encode_packed(values, start, count, layout=1)
        channel.ClearField("packed2")
    return message


def test_packed_round_trip_keeps_every_value_and_ties_between_kernels() -> None:
    block = _block()
    assert parse_block(block.to_bytes()) == block
    message = block.to_proto()
    assert all(c.packed2 and not c.packed and not c.HasField("san") and not c.HasField("residual")
               for c in message.channels)  # fmt: skip
    # what version-2 writers wrote still decodes to the same block
    old = _as_layout_1(message)
    assert all(c.packed and not c.packed2 for c in old.channels)
    assert parse_block(old.SerializeToString()) == block
    both = block.to_proto()
    both.channels[0].packed = old.channels[0].packed
    with pytest.raises(CorruptCodeError, match="one layout, not two"):
        parse_block(both.SerializeToString())


spike_lists = st.lists(
    st.tuples(st.integers(0, 2047), st.integers(0, 3), st.integers(-300, 300).filter(bool)),
    max_size=60,
    unique_by=lambda t: (t[0], t[1]),
)


@given(spike_lists, st.booleans(), st.integers(0, 2**20))
def test_relative_and_plain_spikes_decode_to_the_same_values(
    spikes: list[tuple[int, int, int]], relative: bool, start: int
) -> None:
    """Either spike coding of layout 2, forced, and the one it picks by itself (the shorter
    spike code; the rest of the code costs the same bits either way, up to the last byte's
    rounding): any spikes of several kernels, ties at one position included, come back exactly."""
    spikes.sort()
    pos, ids, levels = (np.array([t[i] for t in spikes], dtype=np.int64) for i in range(3))
    code = PackedCode(
        -19, 2, -9, ids, pos + start, levels, (-6, np.array([0, 3]), np.array([5, -1]))
    )
    chosen = encode_packed(code, start, 2048)
    forced = encode_packed(code, start, 2048, relative=relative)
    assert len(chosen) <= len(forced) + 1
    for data in (chosen, forced):
        back = decode_packed(data, start, 2048)
        assert np.array_equal(back.positions, code.positions)
        assert np.array_equal(back.kernel_ids, code.kernel_ids)
        assert np.array_equal(back.levels, code.levels)
        assert back.residual is not None
        assert np.array_equal(back.residual[2], [5, -1])


@given(bits=st.lists(st.booleans(), max_size=400), direct=st.integers(0, 2**20 - 1))
def test_the_lean_flush_decodes_like_the_full_one(bits: list[bool], direct: int) -> None:
    """The lean flush leaves out 3 zero bytes, which the decoder supplies, and nothing else."""
    codes = []
    for lean in (False, True):
        probs, enc = probabilities(1), RangeEncoder()
        for b in bits:
            enc.bit(probs, 0, int(b))
        enc.direct(direct, 20)
        codes.append(enc.finish(lean=lean))
    full, lean_code = codes
    assert len(lean_code) == len(full) - 3
    probs, dec = probabilities(1), RangeDecoder(lean_code, lean=True)
    assert [bool(dec.bit(probs, 0)) for _ in bits] == bits
    assert dec.direct(20) == direct
    dec.finish()


@pytest.mark.parametrize("field", ["packed", "packed2"])
def test_damaged_packed_codes_are_refused(field: str) -> None:
    message = _block().to_proto()
    if field == "packed":
        message = _as_layout_1(message)
    packed = getattr(message.channels[0], field)
    for bad, match in (
        (packed[:-1], "ends before"),
        (packed + b"\x07", "after its last value"),
    ):
        setattr(message.channels[0], field, bad)
        with pytest.raises(CorruptCodeError, match=match):
            parse_block(message.SerializeToString())
    setattr(message.channels[0], field, packed)
    message.channels[0].san.step_exp = 3
    with pytest.raises(CorruptCodeError, match="no separate layers"):
        parse_block(message.SerializeToString())
    layered = _block(coder=EntropyCoder.RICE).to_proto()
    layered.channels[0].residual.coder = codes_pb2.ENTROPY_CODER_PACKED
    with pytest.raises(CorruptCodeError, match="not packed"):
        parse_block(layered.SerializeToString())


@given(st.binary(max_size=64), st.integers(0, 2**20), st.sampled_from(["packed", "packed2"]))
def test_any_packed_bytes_decode_or_raise_corrupt_code(payload: bytes, start: int, field: str
                                                       ) -> None:  # fmt: skip
    message = codes_pb2.EncodedBlock(start_sample=start, sample_count=2048)
    message.channels.add(channel=0, **{field: payload})
    try:
        block = parse_block(message.SerializeToString())
    except CorruptCodeError:
        return
    assert parse_block(block.to_bytes()) == block


def test_a_packed_real_ecg_code_is_the_same_code_in_fewer_bytes(
    shared_data: Path, mitdb100: np.ndarray
) -> None:
    """Record 100 with a beat kernel and a wavelet residual: packing keeps every level and saves
    the layers' side information (measured: 16 bytes of every 2048-sample block of 360-470)."""
    import wfdb

    beats = wfdb.rdann(str(shared_data / "wfdb" / "mitdb" / "100"), "atr", sampto=20000).sample
    beats = beats[(beats > 200) & (beats < 19800)]
    x = mitdb100[None, :] / 200.0
    codebook = Codebook((beat_kernel(x[0], beats),), residual=ResidualSpec("bior4.4", 5))
    coded = {
        coder: beat_blocks(x, beats, codebook, residual_step=0.02, coder=coder)
        for coder in (EntropyCoder.ADAPTIVE_BINARY, EntropyCoder.PACKED)
    }
    for binary, packed in zip(*coded.values(), strict=True):
        assert parse_block(packed.to_bytes()) == packed
        assert binary.channels[0].san == packed.channels[0].san
        a, b = binary.channels[0].residual, packed.channels[0].residual
        assert a is not None
        assert b is not None
        assert np.array_equal(a.indices, b.indices)
        assert np.array_equal(a.levels, b.levels)
        assert len(packed.to_bytes()) <= len(binary.to_bytes()) - 15
    # layout 2 codes record 100's regular beats relative to each other: fewer bytes again
    saved = [
        len(_as_layout_1(packed.to_proto()).SerializeToString()) - len(packed.to_bytes())
        for packed in coded[EntropyCoder.PACKED]
    ]
    assert min(saved) >= 0
    assert sum(saved) >= 3 * len(saved)


def test_a_spike_past_its_block_is_refused_when_packing() -> None:
    """The residual's bands run 64 past an odd block; spikes may not."""
    san = SanLayer(0, [0], [2058], [1])
    code = ChannelCode(0, san, ResidualLayer(0, [], [], EntropyCoder.PACKED))
    with pytest.raises(InvalidInputError, match="outside its block"):
        code.to_proto(0, 2048)


def test_relative_values_beyond_2_to_31_fall_back_to_plain_spikes() -> None:
    """Levels of +2^31 and -2^31 from one kernel: their difference would need a longer
    Exp-Golomb prefix than a decoder accepts, so the encoder codes those spikes plainly."""
    code = PackedCode(0, 0, 0, np.array([0, 0]), np.array([10, 20]),
                      np.array([2**31, -(2**31)]), None)  # fmt: skip
    back = decode_packed(encode_packed(code, 0, 2048), 0, 2048)
    assert np.array_equal(back.levels, code.levels)
    with pytest.raises(CorruptCodeError, match="code these spikes plainly"):
        encode_packed(code, 0, 2048, relative=True)


def test_a_channel_code_with_no_field_this_reader_knows_is_refused() -> None:
    """A newer writer's field is skipped by protobuf: the channel must not read as empty."""
    message = _block().to_proto()
    message.channels[0].ClearField("packed2")
    with pytest.raises(CorruptCodeError, match="holds no code this reader knows"):
        parse_block(message.SerializeToString())
