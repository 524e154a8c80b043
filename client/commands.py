"""What each `sancodec` command does; the CLI parses arguments and prints the results."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from tqdm import tqdm

from client.codec import CodecClient, EncodeEvent
from client.offline import compare, decode_to_recording, inspect_file
from recordings import Recording, read_recording, write_recording
from sancodec import StreamHeader, read_sanc
from sancodec.adaptation import ROUNDS, encode_adapted, write_sanc
from sancodec.bundle import find_bundle
from sancodec.errors import InvalidConfigError, InvalidInputError
from sancodec.sancfile import SancWriter
from sancodec.v1 import codec_pb2

__all__ = [
    "EncodeReport",
    "decode_file_to",
    "encode_adapted_recording",
    "encode_recording",
    "load_recording",
]


def load_recording(
    path: Path, sample_rate_hz: float | None, channels: str | None, fill_missing: bool
) -> Recording:
    """Read a recording; missing samples are refused unless `fill_missing` holds the last value."""
    wanted = (
        None if channels is None else [int(c) if c.isdigit() else c for c in channels.split(",")]
    )
    recording = read_recording(path, sample_rate_hz=sample_rate_hz, channels=wanted)
    missing = recording.missing_count()
    if missing and not fill_missing:
        raise InvalidInputError(
            f"{path}: {missing} missing samples (NaN); pass --fill-missing to hold the last value over them"
        )
    if missing:
        samples = recording.samples.copy()
        for row in samples:
            bad = np.isnan(row)
            index = np.where(~bad, np.arange(row.size), 0)
            np.maximum.accumulate(index, out=index)
            row[:] = np.where(bad, row[index], row)
            row[np.isnan(row)] = 0.0  # leading gap: nothing to hold
        recording = Recording(
            samples,
            recording.sample_rate_hz,
            recording.channels,
            recording.start_time,
            recording.source,
        )
    return recording


def _chunks(
    recording: Recording, frames: int, speed: float | None, bar: tqdm[Any]
) -> Iterator[npt.NDArray[Any]]:
    """(channels, frames) chunks; paced at `speed` x real time when given."""
    started = time.monotonic()
    for lo in range(0, recording.samples.shape[1], frames):
        if speed is not None:
            due = started + lo / recording.sample_rate_hz / speed
            time.sleep(max(0.0, due - time.monotonic()))
        chunk = recording.samples[:, lo : lo + frames]
        bar.update(chunk.shape[1])
        yield chunk


@dataclass
class EncodeReport:
    header: StreamHeader | None = None
    blocks: int = 0
    qualities: list[codec_pb2.BlockQuality] = field(default_factory=list)
    problems: list[codec_pb2.MessageStatus] = field(default_factory=list)
    summary: codec_pb2.EncodeSummary | None = None


def encode_recording(client: CodecClient, recording: Recording, out: Path | None, *, model: str, version: str,
                     frames: int, speed: float | None, show: bool, on_block: Callable[[int, codec_pb2.BlockQuality], None] | None = None,
                     max_prdn_percent: float | None = None, max_bits_per_sample: float | None = None,
                     stream_prdn_percent: float | None = None, fixed_kernels: bool = False) -> EncodeReport:  # fmt: skip
    """Stream a recording to the server, writing the `.sanc` as blocks arrive (if `out`)."""
    report = EncodeReport()
    writer: SancWriter | None = None
    bar = tqdm(
        total=recording.samples.shape[1],
        unit="frame",
        disable=not show,
        desc=f"encode {recording.source}",
    )
    metadata = {"source": Path(recording.source).name, "start_time": recording.start_time}
    try:
        events = client.encode_events(
            _chunks(recording, frames, speed, bar), sample_rate_hz=recording.sample_rate_hz,
            channel_count=recording.channel_count, model=model, version=version,
            channels=recording.channels, metadata=metadata, max_prdn_percent=max_prdn_percent,
            max_bits_per_sample=max_bits_per_sample, stream_prdn_percent=stream_prdn_percent,
            fixed_kernels=fixed_kernels,
        )  # fmt: skip
        for event in events:
            if isinstance(event, StreamHeader):
                report.header = event
                writer = SancWriter(out, event) if out is not None else None
            elif (
                isinstance(event, EncodeEvent)
                and event.block is not None
                and event.quality is not None
            ):
                if writer is not None:
                    writer.write(event.block)
                report.blocks += 1
                report.qualities.append(event.quality)
                if on_block is not None:
                    on_block(event.block.start_sample, event.quality)
            elif isinstance(event, EncodeEvent) and event.problem is not None:
                report.problems.append(event.problem)
            elif isinstance(event, codec_pb2.EncodeSummary):
                report.summary = event
    except BaseException as exc:  # an interrupted file gets no trailer: it reads as truncated
        if writer is not None:
            writer.__exit__(type(exc), exc, exc.__traceback__)
        raise
    else:
        if writer is not None:
            writer.close()
    finally:
        bar.close()
    return report


def encode_adapted_recording(recording: Recording, out: Path, *, models: Path, model: str, version: str,
                             rounds: int = ROUNDS, max_prdn_percent: float | None = None,
                             max_bits_per_sample: float | None = None,
                             block_length: int | None = None) -> EncodeReport:  # fmt: skip
    """Fit the model's kernels to the recording and code it here, not on a server
    (sancodec.adaptation); the `.sanc` is written once the whole recording is coded."""
    if rounds < 1:
        raise InvalidConfigError(f"--rounds must be at least 1, got {rounds}")
    bundle = find_bundle(models, model, version)
    metadata = {"source": Path(recording.source).name, "start_time": recording.start_time}
    code = encode_adapted(
        bundle, recording.samples, recording.sample_rate_hz, recording.channels, rounds=rounds,
        max_prdn_percent=max_prdn_percent, max_bits_per_sample=max_bits_per_sample, metadata=metadata,
        block_length=block_length,
    )  # fmt: skip
    write_sanc(code, out)
    qualities = [codec_pb2.BlockQuality(flithos=phi) for phi in code.flithos]
    return EncodeReport(code.header, len(code.blocks), qualities)


def encode_summary(path: Path, recording: Recording, report: EncodeReport) -> dict[str, Any]:
    """Per channel: compression ratio, bits per sample, PRDN and the mean phi of the blocks."""
    summary = inspect_file(path)
    decoded, _ = decode_to_recording(path)
    fidelity = compare(recording, decoded)
    phi = (
        float(np.mean([q.flithos for q in report.qualities])) if report.qualities else float("nan")
    )
    channels = []
    for stats, fid in zip(summary.channels, fidelity.channels, strict=True):
        channels.append({
            "channel": stats.name, "bits_per_sample": stats.bits_per_sample,
            "compression_ratio": stats.compression_ratio, "compression_ratio_adc": stats.compression_ratio_adc,
            "prdn_percent": fid.prdn_percent,
        })  # fmt: skip
    return {
        "output": str(path), "model": summary.model, "blocks": summary.block_count, "duration_s": summary.duration_s,
        "file_bits_per_sample": summary.file_bits_per_sample, "flithos_mean": phi, "channels": channels,
        "rejected_chunks": len(report.problems),
    }  # fmt: skip


def decode_file_to(
    path: Path, out: Path, *, client: CodecClient | None, salvage: bool
) -> tuple[Recording, str | None]:
    """Decode a `.sanc` offline (the NumPy reference decoder) or on the server; write `out`."""
    if client is None:
        recording, damaged = decode_to_recording(path, salvage=salvage)
    else:
        contents = read_sanc(path, salvage=salvage)
        header = contents.header
        samples = client.decode(contents.blocks, header)
        recording = Recording(
            samples,
            header.sample_rate_hz,
            header.channels,
            header.metadata.get("start_time", ""),
            str(path),
        )
        damaged = str(contents.error) if contents.error else None
    write_recording(recording, out)
    return recording, damaged
