"""A recording in memory (`Recording`): samples in physical units at one rate, its channels, and
the checks every reader and writer shares (recordings/files.py chooses the reader and writer)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta

import numpy as np
import numpy.typing as npt

from sancodec.errors import InvalidConfigError, InvalidInputError, InvalidSignalError
from sancodec.header import ChannelInfo

__all__ = ["BONN_SAMPLE_RATE_HZ", "Recording"]

logger = logging.getLogger(__name__)

BONN_SAMPLE_RATE_HZ = 173.61


@dataclass(frozen=True, eq=False)
class Recording:
    """Samples (channels, n) in physical units at one rate; NaN marks a missing sample.

    `digital_samples` holds the stored ADC counts when the source format had them (WFDB, EDF,
    Bonn); `eq=False` because element-wise array equality has no single truth value.
    """

    samples: npt.NDArray[np.float64]
    sample_rate_hz: float
    channels: tuple[ChannelInfo, ...]
    start_time: str = ""
    source: str = ""
    digital_samples: npt.NDArray[np.int16] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        samples = _checked_samples(self.samples, self._label)
        channels = tuple(self.channels)
        if len(channels) != samples.shape[0]:
            raise InvalidInputError(
                f"{self._label}: {len(channels)} channel descriptions for "
                f"{samples.shape[0]} channels of samples"
            )
        if not math.isfinite(self.sample_rate_hz) or self.sample_rate_hz <= 0:
            raise InvalidConfigError(
                f"{self._label}: sample rate must be positive and finite, got {self.sample_rate_hz}"
            )
        _parse_start_time(self.start_time)
        object.__setattr__(self, "samples", _read_only(samples))
        object.__setattr__(self, "channels", channels)
        object.__setattr__(self, "sample_rate_hz", float(self.sample_rate_hz))
        if self.digital_samples is not None:
            digital = np.asarray(self.digital_samples)
            if digital.shape != samples.shape or not np.issubdtype(digital.dtype, np.integer):
                raise InvalidSignalError(
                    f"{self._label}: digital samples must be integers shaped like the samples"
                )
            object.__setattr__(self, "digital_samples", _read_only(digital.astype(np.int16)))

    def __repr__(self) -> str:
        return (
            f"Recording(source={self.source!r}, channels={list(self.channel_names)}, "
            f"n={self.n_samples}, sample_rate_hz={self.sample_rate_hz:g})"
        )

    @property
    def _label(self) -> str:
        return self.source or "recording"

    @property
    def channel_count(self) -> int:
        return int(self.samples.shape[0])

    @property
    def n_samples(self) -> int:
        return int(self.samples.shape[1])

    @property
    def duration_s(self) -> float:
        return self.n_samples / self.sample_rate_hz

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)

    def select(self, channels: Sequence[int | str]) -> Recording:
        """The named or numbered channels, in the order given."""
        index = resolve_channels(self.channel_names, channels, self._label)
        digital = None if self.digital_samples is None else self.digital_samples[index]
        return replace(
            self,
            samples=self.samples[index],
            channels=tuple(self.channels[i] for i in index),
            digital_samples=digital,
        )

    def slice(self, start: int, stop: int | None = None) -> Recording:
        """Samples [start, stop) of every channel; the start time moves with `start`."""
        start, stop = check_window(self.n_samples, start, stop, self._label)
        digital = None if self.digital_samples is None else self.digital_samples[:, start:stop]
        return replace(
            self,
            samples=self.samples[:, start:stop],
            start_time=shift_start_time(self.start_time, start / self.sample_rate_hz),
            digital_samples=digital,
        )

    def missing_count(self) -> int:
        return int(np.count_nonzero(np.isnan(self.samples)))

    def digital(self) -> npt.NDArray[np.int16] | None:
        """The ADC counts as stored in the source file (a format's invalid-sample code
        included, e.g. WFDB's -32768), or None when it held none or they exceed 16 bits."""
        return self.digital_samples


def resolve_channels(names: Sequence[str], wanted: Sequence[int | str], source: str) -> list[int]:
    """Indices of the channels `wanted` (indices or names) among `names`."""
    if isinstance(wanted, str):
        wanted = [wanted]
    if len(wanted) == 0:
        raise InvalidInputError(f"{source}: select at least one channel")
    index: list[int] = []
    for item in wanted:
        if isinstance(item, str):
            index.append(_channel_by_name(names, item, source))
        elif isinstance(item, (int, np.integer)) and not isinstance(item, bool):
            if not 0 <= item < len(names):
                raise InvalidInputError(
                    f"{source}: channel index {item} is out of range (0..{len(names) - 1})"
                )
            index.append(int(item))
        else:
            raise InvalidInputError(f"{source}: a channel is a name or an index, got {item!r}")
    return index


def check_window(length: int, sampfrom: int, sampto: int | None, source: str) -> tuple[int, int]:
    """Validated [sampfrom, sampto) within a signal of `length` samples."""
    stop = length if sampto is None else sampto
    if sampfrom < 0:
        raise InvalidInputError(f"{source}: sampfrom must be >= 0, got {sampfrom}")
    if stop > length:
        raise InvalidInputError(
            f"{source}: sampto={stop} is past the end of the data ({length} samples)"
        )
    if sampfrom >= stop:
        raise InvalidInputError(
            f"{source}: empty sample range [{sampfrom}, {stop}) of {length} samples"
        )
    return sampfrom, stop


def shift_start_time(start_time: str, seconds: float) -> str:
    """`start_time` moved later by `seconds`, keeping its offset (or its lack of one)."""
    start = _parse_start_time(start_time)
    if start is None or seconds == 0:
        return start_time
    return (start + timedelta(seconds=seconds)).isoformat()


def _checked_samples(samples: npt.ArrayLike, label: str) -> npt.NDArray[np.float64]:
    try:
        array = np.asarray(samples, dtype=np.float64)
    except (TypeError, ValueError):
        raise InvalidSignalError(f"{label}: samples are not numeric") from None
    if array.ndim != 2 or 0 in array.shape:
        raise InvalidSignalError(
            f"{label}: samples must be a non-empty (channels, n) array, got shape {array.shape}"
        )
    if np.isinf(array).any():
        channel, index = np.argwhere(np.isinf(array))[0]
        raise InvalidSignalError(
            f"{label}: infinite sample at channel {channel}, index {index} "
            "(only NaN may mark a missing sample)"
        )
    return array


def _parse_start_time(start_time: str) -> datetime | None:
    if not start_time:
        return None
    try:
        return datetime.fromisoformat(start_time)
    except ValueError:
        raise InvalidInputError(f"start time {start_time!r} is not an RFC 3339 timestamp") from None


def _read_only(array: npt.NDArray[np.generic]) -> npt.NDArray[np.generic]:
    # A view, so that the caller's array stays writable while the Recording's is not.
    view = array.view()
    view.flags.writeable = False
    return view


def _channel_by_name(names: Sequence[str], name: str, source: str) -> int:
    matches = [i for i, n in enumerate(names) if n == name]
    if not matches:
        matches = [
            i for i, n in enumerate(names) if n.strip().casefold() == name.strip().casefold()
        ]
    if len(matches) == 1:
        return matches[0]
    available = ", ".join(repr(n) for n in names)
    if matches:
        raise InvalidInputError(
            f"{source}: channel name {name!r} is ambiguous (indices {matches}); select by index"
        )
    raise InvalidInputError(f"{source}: no channel named {name!r}; available: {available}")
