"""Text-like recordings: CSV (with or without a time column), NumPy .npy and Bonn EEG text."""

from __future__ import annotations

import csv
import logging
import re
from pathlib import Path

import numpy as np
import numpy.typing as npt

from recordings.recording import BONN_SAMPLE_RATE_HZ, Recording
from sancodec.errors import InvalidConfigError, InvalidInputError
from sancodec.header import ChannelInfo

__all__ = ["read_bonn", "read_csv", "read_npy", "write_csv"]

logger = logging.getLogger(__name__)

_UNITS_IN_NAME = re.compile(r"^(?P<name>.*?)\s*[\[(](?P<units>[^\[\]()]*)[\])]\s*$")
_TIME_SCALE = {"": 1.0, "s": 1.0, "sec": 1.0, "ms": 1e-3, "us": 1e-6, "min": 60.0}


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


def read_csv(path: Path, sample_rate_hz: float | None) -> Recording:
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


def write_csv(recording: Recording, path: Path) -> None:
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


def read_npy(path: Path, sample_rate_hz: float | None) -> Recording:
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


def read_bonn(path: Path, sample_rate_hz: float | None) -> Recording:
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
