from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from sancodec.errors import InvalidInputError
from sancodec.quantization import Quantizer

finite = st.floats(-1e6, 1e6, allow_nan=False, width=64).filter(lambda v: v == 0 or abs(v) > 1e-30)


def test_step_grid() -> None:
    assert Quantizer(0).step == 1.0
    assert Quantizer(8).step == 2.0
    assert Quantizer(-16).step == 0.25
    assert Quantizer.from_step(0.25).step_exp == -16
    assert Quantizer.from_step(1.05).step_exp == 1  # 2^(1/8) = 1.09 is nearer than 1


@given(arrays(np.float64, st.integers(1, 50), elements=finite), st.integers(2, 24))
def test_bit_depth_picks_the_finest_step_that_fits(values: np.ndarray, bits: int) -> None:
    q = Quantizer.from_bit_depth(values, bits)
    limit = 2 ** (bits - 1) - 1
    assert np.max(np.abs(values)) / q.step <= limit
    if np.max(np.abs(values)) > 0:
        assert np.max(np.abs(values)) / Quantizer(q.step_exp - 1).step > limit


@given(arrays(np.float64, st.integers(0, 50), elements=finite), st.integers(-40, 80))
def test_round_trip_error_is_at_most_half_a_step(values: np.ndarray, step_exp: int) -> None:
    q = Quantizer(step_exp)
    restored = q.dequantize(q.quantize(values))
    assert np.all(np.abs(restored - values) <= q.step / 2 * (1 + 1e-12))


def test_bad_input_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="NaN"):
        Quantizer(0).quantize([1.0, np.nan])
    with pytest.raises(InvalidInputError, match="31 bits"):
        Quantizer(-80).quantize([1e9])
    with pytest.raises(InvalidInputError, match="positive"):
        Quantizer.from_step(0.0)
    with pytest.raises(InvalidInputError, match="integer"):
        Quantizer(1.5)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="bit depth"):
        Quantizer.from_bit_depth([1.0], 1)
