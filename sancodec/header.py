"""The description of a coded stream: model, codebook, rate, channels (a .sanc file's header)."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook
from sancodec.errors import CorruptCodeError, InvalidConfigError, InvalidInputError
from sancodec.samples import SampleDtype
from sancodec.v1 import codes_pb2

__all__ = ["ChannelInfo", "ModelRef", "StreamHeader"]

# 4: one channel layout, range-coded with constriction under the codebook's tables. Versions
# 1-3 (Golomb-Rice, binary and packed layers) were never released and are not read.
FORMAT_VERSION = 5


@dataclass(frozen=True)
class ModelRef:
    name: str
    version: str
    manifest_sha256: str = ""

    def __post_init__(self) -> None:
        if not self.name or not self.version:
            raise InvalidConfigError("a model reference needs a name and a version")


@dataclass(frozen=True)
class ChannelInfo:
    """physical = offset + scale * model-domain value; adc_* describe how the source was digitized
    (WFDB convention: gain in counts per physical unit; 0 resolution when unknown)."""

    name: str = ""
    units: str = ""
    offset: float = 0.0
    scale: float = 1.0
    adc_gain: float = 0.0
    adc_baseline: int = 0
    adc_resolution_bits: int = 0

    def __post_init__(self) -> None:
        if not (math.isfinite(self.offset) and math.isfinite(self.scale)) or self.scale == 0:
            raise InvalidConfigError(
                f"channel {self.name!r}: offset and scale must be finite, scale non-zero"
            )
        if not math.isfinite(self.adc_gain) or self.adc_gain < 0:
            raise InvalidConfigError(f"channel {self.name!r}: ADC gain must be finite and >= 0")
        if not 0 <= self.adc_resolution_bits <= 32:
            raise InvalidConfigError(f"channel {self.name!r}: ADC resolution must be 0..32 bits")

    def to_physical(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return self.offset + self.scale * np.asarray(values, dtype=np.float64)

    def to_model(self, values: npt.ArrayLike) -> npt.NDArray[np.float64]:
        return (np.asarray(values, dtype=np.float64) - self.offset) / self.scale

    def to_proto(self) -> codes_pb2.ChannelInfo:
        return codes_pb2.ChannelInfo(
            name=self.name, units=self.units, offset=self.offset, scale=self.scale,
            adc_gain=self.adc_gain, adc_baseline=self.adc_baseline,
            adc_resolution_bits=self.adc_resolution_bits,
        )  # fmt: skip

    @classmethod
    def from_proto(cls, m: codes_pb2.ChannelInfo) -> ChannelInfo:
        return cls(
            name=m.name, units=m.units, offset=m.offset, scale=m.scale or 1.0,
            adc_gain=m.adc_gain, adc_baseline=m.adc_baseline,
            adc_resolution_bits=m.adc_resolution_bits,
        )  # fmt: skip


@dataclass(frozen=True)
class StreamHeader:
    model: ModelRef
    codebook: Codebook
    sample_rate_hz: float
    block_length: int
    channels: tuple[ChannelInfo, ...]
    source_dtype: SampleDtype = SampleDtype.FLOAT32
    start_time: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not math.isfinite(self.sample_rate_hz) or self.sample_rate_hz <= 0:
            raise InvalidConfigError(f"sample rate must be positive, got {self.sample_rate_hz}")
        if not 0 < self.block_length < 2**32:
            raise InvalidConfigError(f"block length must be positive, got {self.block_length}")
        if not self.channels:
            raise InvalidConfigError("a stream needs at least one channel")
        object.__setattr__(self, "channels", tuple(self.channels))
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    @property
    def channel_count(self) -> int:
        return len(self.channels)

    def to_physical(self, samples: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """Model-domain (channels, n) samples to physical units, channel by channel."""
        return np.stack([c.to_physical(row) for c, row in zip(self.channels, samples, strict=True)])

    def to_proto(self) -> codes_pb2.SancHeader:
        return codes_pb2.SancHeader(
            format_version=FORMAT_VERSION,
            model=codes_pb2.ModelRef(
                name=self.model.name, version=self.model.version,
                manifest_sha256=self.model.manifest_sha256,
            ),
            codebook=self.codebook.to_proto(),
            sample_rate_hz=self.sample_rate_hz,
            block_length=self.block_length,
            channels=[c.to_proto() for c in self.channels],
            source_dtype=self.source_dtype.to_proto(),
            start_time=self.start_time,
            metadata=dict(self.metadata),
        )  # fmt: skip

    @classmethod
    def from_proto(cls, m: codes_pb2.SancHeader) -> StreamHeader:
        if m.format_version != FORMAT_VERSION:
            newer = m.format_version > FORMAT_VERSION
            raise CorruptCodeError(
                f"format version {m.format_version} is not supported: this reader reads version "
                f"{FORMAT_VERSION} only ({'upgrade sancodec' if newer else 're-encode the source with this sancodec'})"
            )
        try:
            return cls(
                model=ModelRef(m.model.name, m.model.version, m.model.manifest_sha256),
                codebook=Codebook.from_proto(m.codebook),
                sample_rate_hz=m.sample_rate_hz,
                block_length=m.block_length,
                channels=tuple(ChannelInfo.from_proto(c) for c in m.channels),
                source_dtype=SampleDtype.from_proto(m.source_dtype),
                start_time=m.start_time,
                metadata=dict(m.metadata),
            )
        except InvalidInputError as exc:
            raise CorruptCodeError(f"invalid stream header: {exc}") from None
