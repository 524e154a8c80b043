"""What a stream's channels mean: Encode's input in the model's units, Decode's output mapping."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from google.protobuf.unknown_fields import UnknownFieldSet

from sancodec import ChannelInfo
from sancodec.errors import InvalidConfigError
from sancodec.samples import SampleDtype
from sancodec.units import UnitConversion, canonical_units, conversion
from sancodec.v1 import codec_pb2, codes_pb2

__all__ = [
    "InputChannel",
    "check_channel_count",
    "input_channels",
    "output_channels",
]

MAX_CHANNELS = 256


def check_channel_count(count: int) -> None:
    """A stream's channel count, 1..MAX_CHANNELS; InvalidConfigError otherwise."""
    if not 0 < count <= MAX_CHANNELS:
        raise InvalidConfigError(f"channel count must be 1..{MAX_CHANNELS}, got {count}")


@dataclass(frozen=True)
class InputChannel:
    """One Encode channel: its samples to the model's units, and what decoded values will mean."""

    output: ChannelInfo  # offset 0, the model's scale and units; the ADC described in them
    units: UnitConversion
    adc_gain: float  # counts per input unit; 0 for float32 samples, which are physical already
    adc_baseline: int

    def __post_init__(self) -> None:
        if not (math.isfinite(self.adc_gain) and self.adc_gain >= 0):
            raise InvalidConfigError(f"channel {self.output.name!r}: ADC gain must be finite, >= 0")

    def to_model_units(self, row: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        physical = (row - self.adc_baseline) / self.adc_gain if self.adc_gain else row
        # Rounded to float32, the wire's precision: the same signal sent as int16 counts, µV or
        # mV then codes to the same blocks.
        return self.units.apply(physical).astype(np.float32).astype(np.float64)


def _input_channel(
    c: codec_pb2.SignalChannel, number: int, dtype: SampleDtype, units: str, scale: float
) -> InputChannel:
    name = c.name or f"ch{number}"
    unknown = UnknownFieldSet(c)
    if any(unknown[i].field_number in (3, 4) for i in range(len(unknown))):  # sent as ChannelInfo
        raise InvalidConfigError(
            f"channel {number} ({name!r}): offset and scale describe decoded output "
            "(EncodeStarted.channels); a SignalChannel has neither: send units and the ADC mapping"
        )
    if dtype is SampleDtype.INT16 and not c.adc_gain > 0:
        raise InvalidConfigError(
            f"channel {number} ({name!r}): int16 samples need SignalChannel.adc_gain (counts per "
            f"physical unit, > 0) and adc_baseline (the count of 0 units), got adc_gain {c.adc_gain:g}"
        )
    try:
        units_conversion = conversion(c.units, units)
    except InvalidConfigError as exc:
        raise InvalidConfigError(
            f"channel {number} ({name!r}): the model codes {units}; {exc}"
        ) from None
    gain = c.adc_gain / 10.0**units_conversion.exponent  # counts per unit of the model
    output = ChannelInfo(name, canonical_units(units), 0.0, scale, gain, c.adc_baseline,
                         c.adc_resolution_bits)  # fmt: skip
    int16 = dtype is SampleDtype.INT16
    return InputChannel(output, units_conversion, c.adc_gain if int16 else 0.0, c.adc_baseline)


def input_channels(
    messages: Sequence[codec_pb2.SignalChannel], count: int, dtype: SampleDtype, units: str,
    scale: float,
) -> tuple[InputChannel, ...]:  # fmt: skip
    """EncodeConfig.channels checked against the model's `units` and physical `scale`."""
    if messages and len(messages) != count:
        raise InvalidConfigError(f"{len(messages)} channel descriptions for {count} channels")
    if dtype is SampleDtype.INT16 and not messages:
        raise InvalidConfigError(
            "int16 samples need EncodeConfig.channels: one SignalChannel per channel with its "
            "adc_gain (counts per physical unit) and adc_baseline, as WFDB headers give them"
        )
    given = list(messages) or [codec_pb2.SignalChannel() for _ in range(count)]
    return tuple(_input_channel(c, i, dtype, units, scale) for i, c in enumerate(given))


def _output_channel(
    c: codes_pb2.ChannelInfo, number: int, units: str, scale: float | None
) -> ChannelInfo:
    if c.scale:
        return ChannelInfo.from_proto(c)
    if scale is None:
        raise InvalidConfigError(
            f"channel {number}: scale is unset, and a codebook without a model has no scale of "
            "its own; pass the channels of EncodeStarted or of the .sanc header"
        )
    try:
        exponent = conversion(units, c.units).exponent  # model units to the asked-for ones
    except InvalidConfigError as exc:
        raise InvalidConfigError(
            f"channel {number} ({c.name!r}): the model decodes to {units}; {exc}"
        ) from None
    return ChannelInfo(c.name or f"ch{number}", canonical_units(c.units or units), c.offset,
                       scale * 10.0**exponent, c.adc_gain, c.adc_baseline,
                       c.adc_resolution_bits)  # fmt: skip


def output_channels(
    messages: Sequence[codes_pb2.ChannelInfo], count: int, units: str, scale: float | None
) -> tuple[ChannelInfo, ...]:
    """DecodeConfig.channels; a channel without a scale takes the model's (`scale`, in `units`).
    With neither channels nor a model, samples stay in the model domain."""
    if messages and len(messages) != count:
        raise InvalidConfigError(f"{len(messages)} channel descriptions for {count} channels")
    if not messages:
        return tuple(ChannelInfo(f"ch{i}", units, 0.0, scale or 1.0) for i in range(count))
    return tuple(_output_channel(c, i, units, scale) for i, c in enumerate(messages))
