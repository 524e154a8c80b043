"""Recordings on disk (WFDB, EDF, CSV, NPY, Bonn EEG text): the reader and the writer chosen by
the file's suffix (recordings/formats.py for WFDB and EDF, recordings/text.py for the rest)."""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

from recordings.recording import Recording
from sancodec.errors import InvalidConfigError, InvalidInputError

__all__ = ["read_recording", "write_recording"]

logger = logging.getLogger(__name__)

_WFDB_SUFFIXES = (".hea", ".dat", ".mat")


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
