"""Physical units of a signal: the voltages the service converts (V, mV, µV), in one place."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.errors import InvalidConfigError

__all__ = ["KNOWN_UNITS", "UnitConversion", "canonical_units", "conversion"]

# Values per volt as a power of ten; spellings of micro: u, the micro sign, the Greek mu.
_EXPONENTS = {"V": 0, "mV": 3, "uV": 6, "\u00b5V": 6, "\u03bcV": 6}
_CANONICAL = {"V": "V", "mV": "mV", "uV": "uV", "\u00b5V": "uV", "\u03bcV": "uV"}
KNOWN_UNITS = ("V", "mV", "uV")


def canonical_units(units: str) -> str:
    """One spelling per unit ("µV" and "μV" become "uV"); units it does not know stay as given."""
    return _CANONICAL.get(units.strip(), units.strip())


@dataclass(frozen=True)
class UnitConversion:
    """Multiplies by 10**exponent: exact for the powers of ten between V, mV and µV, so values
    converted from µV equal the same values sent in mV, rounded once."""

    source: str
    target: str
    exponent: int

    def __post_init__(self) -> None:
        if abs(self.exponent) > 6:
            raise InvalidConfigError(f"no conversion from {self.source!r} to {self.target!r}")

    def apply(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        x = np.asarray(values, dtype=np.float64)
        if self.exponent >= 0:
            return x * float(10**self.exponent)
        return x / float(10**-self.exponent)  # a division is correctly rounded; * 0.001 is not


def conversion(source: str, target: str) -> UnitConversion:
    """How values in `source` units become `target` units. An empty `source` means `target`
    itself; an empty `target` (a model that declares no units) takes any values as they are;
    equal names need nothing. Otherwise both must be volts, or InvalidConfigError names them."""
    src, dst = canonical_units(source), canonical_units(target)
    if not src or not dst or src == dst:
        return UnitConversion(src or dst, dst or src, 0)
    if src not in _EXPONENTS or dst not in _EXPONENTS:
        unknown = src if src not in _EXPONENTS else dst
        raise InvalidConfigError(
            f"units {source!r} cannot be converted to {target!r}: {unknown!r} is not one of "
            f"{', '.join(KNOWN_UNITS)} (µV may also be written µV or μV)"
        )
    return UnitConversion(src, dst, _EXPONENTS[dst] - _EXPONENTS[src])
