"""Exact round trips of the range-coded channel payload (random codes, every step class)."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sancodec.codes import ChannelCode, ResidualLayer, SanLayer
from sancodec.coefficients import residual_bits
from sancodec.entropy import ClassTable, Decoder, Encoder, SymbolRow
from sancodec.errors import CorruptCodeError
from sancodec.payload import decode_channel, encode_channel
from sancodec.tables import CONTEXTS, STEP_CLASSES, CodingTables

SIZES = (64, 64, 128, 256, 512, 1024)  # bior4.4 level 5 on 2048 samples, periodization


def _tables(rng: np.random.Generator) -> CodingTables:
    rows = tuple(
        tuple(
            tuple(
                SymbolRow(int(rng.integers(1000, 64000)), int(rng.integers(1000, 64000)))
                for _ in range(CONTEXTS)
            )
            for _ in SIZES
        )
        for _ in range(STEP_CLASSES)
    )
    return CodingTables(-19, -6, rows, {"escape": ClassTable(0, (10, 9, 8, 7, 6, 5, 4))})


def _code(rng: np.random.Generator, scale: float, step_exp: int, kernels: int) -> ChannelCode:
    n = sum(SIZES)
    dense = np.rint(rng.laplace(0, scale, n) * (rng.random(n) < 0.5)).astype(np.int64)
    dense[rng.integers(0, n, 3)] = rng.integers(-5000, 5000, 3)  # escapes
    (idx,) = np.nonzero(dense)
    spikes = int(rng.integers(0, 6))
    ids = np.sort(rng.integers(0, kernels, spikes)).astype(np.int32)
    pos = np.zeros(spikes, dtype=np.int64)
    for k in np.unique(ids):
        where = ids == k
        pos[where] = np.sort(rng.choice(2048, int(where.sum()), replace=False)) + 4096
    san = SanLayer(
        -19, ids, pos, rng.integers(-300, 300, spikes).astype(np.int32), int(rng.integers(-50, 50))
    )
    return ChannelCode(2, san, ResidualLayer(step_exp, idx, dense[idx].astype(np.int32)))


@pytest.mark.parametrize("seed", range(12))
def test_random_channel_codes_round_trip(seed: int) -> None:
    rng = np.random.default_rng(seed)
    tables = _tables(rng)
    for step_exp in (-40, -20, -6, 10, 30):
        code = _code(rng, float(rng.choice([0.3, 2.0, 20.0])), step_exp, 3)
        data = encode_channel(code, tables, 3, 4096, SIZES)
        assert not data or data[-1] != 0
        assert decode_channel(data, 2, tables, 3, 4096, 2048, SIZES) == code
        dense = np.zeros(sum(SIZES), dtype=np.int64)
        dense[code.residual.indices] = code.residual.levels
        assert residual_bits(dense, SIZES, tables, step_exp) > 0


def test_codes_are_the_shortest_prefix_that_decodes() -> None:
    rng = np.random.default_rng(7)
    row = SymbolRow(40000, 30000)
    for _ in range(200):
        symbols = rng.integers(0, 10, int(rng.integers(0, 100))).astype(np.int32)
        enc = Encoder()
        enc.symbols(symbols, row)
        data = enc.finish()
        dec = Decoder(data)
        assert np.array_equal(dec.symbols(symbols.size, row), symbols)
        dec.finish()
        if len(data) > 0:  # one byte fewer (the last one dropped) no longer decodes these values
            shorter = data[:-1].rstrip(b"\0")
            assert not np.array_equal(Decoder(shorter).symbols(symbols.size, row), symbols)


def test_a_trailing_zero_byte_is_refused() -> None:
    enc = Encoder()
    enc.symbols(np.array([1, 2, 3], dtype=np.int32), SymbolRow(30000, 30000))
    dec = Decoder(enc.finish() + b"\0")
    dec.symbols(3, SymbolRow(30000, 30000))
    with pytest.raises(CorruptCodeError):
        dec.finish()


def test_integer_fields_keep_the_format_bytes() -> None:
    """Bytes of the format (docs/sanc-format.md): pinned, so that a faster coder cannot change
    them; values of one, two and three pieces, and 0 and 1 (no piece)."""
    enc = Encoder()
    values = [0, 1, 2, 3, 65535, 65536, 131071, 131077, 2**31, 2**32 - 1, 17, 2**16 + 2**15]
    enc.integers(values, ClassTable(0, tuple(range(1, 34))))
    enc.integers([5], ClassTable(2, (3, 9, 1)))
    data = enc.finish()
    assert data.hex() == "0000000015f9165348fb2d05d617770c07732dc65223ad945c1a726badce68800026b9cc"
    dec = Decoder(data)
    assert dec.integers(len(values), ClassTable(0, tuple(range(1, 34)))).tolist() == values
    assert dec.integers(1, ClassTable(2, (3, 9, 1))).tolist() == [5]


@given(st.lists(st.lists(st.integers(0, 2**32 - 1), max_size=40), min_size=1, max_size=4))
def test_integer_fields_round_trip(fields: list[list[int]]) -> None:
    table = ClassTable(0, tuple(range(1, 34)))
    enc = Encoder()
    for values in fields:
        enc.integers(values, table)
    dec = Decoder(enc.finish())
    assert [dec.integers(len(values), table).tolist() for values in fields] == fields
    dec.finish()
