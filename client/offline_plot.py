"""`sancodec plot`: a PNG of a `.sanc` reconstruction, its spikes, and the original beside it."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import numpy.typing as npt

from client.offline import (
    bits_per_sample_or_nan,
    channel_bytes,
    check_pair,
    finite_pair,
    read_contents,
    to_recording,
)
from recordings import Recording
from sancodec import metrics
from sancodec.codes import BlockCode
from sancodec.errors import InvalidInputError
from sancodec.header import ChannelInfo

__all__ = ["plot"]


def plot(
    original: Recording | None,
    path_sanc: Path,
    out_png: Path,
    *,
    channel: int = 0,
    start_s: float = 0.0,
    duration_s: float = 10.0,
) -> Path:
    """A PNG of the reconstruction (and the original and residual, if given) with the SAN spikes."""
    out_png = Path(out_png)
    if not out_png.parent.is_dir():
        raise InvalidInputError(f"{out_png}: directory {out_png.parent} does not exist")
    contents, _ = read_contents(Path(path_sanc), salvage=False)
    decoded = to_recording(contents, Path(path_sanc))
    if isinstance(channel, bool) or not 0 <= channel < decoded.channel_count:
        raise InvalidInputError(
            f"channel {channel} is out of range (0..{decoded.channel_count - 1})"
        )
    limit = decoded.n_samples
    if original is not None:
        check_pair(original, decoded)
        limit = min(limit, original.n_samples)
    start, stop = _span(start_s, duration_s, decoded.sample_rate_hz, limit)
    header = contents.header
    title = f"{header.model.name}/{header.model.version}  {decoded.channels[channel].name}"
    if original is not None:
        x, x_hat = finite_pair(original, decoded, channel, start, stop)
        title += f"  PRDN {metrics.prdn(x, x_hat):.2f}%"
    overlapping = [b for b in contents.blocks if b.start_sample < stop and b.end_sample > start]
    span_bytes = sum(channel_bytes(b, header.channel_count)[channel] for b in overlapping)
    span_samples = sum(b.sample_count for b in overlapping)
    title += f"  {bits_per_sample_or_nan(span_bytes, span_samples):.3f} bit/sample"
    spikes = _spikes(contents.blocks, channel, start, stop, header.channels[channel])
    _draw(out_png, decoded, original, channel, (start, stop), spikes, title)
    return out_png


def _span(start_s: float, duration_s: float, rate_hz: float, limit: int) -> tuple[int, int]:
    """Sample range [start, stop) of the time span, cut at the end of the recording."""
    if not (math.isfinite(start_s) and math.isfinite(duration_s)) or duration_s <= 0:
        raise InvalidInputError(
            f"the span needs a finite start and a positive duration, got {start_s} s, {duration_s} s"
        )
    start = round(start_s * rate_hz)
    stop = min(limit, round((start_s + duration_s) * rate_hz))
    if start_s < 0 or start >= limit or stop <= start:
        raise InvalidInputError(
            f"span {start_s:g} s + {duration_s:g} s lies outside the recording "
            f"(0 to {limit / rate_hz:g} s)"
        )
    return start, stop


def _spikes(
    blocks: tuple[BlockCode, ...], channel: int, start: int, stop: int, info: ChannelInfo
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Positions and physical-unit amplitudes of the channel's spikes in [start, stop)."""
    positions, amplitudes = [np.zeros(0, np.int64)], [np.zeros(0, np.float64)]
    for block in blocks:
        for code in block.channels:
            if code.channel == channel and block.start_sample < stop and block.end_sample > start:
                inside = (code.san.positions >= start) & (code.san.positions < stop)
                positions.append(code.san.positions[inside])
                amplitudes.append(code.san.amplitudes()[inside] * info.scale)
    return np.concatenate(positions), np.concatenate(amplitudes)


def _draw(
    out_png: Path,
    decoded: Recording,
    original: Recording | None,
    channel: int,
    span: tuple[int, int],
    spikes: tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]],
    title: str,
) -> None:
    from matplotlib.figure import Figure  # imported here: matplotlib is slow to import

    start, stop = span
    rate, units = decoded.sample_rate_hz, decoded.channels[channel].units
    t = np.arange(start, stop) / rate
    x_hat = decoded.samples[channel, start:stop]
    figure = Figure(figsize=(12, 6 if original is not None else 4), layout="constrained")
    axes = figure.subplots(2 if original is not None else 1, 1, sharex=True, squeeze=False)[:, 0]
    if original is not None:
        axes[0].plot(
            t, original.samples[channel, start:stop], lw=2.0, color="0.7", label="original"
        )
    axes[0].plot(t, x_hat, lw=0.9, color="tab:blue", label="reconstruction")
    axes[0].plot(spikes[0] / rate, spikes[1], "v", ms=5, color="tab:red", label="SAN spikes")
    axes[0].set_ylabel(units or "value")
    axes[0].legend(loc="upper right", fontsize="small")
    if original is not None:
        residual = original.samples[channel, start:stop] - x_hat
        axes[1].plot(t, residual, lw=0.8, color="tab:purple", label="original − reconstruction")
        axes[1].set_ylabel(f"residual ({units})" if units else "residual")
        axes[1].legend(loc="upper right", fontsize="small")
    axes[-1].set_xlabel("time (s)")
    figure.suptitle(title)
    try:
        figure.savefig(out_png, dpi=110)
    except OSError as exc:
        raise InvalidInputError(f"{out_png}: cannot write ({exc.strerror or exc})") from None
