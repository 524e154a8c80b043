"""The adaptive binary range coder of residual layers (sancodec.binary_stream)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sancodec.binary_stream import decode_binary, encode_binary
from sancodec.codes import (
    BlockCode,
    ChannelCode,
    EntropyCoder,
    ResidualLayer,
    SanLayer,
    parse_block,
)
from sancodec.errors import CorruptCodeError, CorruptDataError, InvalidInputError
from sancodec.sparse_stream import dyadic_bands, encode_sparse

LEVEL = st.integers(-(2**31), 2**31).filter(bool)


@given(st.data(), st.integers(1, 3000), st.integers(0, 10**7))
def test_round_trip(data: st.DataObject, length: int, origin: int) -> None:
    bands = dyadic_bands(length)
    positions = sorted(data.draw(st.sets(st.integers(0, sum(bands) - 1), max_size=60)))
    levels = data.draw(st.lists(LEVEL, min_size=len(positions), max_size=len(positions)))
    coded = encode_binary(np.array(positions, dtype=np.int64) + origin, levels, origin, bands)
    p, lv = decode_binary(coded, len(positions), origin, bands)
    assert (p - origin).tolist() == positions
    assert lv.tolist() == levels


@given(st.binary(max_size=64), st.integers(0, 100), st.integers(1, 2048))
def test_any_bytes_decode_or_raise_corrupt_code(data: bytes, count: int, length: int) -> None:
    try:
        positions, levels = decode_binary(data, count, 0, dyadic_bands(length))
    except CorruptCodeError:
        return
    assert positions.size == levels.size == count
    assert np.all(np.diff(positions) > 0)


def test_damage_is_detected() -> None:
    coded = encode_binary([3, 10, 11, 40], [1, -2, 5, -1], 0, [64])
    with pytest.raises(CorruptCodeError, match=r"ends before|after its last"):
        decode_binary(coded[:-1], 4, 0, [64])
    with pytest.raises(CorruptCodeError, match="after its last value"):
        decode_binary(coded + b"\x00", 4, 0, [64])
    with pytest.raises(CorruptCodeError, match="at least 4 bytes"):
        decode_binary(b"\x00", 0, 0, [64])
    with pytest.raises(InvalidInputError, match="too large"):
        encode_binary([5], [2**31 + 1], 0, [64])
    with pytest.raises(InvalidInputError, match="rise strictly"):
        encode_binary([5, 5], [1, 1], 0, [64])


@pytest.mark.parametrize("step", [8, 24, 64])
def test_smaller_than_rice_on_real_wavelet_coefficients(mitdb100: np.ndarray, step: int) -> None:
    import pywt

    bands = dyadic_bands(2048)
    rice = binary = 0
    for block in mitdb100[:16384].reshape(-1, 2048):
        flat = np.concatenate(pywt.wavedec(block, "bior4.4", mode="periodization", level=5))
        levels = np.rint(flat / step).astype(np.int64)
        (where,) = np.nonzero(levels)
        rice += len(encode_sparse(where, levels[where], 0, bands))
        binary += len(encode_binary(where, levels[where], 0, bands))
    # measured on record 100: 17-24% fewer bytes (docs/benchmarks.md); 10% is the floor we hold
    assert binary < 0.9 * rice


def test_blocks_carry_their_coder_through_bytes() -> None:
    san = SanLayer(step_exp=0, kernel_ids=[0], positions=[100], levels=[3])
    residual = ResidualLayer(step_exp=-8, indices=[0, 5, 900], levels=[4, -1, 2], coder=1)
    assert residual.coder is EntropyCoder.ADAPTIVE_BINARY
    block = BlockCode(0, 2048, (ChannelCode(0, san, residual),))
    back = parse_block(block.to_bytes())
    layer = back.channels[0].residual
    assert layer is not None
    assert layer.coder is EntropyCoder.ADAPTIVE_BINARY
    assert layer.indices.tolist() == [0, 5, 900]
    assert layer.levels.tolist() == [4, -1, 2]
    message = block.to_proto()
    message.channels[0].residual.coder = 7  # type: ignore[assignment]
    with pytest.raises(CorruptDataError, match="unknown entropy coder 7"):
        parse_block(message.SerializeToString())
    with pytest.raises(InvalidInputError, match="unknown entropy coder"):
        ResidualLayer(step_exp=0, indices=[1], levels=[1], coder=5)  # type: ignore[arg-type]
