"""Unit conversion: exact between V, mV and µV, refused by name for anything else."""

from __future__ import annotations

import numpy as np
import pytest

from sancodec.errors import InvalidConfigError
from sancodec.units import canonical_units, conversion


@pytest.mark.parametrize(
    ("source", "target", "factor"),
    [("uV", "mV", 1e-3), ("µV", "mV", 1e-3), ("μV", "mV", 1e-3), ("V", "mV", 1e3),
     ("mV", "uV", 1e3), ("V", "uV", 1e6), ("uV", "V", 1e-6), ("mV", "mV", 1.0)],
)  # fmt: skip
def test_known_units_convert_by_powers_of_ten(source: str, target: str, factor: float) -> None:
    values = np.array([-1.5, 0.0, 2.25, 1e3])
    np.testing.assert_allclose(conversion(source, target).apply(values), values * factor)


def test_microvolts_become_exactly_the_millivolts_they_are() -> None:
    """Divided, not multiplied by 0.001: the result is the float64 nearest the true value."""
    microvolts = np.arange(-5000, 5000, 5, dtype=np.float64)
    converted = conversion("uV", "mV").apply(microvolts)
    assert np.array_equal(converted, microvolts / 1000)
    assert not np.array_equal(microvolts * 0.001, microvolts / 1000)  # why it divides


def test_empty_units_mean_the_models_and_equal_names_need_nothing() -> None:
    assert conversion("", "mV").exponent == 0
    assert conversion("mmHg", "mmHg").exponent == 0
    assert conversion("mV", "").exponent == 0  # a model that declares no units


@pytest.mark.parametrize("units", ["mmHg", "mv", "nV", "MV", "counts"])
def test_other_units_are_refused_naming_both(units: str) -> None:
    with pytest.raises(InvalidConfigError, match=f"'{units}' cannot be converted to 'uV'"):
        conversion(units, "uV")


def test_micro_has_one_spelling() -> None:
    assert {canonical_units(u) for u in ("uV", "µV", "μV", " uV ")} == {"uV"}
    assert canonical_units("mmHg") == "mmHg"
