"""Recordings on disk (WFDB, EDF, CSV, NPY, Bonn EEG text) as one in-memory `Recording`."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sancodec.errors import InvalidConfigError, InvalidInputError, InvalidSignalError
from sancodec.header import ChannelInfo

__all__ = ["BONN_SAMPLE_RATE_HZ", "Recording", "read_recording", "write_recording"]

logger = logging.getLogger(__name__)

BONN_SAMPLE_RATE_HZ = 173.61
_WFDB_SUFFIXES = (".hea", ".dat", ".mat")


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


def read_recording(
    path: str | Path,
    *,
    sample_rate_hz: float | None = None,
    channels: Sequence[int | str] | None = None,
    sampfrom: int = 0,
    sampto: int | None = None,
) -> Recording:
    """Read samples [sampfrom, sampto) of a recording, choosing the reader by the file suffix.

    `sample_rate_hz` is required for .npy and for .csv without a time column; where the file
    has a rate, an explicit value overrides it (with a warning if the two disagree).
    """
    path = Path(path)
    if sample_rate_hz is not None and not (math.isfinite(sample_rate_hz) and sample_rate_hz > 0):
        raise InvalidConfigError(
            f"sample_rate_hz must be positive and finite, got {sample_rate_hz}"
        )
    if isinstance(channels, str):
        channels = [channels]
    record = _wfdb_record_path(path)
    suffix = "" if record is not None else _readable_suffix(path)
    if record is not None or suffix in {".edf", ".bdf"}:
        # Imported here: wfdb and pyedflib are slow to import and only these formats need them.
        from recordings import formats as recording_formats

        recording = (
            recording_formats.read_wfdb(record, channels, sampfrom, sampto)
            if record is not None
            else recording_formats.read_edf(path, channels, sampfrom, sampto)
        )
        return _override_rate(recording, sample_rate_hz)
    from recordings import text as recording_text

    readers = {
        ".csv": recording_text.read_csv,
        ".npy": recording_text.read_npy,
        ".txt": recording_text.read_bonn,
    }
    reader = readers[suffix]
    recording = reader(path, sample_rate_hz)
    if channels is not None:
        recording = recording.select(channels)
    if (sampfrom, sampto) != (0, None):
        recording = recording.slice(sampfrom, sampto)
    return recording


def write_recording(recording: Recording, path: str | Path) -> Path:
    """Write to .npy (float32 samples only: the rate, names and start time are lost), .csv,
    WFDB (.hea plus a format-16 .dat) or .edf; returns the path written."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in {".npy", ".csv", ".hea", "", ".edf"}:
        raise InvalidInputError(
            f"{path}: cannot write {path.suffix!r} files; expected .npy, .csv, .hea or .edf"
        )
    if not path.parent.is_dir():
        raise InvalidInputError(f"{path}: directory {path.parent} does not exist")
    if suffix == ".npy":
        np.save(path, recording.samples.astype(np.float32))
    elif suffix == ".csv":
        from recordings import text as recording_text

        recording_text.write_csv(recording, path)
    else:
        from recordings import formats as recording_formats

        if suffix == ".edf":
            recording_formats.write_edf(recording, path)
        else:
            path = recording_formats.write_wfdb(recording, path)
    return path


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


def _wfdb_record_path(path: Path) -> Path | None:
    """The record path (no suffix) when `path` names a WFDB record, else None."""
    if path.suffix.lower() in _WFDB_SUFFIXES:
        record = path.with_suffix("")
        if path.suffix.lower() == ".hea":
            if not path.is_file():
                raise InvalidInputError(f"{path}: no such file")
            return record
        return record if record.with_suffix(".hea").is_file() else None
    return path if Path(f"{path}.hea").is_file() else None


def _readable_suffix(path: Path) -> str:
    suffix = path.suffix.lower()
    if not path.is_file():
        also = f" (nor a WFDB header {path}.hea)" if not suffix else ""
        raise InvalidInputError(f"{path}: no such file{also}")
    if suffix not in {".edf", ".bdf", ".csv", ".npy", ".txt"}:
        raise InvalidInputError(
            f"{path}: unsupported file type {path.suffix or '(no suffix)'!r}; expected a WFDB "
            "record (.hea), .edf/.bdf, .csv, .npy or Bonn EEG .txt"
        )
    return suffix


def _override_rate(recording: Recording, sample_rate_hz: float | None) -> Recording:
    if sample_rate_hz is None or sample_rate_hz == recording.sample_rate_hz:
        return recording
    if abs(sample_rate_hz / recording.sample_rate_hz - 1) > 1e-3:
        logger.warning(
            "%s: using sample_rate_hz=%g instead of the file's %g Hz",
            recording.source,
            sample_rate_hz,
            recording.sample_rate_hz,
        )
    return replace(recording, sample_rate_hz=sample_rate_hz)
