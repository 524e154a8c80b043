"""WFDB and EDF readers and writers behind `recordings` (wfdb and pyedflib live here)."""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from fractions import Fraction
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyedflib
import wfdb

from recordings.recording import (
    Recording,
    check_window,
    resolve_channels,
    shift_start_time,
)
from sancodec.errors import InvalidInputError
from sancodec.header import ChannelInfo

__all__ = ["read_edf", "read_wfdb", "write_edf", "write_wfdb"]

logger = logging.getLogger(__name__)

# Bits per stored sample of each WFDB format (FLAC formats 5xx: bits before compression).
_WFDB_BITS = {"8": 8, "16": 16, "61": 16, "80": 8, "160": 16, "212": 12, "24": 24, "32": 32}
_WFDB_BITS |= {"310": 10, "311": 10, "508": 8, "516": 16, "524": 24}
_WFDB_INVALID_16 = -32768
_INT16 = (-(2**15), 2**15 - 1)
_EDF_MARK = re.compile(r"sancodec:(n=\d+\S*)")
_RECORD_NAME = re.compile(r"[-\w]+")


def _reason(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _as_int16(counts: npt.NDArray[np.integer]) -> npt.NDArray[np.int16] | None:
    if counts.size and (counts.min() < _INT16[0] or counts.max() > _INT16[1]):
        return None
    return counts.astype(np.int16)


def _iso(moment: datetime | None, seconds_later: float) -> str:
    return "" if moment is None else shift_start_time(moment.isoformat(), seconds_later)


def _wfdb_available(header: wfdb.Record, record: Path) -> int | None:
    """Frames the signal files really hold (a truncated .dat holds fewer than the header says)."""
    frames: list[int] = []
    for name in dict.fromkeys(header.file_name):
        signals = [i for i, f in enumerate(header.file_name) if f == name]
        formats = {header.fmt[i] for i in signals}
        fmt = formats.pop() if len(formats) == 1 else "mixed"
        if fmt not in _WFDB_BITS or fmt.startswith("5"):
            return None
        bits = _WFDB_BITS[fmt]
        file = record.parent / name
        if not file.is_file():
            raise InvalidInputError(f"{record}: signal file {file} is missing")
        payload = file.stat().st_size - (header.byte_offset[signals[0]] or 0)
        per_frame = sum(header.samps_per_frame[i] or 1 for i in signals)
        frames.append(int(Fraction(payload * 8, bits)) // per_frame)
    return min(frames) if frames else None


def _wfdb_length(header: wfdb.Record, record: Path, sampto: int | None) -> int:
    length, available = header.sig_len, _wfdb_available(header, record)
    if available is None or (length is not None and available >= length):
        return int(length or 0)
    if length is None:
        return available
    if sampto is not None and available < sampto <= length:
        raise InvalidInputError(
            f"{record}: sampto={sampto} is past the data: the signal file holds {available} "
            f"samples although the header says {length} (truncated file)"
        )
    if sampto is None:
        logger.warning(
            "%s: signal file holds %d of the %d samples the header announces (truncated); "
            "reading the %d present",
            record,
            available,
            length,
            available,
        )
    return available


def _wfdb_channel(data: wfdb.Record, i: int, segmented: bool) -> ChannelInfo:
    if segmented:
        # Segments may each have their own gain: only the physical values are common.
        return ChannelInfo(name=data.sig_name[i], units=data.units[i] or "")
    return ChannelInfo(
        name=data.sig_name[i],
        units=data.units[i] or "",
        adc_gain=float(data.adc_gain[i] or 0.0),
        adc_baseline=int(data.baseline[i] or 0),
        # Bits the ADC had; MIT-BIH says 11 although format 212 stores 12.
        adc_resolution_bits=int(data.adc_res[i] or _WFDB_BITS.get(data.fmt[i], 0)),
    )


def read_wfdb(
    record: Path, channels: Sequence[int | str] | None, sampfrom: int, sampto: int | None
) -> Recording:
    """Samples [sampfrom, sampto) of a WFDB record (path without suffix)."""
    try:
        header = wfdb.rdheader(str(record))
    except Exception as exc:
        raise InvalidInputError(
            f"{record}.hea: not a readable WFDB header ({_reason(exc)})"
        ) from None
    source = str(record)
    index = None if channels is None else resolve_channels(header.sig_name or [], channels, source)
    segmented = isinstance(header, wfdb.MultiRecord)
    length = header.sig_len if segmented else _wfdb_length(header, record, sampto)
    start, stop = check_window(int(length), sampfrom, sampto, source)
    try:
        data = wfdb.rdrecord(
            source, sampfrom=start, sampto=stop, channels=index,
            physical=segmented, return_res=64,
        )  # fmt: skip
        physical = data.p_signal if segmented else data.dac(return_res=64)
    except Exception as exc:
        raise InvalidInputError(f"{record}: cannot read WFDB samples ({_reason(exc)})") from None
    infos = tuple(_wfdb_channel(data, i, segmented) for i in range(data.n_sig))
    digital = None if segmented else _as_int16(np.asarray(data.d_signal).T)
    # The header's time, not rdrecord's: whether rdrecord shifts it by sampfrom varies.
    start_time = _iso(header.base_datetime if header.base_date else None, start / data.fs)
    return Recording(
        np.asarray(physical, dtype=np.float64).T, float(data.fs), infos,
        start_time=start_time, source=source, digital_samples=digital,
    )  # fmt: skip


def _wfdb_adc(channel: ChannelInfo, row: npt.NDArray[np.float64]) -> tuple[float, int, int]:
    """(gain, baseline, resolution bits) putting `row` into format 16's valid counts."""
    if channel.adc_gain > 0:
        counts = np.round(row * channel.adc_gain + channel.adc_baseline)
        if np.all(np.isnan(counts) | (np.abs(counts) <= _INT16[1])):
            return channel.adc_gain, channel.adc_baseline, channel.adc_resolution_bits
    finite = row[np.isfinite(row)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    center, half = (low + high) / 2, (high - low) / 2
    half = half or max(abs(center), 1.0)
    # 32000 rather than 32767 leaves room for the rounding of gain and baseline.
    gain = float(f"{32000 / half:.6g}")
    if abs(center) * gain > 2**31 - 2**16:
        gain = float(f"{(2**31 - 2**16) / abs(center):.6g}") * 0.999
    return gain, -round(center * gain), 16


def write_wfdb(recording: Recording, path: Path) -> Path:
    """A WFDB record (format 16) at `path` (.hea or no suffix); returns the .hea path."""
    record = path.with_suffix("") if path.suffix.lower() == ".hea" else path
    if not _RECORD_NAME.fullmatch(record.name):
        raise InvalidInputError(
            f"{path}: a WFDB record name may hold only letters, digits, '_' and '-'"
        )
    adc = [_wfdb_adc(c, row) for c, row in zip(recording.channels, recording.samples, strict=True)]
    gains = np.array([a[0] for a in adc])
    baselines = np.array([a[1] for a in adc])
    counts = np.round(recording.samples.T * gains + baselines)
    counts = np.where(np.isnan(counts), _WFDB_INVALID_16, counts).astype(np.int64)
    start = datetime.fromisoformat(recording.start_time) if recording.start_time else None
    try:
        data = wfdb.Record(
            record_name=record.name, d_signal=counts, fs=recording.sample_rate_hz,
            fmt=["16"] * recording.channel_count, adc_gain=gains.tolist(),
            baseline=baselines.tolist(), adc_res=[a[2] for a in adc],
            units=[(c.units or "NU").replace(" ", "_") for c in recording.channels],
            sig_name=[c.name or f"ch{i}" for i, c in enumerate(recording.channels)],
            base_datetime=None if start is None else start.replace(tzinfo=None),
        )  # fmt: skip
        data.set_d_features()
        data.set_defaults()
        data.wrsamp(write_dir=str(record.parent))
    except Exception as exc:
        raise InvalidInputError(f"{path}: cannot write WFDB record ({_reason(exc)})") from None
    return record.with_suffix(".hea")


def read_edf(
    path: Path, channels: Sequence[int | str] | None, sampfrom: int, sampto: int | None
) -> Recording:
    """Samples [sampfrom, sampto) of an EDF/BDF file; the chosen signals must share one rate."""
    try:
        reader = pyedflib.EdfReader(str(path))
    except Exception as exc:
        raise InvalidInputError(f"{path}: not a readable EDF/BDF file ({_reason(exc)})") from None
    try:
        return _read_edf_signals(reader, path, channels, sampfrom, sampto)
    finally:
        reader.close()


def _edf_rate(reader: pyedflib.EdfReader, index: list[int], path: Path) -> float:
    labels = reader.getSignalLabels()
    by_rate: dict[float, list[str]] = {}
    for i in index:
        by_rate.setdefault(float(reader.getSampleFrequency(i)), []).append(labels[i].strip())
    if len(by_rate) > 1:
        groups = "; ".join(f"{rate:g} Hz: {', '.join(names)}" for rate, names in by_rate.items())
        raise InvalidInputError(
            f"{path}: signals have different sample rates ({groups}); "
            "pass channels= to pick signals of one rate"
        )
    return next(iter(by_rate))


def _edf_channel(header: Mapping[str, object]) -> ChannelInfo:
    pmin, pmax = float(str(header["physical_min"])), float(str(header["physical_max"]))
    dmin, dmax = int(str(header["digital_min"])), int(str(header["digital_max"]))
    gain = (dmax - dmin) / (pmax - pmin) if pmax > pmin and dmax > dmin else 0.0
    return ChannelInfo(
        name=str(header["label"]).strip(),
        units=str(header["dimension"]).strip(),
        adc_gain=gain,
        adc_baseline=round(dmin - pmin * gain),
        adc_resolution_bits=min(32, max(0, math.ceil(math.log2(max(dmax - dmin + 1, 1))))),
    )


def _edf_mark(reader: pyedflib.EdfReader) -> dict[str, str]:
    """Our note in files we wrote: 'sancodec:n=<samples>[,nan][,notime][,fs=<rate>]'."""
    match = _EDF_MARK.search(reader.getRecordingAdditional() or "")
    if match is None:
        return {}
    items = (token.partition("=") for token in match[1].split(","))
    return {key: value for key, _, value in items}


def _read_edf_signals(
    reader: pyedflib.EdfReader,
    path: Path,
    channels: Sequence[int | str] | None,
    sampfrom: int,
    sampto: int | None,
) -> Recording:
    labels = [label.strip() for label in reader.getSignalLabels()]
    index = list(range(len(labels)))
    if channels is not None:
        index = resolve_channels(labels, channels, str(path))
    if not index:
        raise InvalidInputError(f"{path}: the file holds no signals")
    rate = _edf_rate(reader, index, path)
    mark = _edf_mark(reader)
    if "fs" in mark and abs(float(mark["fs"]) / rate - 1) < 1e-3:
        rate = float(mark["fs"])
    # The last data record is padded: our note says how many samples are real.
    length = min(int(reader.getNSamples()[index[0]]), int(mark.get("n", 2**62)))
    start, stop = check_window(length, sampfrom, sampto, str(path))
    counts = np.stack([reader.readSignal(i, start, stop - start, digital=True) for i in index])
    headers = [reader.getSignalHeader(i) for i in index]
    low = np.array([[float(h["physical_min"]), float(h["digital_min"])] for h in headers])
    high = np.array([[float(h["physical_max"]), float(h["digital_max"])] for h in headers])
    step = (high[:, 0] - low[:, 0]) / (high[:, 1] - low[:, 1])
    physical = low[:, :1] + (counts - low[:, 1:]) * step[:, np.newaxis]
    if "nan" in mark:
        physical[counts == _INT16[0]] = np.nan
    moment = None if "notime" in mark else reader.getStartdatetime()
    return Recording(
        physical, rate, tuple(_edf_channel(h) for h in headers),
        start_time=_iso(moment, start / rate), source=str(path),
        digital_samples=_as_int16(counts),
    )  # fmt: skip


def _edf_number(value: float, *, up: bool) -> float:
    """`value` rounded outward to a number that fits EDF's 8-character header field."""
    for decimals in range(7, -1, -1):
        scaled = value * 10**decimals
        whole = math.ceil(scaled) if up else math.floor(scaled)
        text = f"{whole / 10**decimals:.{decimals}f}"
        text = text.rstrip("0").rstrip(".") if "." in text else text
        if len(text) <= 8:
            return float(text)
    raise InvalidInputError(
        f"value {value:g} does not fit EDF's 8-character physical range; rescale the signal"
    )


def _edf_range(row: npt.NDArray[np.float64]) -> tuple[float, float]:
    finite = row[np.isfinite(row)]
    low, high = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    margin = (high - low) * 0.01 or max(abs(low) * 0.01, 1.0)
    return _edf_number(low - margin, up=False), _edf_number(high + margin, up=True)


def _edf_text(text: str, limit: int, what: str) -> str:
    ascii_text = text.replace("µ", "u").replace("μ", "u").encode("ascii", "replace").decode()
    if len(ascii_text) > limit:
        logger.warning("EDF %s %r cut to %d characters", what, text, limit)
    return ascii_text[:limit]


def _edf_headers(
    recording: Recording, ranges: list[tuple[float, float]]
) -> list[dict[str, str | int | float | None]]:
    return [
        {
            "label": _edf_text(c.name or f"ch{i}", 16, "label"),
            "dimension": _edf_text(c.units, 8, "unit"),
            "sample_frequency": recording.sample_rate_hz,
            # Integral values as int: pyedflib warns when str(value) exceeds 8 characters.
            "physical_min": int(low) if low.is_integer() else low,
            "physical_max": int(high) if high.is_integer() else high,
            "digital_min": _INT16[0],
            "digital_max": _INT16[1],
            "prefilter": "",
            "transducer": "",
        }
        for i, (c, (low, high)) in enumerate(zip(recording.channels, ranges, strict=True))
    ]


def _edf_counts(
    recording: Recording, ranges: list[tuple[float, float]]
) -> list[npt.NDArray[np.int32]]:
    low = np.array([r[0] for r in ranges])[:, np.newaxis]
    high = np.array([r[1] for r in ranges])[:, np.newaxis]
    scaled = (recording.samples - low) / (high - low) * (_INT16[1] - _INT16[0]) + _INT16[0]
    # The lowest count stays free to mark NaN: EDF has no missing-sample value of its own.
    counts = np.clip(np.round(scaled), _INT16[0] + 1, _INT16[1])
    return list(np.where(np.isnan(scaled), _INT16[0], counts).astype(np.int32))


def _edf_note(recording: Recording) -> str:
    rate = recording.sample_rate_hz
    return (
        f"sancodec:n={recording.n_samples}"
        + ",nan" * bool(recording.missing_count())
        + ",notime" * (not recording.start_time)
        # EDF's own rate is samples per record over an 8-character duration, often inexact.
        + ("" if rate.is_integer() else f",fs={rate!r}")
    )


def write_edf(recording: Recording, path: Path) -> None:
    """An EDF+ file of 16-bit counts; a note in the header keeps the length, NaN and rate."""
    ranges = [_edf_range(row) for row in recording.samples]
    start = datetime.fromisoformat(recording.start_time) if recording.start_time else None
    try:
        writer = pyedflib.EdfWriter(str(path), recording.channel_count, pyedflib.FILETYPE_EDFPLUS)
    except Exception as exc:
        raise InvalidInputError(f"{path}: cannot create EDF file ({_reason(exc)})") from None
    try:
        writer.setSignalHeaders(_edf_headers(recording, ranges))
        writer.setRecordingAdditional(_edf_note(recording))
        if start is not None:
            writer.setStartdatetime(start.replace(tzinfo=None))
        writer.writeSamples(_edf_counts(recording, ranges), digital=True)
    except Exception as exc:
        writer.close()
        path.unlink(missing_ok=True)
        raise InvalidInputError(f"{path}: cannot write EDF file ({_reason(exc)})") from None
    writer.close()
    with pyedflib.EdfReader(str(path)) as reader:
        stored_rate = float(reader.getSampleFrequency(0))
    if abs(stored_rate / recording.sample_rate_hz - 1) > 1e-9:
        logger.warning(
            "%s: other EDF readers will see %.10g Hz, not %.10g Hz", path, stored_rate,
            recording.sample_rate_hz,
        )  # fmt: skip
