"""The residual layer's fixed transform: a periodized wavelet decomposition of one block."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import numpy.typing as npt
import pywt

from sancodec.codes import ResidualLayer
from sancodec.errors import CorruptCodeError, InvalidConfigError, InvalidInputError

__all__ = ["ResidualSpec", "WaveletTransform", "band_sizes", "transform_for"]

MODE = "periodization"
MAX_LEVEL = 16


@dataclass(frozen=True)
class ResidualSpec:
    """A discrete wavelet (PyWavelets name) and its decomposition level."""

    wavelet: str = "bior4.4"
    level: int = 5

    def __post_init__(self) -> None:
        if self.wavelet not in pywt.wavelist(kind="discrete"):
            raise InvalidConfigError(f"unknown discrete wavelet {self.wavelet!r}")
        if not 0 <= self.level <= MAX_LEVEL:
            raise InvalidConfigError(f"wavelet level must be in [0, {MAX_LEVEL}], got {self.level}")


class WaveletTransform:
    """Flat coefficient vectors of blocks of any length; the level is capped per length."""

    def __init__(self, spec: ResidualSpec) -> None:
        self.spec = spec
        self._wavelet = pywt.Wavelet(spec.wavelet)

    def level_for(self, sample_count: int) -> int:
        return _level(self.spec, sample_count)

    def forward(self, block: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """pywt.wavedec's bands, coarsest first, flat (its dwt steps, without its checks of the
        level for every block)."""
        x = np.asarray(block, dtype=np.float64)
        if x.ndim != 1 or x.size == 0:
            raise InvalidInputError(
                f"a residual block must be a non-empty 1-D array, got {x.shape}"
            )
        details = []
        for _ in range(self.level_for(x.size)):
            x, detail = pywt.dwt(x, self._wavelet, mode=MODE)
            details.append(detail)
        return np.concatenate([x, *reversed(details)])

    def coefficient_count(self, sample_count: int) -> int:
        return sum(band_sizes(self.spec, sample_count))

    def inverse(self, coefficients: npt.ArrayLike, sample_count: int) -> npt.NDArray[np.float64]:
        flat = np.asarray(coefficients, dtype=np.float64)
        sizes = band_sizes(self.spec, sample_count)
        if flat.size != sum(sizes):
            raise InvalidInputError(f"expected {sum(sizes)} coefficients, got {flat.size}")
        x = pywt.waverec([flat[a:b] for a, b in _band_bounds(sizes)], self._wavelet, mode=MODE)
        return np.asarray(x[:sample_count], dtype=np.float64)

    def check_layer(self, layer: ResidualLayer, sample_count: int) -> int:
        """The coefficient count of such a block; CorruptCodeError if an index lies beyond it."""
        count = self.coefficient_count(sample_count)
        if layer.indices.size and layer.indices[-1] >= count:
            raise CorruptCodeError(
                f"residual coefficient index {int(layer.indices[-1])} is beyond the {count} "
                f"coefficients of a {sample_count}-sample block"
            )
        return count

    def decode_layer(self, layer: ResidualLayer, sample_count: int) -> npt.NDArray[np.float64]:
        """The block-domain signal of a residual layer."""
        count = self.check_layer(layer, sample_count)
        flat = np.zeros(count, dtype=np.float64)
        flat[layer.indices] = layer.coefficients()
        return self.inverse(flat, sample_count)


@lru_cache(maxsize=256)
def _level(spec: ResidualSpec, sample_count: int) -> int:
    dec_len = pywt.Wavelet(spec.wavelet).dec_len
    return min(spec.level, int(pywt.dwt_max_level(sample_count, dec_len)))


@lru_cache(maxsize=64)
def transform_for(spec: ResidualSpec) -> WaveletTransform:
    """One transform per spec: building a pywt.Wavelet per block costs more than decoding it."""
    return WaveletTransform(spec)


@lru_cache(maxsize=256)
def band_sizes(spec: ResidualSpec, sample_count: int) -> tuple[int, ...]:
    """Sizes of the coefficient arrays of a block of this length, coarsest first."""
    transform = WaveletTransform(spec)
    probe = pywt.wavedec(
        np.zeros(sample_count),
        transform._wavelet,
        mode=MODE,
        level=transform.level_for(sample_count),
    )
    return tuple(len(c) for c in probe)


@lru_cache(maxsize=256)
def _band_bounds(sizes: tuple[int, ...]) -> tuple[tuple[int, int], ...]:
    ends = np.cumsum(sizes).tolist()
    return tuple(zip([0, *ends[:-1]], ends, strict=True))
