"""Offline work on .sanc files: inspect their cost, decode them, compare and plot against a source."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from recordings import Recording
from sancodec import metrics
from sancodec.codes import BlockCode
from sancodec.decoder import decode
from sancodec.errors import CorruptFileError, InvalidInputError
from sancodec.header import FORMAT_VERSION, ChannelInfo
from sancodec.sancfile import SancContents, read_sanc

__all__ = [
    "ChannelComparison",
    "ChannelStats",
    "Comparison",
    "FileSummary",
    "compare",
    "decode_to_recording",
    "inspect_file",
    "to_json",
]

RATE_TOLERANCE = 1e-6  # relative difference at which two sample rates still count as one


@dataclass(frozen=True)
class ChannelStats:
    """What one channel of a .sanc file costs; ratios are NaN for a file with no samples."""

    name: str
    units: str
    samples: int
    code_bytes: int
    bits_per_sample: float
    compression_ratio: float  # against the source dtype's bits
    compression_ratio_adc: float | None  # against the ADC resolution, when the header knows it
    spikes: int
    residual_coefficients: int

    def __post_init__(self) -> None:
        if min(self.samples, self.code_bytes, self.spikes, self.residual_coefficients) < 0:
            raise InvalidInputError(f"channel {self.name!r}: counts must be non-negative")


@dataclass(frozen=True)
class FileSummary:
    path: str
    format_version: int
    model: str  # "name/version"
    manifest_sha256: str
    sample_rate_hz: float
    duration_s: float
    block_length: int
    block_count: int
    channels: tuple[ChannelStats, ...]
    file_bytes: int
    code_bytes: int
    file_bits_per_sample: float  # every byte of the file over every sample of every channel
    decoder_mode: str
    kernels: int  # the header's
    kernel_sizes: tuple[int, ...]
    kernel_updates: int  # blocks that carry new kernels (fitted to the stream by the server)
    residual_transform: str | None  # "wavelet/level"
    source_dtype: str
    start_time: str
    metadata: dict[str, str] = field(default_factory=dict)
    damaged: str | None = None  # the first error, when a damaged file was salvaged

    def __post_init__(self) -> None:
        if self.code_bytes != sum(c.code_bytes for c in self.channels):
            raise InvalidInputError("per-channel code bytes must add up to the file's code bytes")


@dataclass(frozen=True)
class ChannelComparison:
    """Fidelity of one channel (or of all, pooled); `samples` counts the samples compared."""

    name: str
    samples: int
    prdn_percent: float
    prd_percent: float  # against zero: physical units have the ADC baseline removed
    normalized_loss: float
    max_abs_error: float
    snr_db: float

    def __post_init__(self) -> None:
        if self.samples <= 0:
            raise InvalidInputError(f"channel {self.name!r}: nothing was compared")


@dataclass(frozen=True)
class Comparison:
    channels: tuple[ChannelComparison, ...]
    overall: ChannelComparison  # squared errors and deviations pooled over the channels
    samples: int  # the common length compared, per channel
    length_mismatch: int  # decoded minus original length; 0 when they agree

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.channels)


def inspect_file(path: Path, *, salvage: bool = False) -> FileSummary:
    """Sizes, rates and layout of a .sanc file; a damaged one raises unless `salvage`."""
    contents, file_bytes = read_contents(Path(path), salvage)
    header, n = contents.header, contents.sample_count
    count = header.channel_count
    code_bytes, spikes, coefficients = [0] * count, [0] * count, [0] * count
    for block in contents.blocks:
        for c, size in enumerate(channel_bytes(block, count)):
            code_bytes[c] += size
        for code in block.channels:
            spikes[code.channel] += code.san.spike_count
            if code.residual is not None:
                coefficients[code.channel] += int(code.residual.indices.size)
    dtype_bits = header.source_dtype.bits
    stats = tuple(
        _channel_stats(info, n, code_bytes[c], spikes[c], coefficients[c], dtype_bits)
        for c, info in enumerate(header.channels)
    )
    codebook = header.codebook
    spec = codebook.residual
    model = header.model
    return FileSummary(
        str(path), FORMAT_VERSION, f"{model.name}/{model.version}", model.manifest_sha256,
        header.sample_rate_hz, n / header.sample_rate_hz, header.block_length,
        len(contents.blocks), stats, file_bytes, sum(code_bytes),
        bits_per_sample_or_nan(file_bytes, n * count), codebook.decoder_mode.value,
        len(codebook.kernels), tuple(int(w.size) for w in codebook.kernels),
        sum(1 for block in contents.blocks if block.kernels), None if spec is None else f"{spec.wavelet}/{spec.level}", header.source_dtype.value,
        header.start_time, dict(header.metadata),
        None if contents.error is None else str(contents.error),
    )  # fmt: skip


def decode_to_recording(path: Path, *, salvage: bool = False) -> tuple[Recording, str | None]:
    """The decoded samples in physical units, and the salvage error message (None if intact)."""
    contents, _ = read_contents(Path(path), salvage)
    error = None if contents.error is None else str(contents.error)
    if error is not None and contents.blocks:  # the lost block's spikes would have painted here
        left, _ = contents.header.codebook.reach
        provisional = max(0, contents.sample_count - left)
        error += (
            f"; samples {provisional}..{contents.sample_count - 1} lack the lost block's overlap "
            "and may differ from a full decode"
        )
    return to_recording(contents, Path(path)), error


def compare(original: Recording, decoded: Recording) -> Comparison:
    """Fidelity of `decoded` against `original` over their common length (NaN samples skipped)."""
    check_pair(original, decoded)
    n = min(original.n_samples, decoded.n_samples)
    pairs = [finite_pair(original, decoded, c, 0, n) for c in range(original.channel_count)]
    channels = tuple(
        _fidelity(name or f"channel {c}", x, x_hat)
        for c, (name, (x, x_hat)) in enumerate(zip(original.channel_names, pairs, strict=True))
    )
    # Each channel centred on its own mean, so one PRDN over the concatenation pools
    # sum of squared errors over sum of squared deviations.
    centred = np.concatenate([x - x.mean() for x, _ in pairs])
    centred_hat = np.concatenate([x_hat - x.mean() for x, x_hat in pairs])
    x_all = np.concatenate([x for x, _ in pairs])
    x_hat_all = np.concatenate([x_hat for _, x_hat in pairs])
    prdn_pooled = metrics.prdn(centred, centred_hat)
    overall = replace(
        _fidelity("overall", x_all, x_hat_all),
        prdn_percent=prdn_pooled,
        snr_db=_snr_db(prdn_pooled),
    )
    return Comparison(channels, overall, n, decoded.n_samples - original.n_samples)


def to_json(obj: FileSummary | Comparison) -> dict[str, Any]:
    """A plain dict for `--json`: lists for tuples, None for NaN and infinities."""
    if not isinstance(obj, FileSummary | Comparison):
        raise InvalidInputError(f"to_json takes a FileSummary or Comparison, not {type(obj)}")
    plain: dict[str, Any] = _plain(asdict(obj))
    if isinstance(obj, Comparison):
        plain["channel_names"] = list(obj.channel_names)
    return plain


def read_contents(path: Path, salvage: bool) -> tuple[SancContents, int]:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InvalidInputError(f"{path}: no such file") from None
    except OSError as exc:
        raise InvalidInputError(f"{path}: cannot read ({exc.strerror or exc})") from None
    return read_sanc(data, salvage=salvage), len(data)


def to_recording(contents: SancContents, path: Path) -> Recording:
    header = contents.header
    if not contents.blocks:
        reason = f": {contents.error}" if contents.error is not None else ""
        raise CorruptFileError(f"{path}: no intact block to decode{reason}", block_index=0)
    samples = header.to_physical(decode(contents.blocks, header.codebook, header.channel_count))
    if not np.all(np.isfinite(samples.astype(np.float32))):
        raise CorruptFileError(f"{path}: decodes to samples beyond float32 range")
    rate, channels = header.sample_rate_hz, header.channels
    try:
        return Recording(samples, rate, channels, header.start_time, str(path))
    except InvalidInputError:  # an unreadable start time in the header must not cost the samples
        return Recording(samples, rate, channels, "", str(path))


def channel_bytes(block: BlockCode, channel_count: int) -> list[int]:
    """Each channel's share of a block as stored: its payload, plus the block's framing split
    evenly."""
    shares = [0] * channel_count
    for code, size in zip(block.channels, block.channel_bytes, strict=True):
        shares[code.channel] = size
    base, extra = divmod(block.stored_bytes - sum(shares), channel_count)
    return [share + base + int(c < extra) for c, share in enumerate(shares)]


def bits_per_sample_or_nan(code_bytes: int, samples: int) -> float:
    return metrics.bits_per_sample(code_bytes, samples) if samples else math.nan


def _channel_stats(
    info: ChannelInfo, n: int, code_bytes: int, spikes: int, coefficients: int, dtype_bits: int
) -> ChannelStats:
    def ratio(bits: int) -> float:
        return metrics.compression_ratio(metrics.raw_bytes(n, bits), code_bytes) if n else math.nan

    adc_bits = info.adc_resolution_bits
    return ChannelStats(
        info.name, info.units, n, code_bytes, bits_per_sample_or_nan(code_bytes, n), ratio(dtype_bits),
        ratio(adc_bits) if adc_bits > 0 else None, spikes, coefficients,
    )  # fmt: skip


def check_pair(original: Recording, decoded: Recording) -> None:
    if original.channel_count != decoded.channel_count:
        raise InvalidInputError(
            f"the original has {original.channel_count} channels, "
            f"the decoded recording {decoded.channel_count}"
        )
    if abs(decoded.sample_rate_hz / original.sample_rate_hz - 1) > RATE_TOLERANCE:
        raise InvalidInputError(
            f"sample rates differ: original {original.sample_rate_hz:g} Hz, "
            f"decoded {decoded.sample_rate_hz:g} Hz"
        )


def finite_pair(
    original: Recording, decoded: Recording, channel: int, start: int, stop: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    x = original.samples[channel, start:stop]
    x_hat = decoded.samples[channel, start:stop]
    keep = np.isfinite(x) & np.isfinite(x_hat)
    if not keep.any():
        raise InvalidInputError(
            f"channel {original.channel_names[channel]!r} has no sample to compare "
            f"in [{start}, {stop}) (all missing)"
        )
    return x[keep], x_hat[keep]


def _snr_db(prdn_percent: float) -> float:
    if prdn_percent == 0:
        return math.inf
    return -20.0 * math.log10(prdn_percent / 100.0) if math.isfinite(prdn_percent) else -math.inf


def _fidelity(
    name: str, x: npt.NDArray[np.float64], x_hat: npt.NDArray[np.float64]
) -> ChannelComparison:
    prdn = metrics.prdn(x, x_hat)
    return ChannelComparison(
        name=name,
        samples=int(x.size),
        prdn_percent=prdn,
        prd_percent=metrics.prd(x, x_hat, baseline=0.0),
        normalized_loss=metrics.normalized_loss(x, x_hat),
        max_abs_error=float(np.max(np.abs(x - x_hat))),
        snr_db=_snr_db(prdn),
    )


def _plain(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, Path):
        return str(value)
    return value
