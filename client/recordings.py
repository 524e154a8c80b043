"""Recordings on disk (WFDB, EDF, CSV, NPY, Bonn EEG text) as one in-memory `Recording`."""

from __future__ import annotations

import csv
import logging
import math
import re
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
_UNITS_IN_NAME = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<units>[^\[\]()]*)[\])]\s*$")
_TIME_SCALE = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0}


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
        from client import recording_formats

        recording = (
            recording_formats.read_wfdb(record, channels, sampfrom, sampto)
            if record is not None
            else recording_formats.read_edf(path, channels, sampfrom, sampto)
        )
        return _override_rate(recording, sample_rate_hz)
    reader = {".csv": _read_csv, ".npy": _read_npy, ".txt": _read_bonn}[suffix]
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
        _write_csv(recording, path)
    else:
        from client import recording_formats

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


def _split_units(column: str) -> tuple[str, str]:
    """'Time [s]' -> ('Time', 's'); a name without a bracketed suffix has no units."""
    column = column.strip()
    match = _UNITS_IN_NAME.match(column)
    if match is None or not match["name"]:
        return column, ""
    return match["name"], match["units"].strip()


def _parse_cells(rows: list[list[str]]) -> npt.NDArray[np.float64]:
    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        pass
    # Slow path only for files with bad cells: each one that is not a number becomes NaN.
    values = np.full((len(rows), len(rows[0])), np.nan)
    for r, row in enumerate(rows):
        for c, cell in enumerate(row):
            try:
                values[r, c] = float(cell)
            except ValueError:
                continue
    return values


def _csv_rows(path: Path) -> tuple[list[str], list[list[str]]]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            rows = [row for row in csv.reader(handle) if row and any(c.strip() for c in row)]
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InvalidInputError(f"{path}: not a readable CSV file ({exc})") from None
    if len(rows) < 2:
        raise InvalidInputError(f"{path}: a CSV recording needs a header row and data rows")
    header, body = rows[0], rows[1:]
    if all(_is_number(cell) for cell in header):
        raise InvalidInputError(
            f"{path}: the first row holds numbers; a header row of names is needed"
        )
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise InvalidInputError(
                f"{path}: row {line} has {len(row)} cells, the header has {len(header)}"
            )
    return header, body


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _csv_rate(time: npt.NDArray[np.float64], column: str, path: Path) -> float:
    """Rows per second over the whole time column, in its units ([s], [ms], _ms, ...; else s).

    Not 1/median(dt): time columns are often rounded text (BIDMC's 0.008 s steps print as
    479.91, 479.92, 479.92, ...), which skews every single step but not the span.
    """
    name, units = _split_units(column)
    if not units and "_" in name:
        units = name.rpartition("_")[2]  # time_s, time_ms
    scale = _TIME_SCALE.get(units.lower(), 1.0)
    rows = np.flatnonzero(np.isfinite(time))
    times = time[rows] * scale
    if rows.size < 2:
        raise InvalidConfigError(
            f"{path}: time column {column.strip()!r} has fewer than two values; pass sample_rate_hz"
        )
    span = float(times[-1] - times[0])
    if not span > 0 or np.any(np.diff(times) < 0):
        raise InvalidInputError(f"{path}: time column {column.strip()!r} does not increase")
    return float(f"{(rows[-1] - rows[0]) / span:.9g}")


def _read_csv(path: Path, sample_rate_hz: float | None) -> Recording:
    header, body = _csv_rows(path)
    values = _parse_cells(body)
    time_col = next((i for i, h in enumerate(header) if h.strip().lower().startswith("time")), None)
    if time_col is None:
        if sample_rate_hz is None:
            raise InvalidConfigError(
                f"{path}: no time column (a header starting with 'time'); pass sample_rate_hz"
            )
        rate = sample_rate_hz
    else:
        file_rate = _csv_rate(values[:, time_col], header[time_col], path)
        rate = file_rate if sample_rate_hz is None else sample_rate_hz
        if abs(rate / file_rate - 1) > 1e-3:
            logger.warning("%s: using %g Hz, the time column says %g Hz", path, rate, file_rate)
    keep = [i for i in range(len(header)) if i != time_col]
    if not keep:
        raise InvalidInputError(f"{path}: no signal columns besides the time column")
    samples = values[:, keep].T
    samples[~np.isfinite(samples)] = np.nan
    missing = int(np.count_nonzero(np.isnan(samples)))
    if missing:
        logger.warning("%s: %d cells are not numbers and are read as missing (NaN)", path, missing)
    channels = tuple(ChannelInfo(*_split_units(header[i])) for i in keep)
    return Recording(samples, rate, channels, source=str(path))


def _write_csv(recording: Recording, path: Path) -> None:
    header = ["time_s"] + [
        f"{c.name} [{c.units}]" if c.units else c.name for c in recording.channels
    ]
    times = (np.arange(recording.n_samples) / recording.sample_rate_hz).tolist()
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        # Python floats print as the shortest text that reads back to the same double.
        writer.writerows(
            [t, *row] for t, row in zip(times, recording.samples.T.tolist(), strict=True)
        )


def _read_npy(path: Path, sample_rate_hz: float | None) -> Recording:
    if sample_rate_hz is None:
        raise InvalidConfigError(f"{path}: a .npy file holds no sample rate; pass sample_rate_hz")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as exc:
        raise InvalidInputError(f"{path}: not a readable .npy file ({exc})") from None
    if not isinstance(array, np.ndarray) or not (
        np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)
    ):
        raise InvalidInputError(
            f"{path}: expected a numeric array, got {getattr(array, 'dtype', '?')}"
        )
    if array.ndim == 1:
        array = array[np.newaxis, :]
    elif array.ndim != 2:
        raise InvalidInputError(f"{path}: expected 1-D or 2-D samples, got shape {array.shape}")
    elif array.shape[0] > array.shape[1]:
        logger.info("%s: shape %s read as (n, channels); transposed", path, array.shape)
        array = array.T
    channels = tuple(ChannelInfo(name=f"ch{i}") for i in range(array.shape[0]))
    return Recording(array.astype(np.float64), sample_rate_hz, channels, source=str(path))


def _read_bonn(path: Path, sample_rate_hz: float | None) -> Recording:
    try:
        lines = path.read_text(encoding="ascii").split()
        values = np.array(lines, dtype=np.float64)
    except (OSError, UnicodeDecodeError, ValueError):
        raise InvalidInputError(
            f"{path}: not a Bonn EEG text file (one integer per line)"
        ) from None
    if values.size == 0:
        raise InvalidInputError(f"{path}: empty file")
    channel = ChannelInfo(name="EEG", units="uV", adc_gain=1.0, adc_resolution_bits=12)
    digital = None
    if np.all(values == np.round(values)) and np.all(np.abs(values) <= 2**15 - 1):
        digital = values.astype(np.int16)[np.newaxis, :]
    rate = BONN_SAMPLE_RATE_HZ if sample_rate_hz is None else sample_rate_hz
    return Recording(
        values[np.newaxis, :], rate, (channel,), source=str(path), digital_samples=digital
    )
