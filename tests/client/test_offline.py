"""client.offline on a real .sanc file: MIT-BIH 100 coded with beat-template kernels, no server."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pytest
from beat_codes import AFTER, BEFORE, beat_blocks, beat_kernel

from client.offline import compare, decode_to_recording, inspect_file, to_json
from client.offline_plot import plot
from recordings import Recording, read_recording
from sancodec import (
    BlockCode,
    ChannelInfo,
    Codebook,
    ModelRef,
    ResidualSpec,
    SampleDtype,
    SancWriter,
    StreamHeader,
    block_bytes,
    decode_file,
    encode_block,
    read_sanc,
)
from sancodec.errors import CorruptFileError, InvalidInputError
from sancodec.metrics import normalized_loss, prd, prdn

N, BLOCK, RATE_HZ = 6000, 2048, 360.0


@dataclass(frozen=True)
class Coded:
    path: Path
    blocks: tuple[BlockCode, ...]
    beats: int
    original: Recording


@pytest.fixture(scope="module")
def coded(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Coded:
    import wfdb

    record = str(shared_data / "wfdb" / "mitdb" / "100")
    x = wfdb.rdrecord(record, sampto=N).p_signal.T.astype(np.float64)  # (2, N) mV
    beats = wfdb.rdann(record, "atr", sampto=N).sample
    beats = beats[(beats >= BEFORE) & (beats + AFTER <= N)]
    kernels = [beat_kernel(row, beats) for row in x]
    codebook = Codebook(tuple(kernels), residual=ResidualSpec("bior4.4", 5))
    channels = tuple(ChannelInfo(n, "mV", 0.0, 1.0, 200.0, 1024, 11) for n in ("MLII", "V5"))
    header = StreamHeader(
        ModelRef("beat-template", "1", "ab" * 32), codebook, RATE_HZ, BLOCK, channels,
        source_dtype=SampleDtype.INT16, metadata={"record": "mitdb/100"},
    )  # fmt: skip
    path = tmp_path_factory.mktemp("offline") / "mitdb100.sanc"
    blocks = beat_blocks(x, beats, codebook, BLOCK)
    with SancWriter(path, header) as writer:
        for block in blocks:
            writer.write(block)
    original = read_recording(shared_data / "wfdb" / "mitdb" / "100", sampto=N)
    return Coded(path, tuple(blocks), int(beats.size), original)


def _damaged(coded: Coded, tmp_path: Path) -> Path:
    """The file with one byte of block 1's payload flipped."""
    data = bytearray(coded.path.read_bytes())
    payload = block_bytes(coded.blocks[1], read_sanc(coded.path).header.codebook)
    at = bytes(data).find(payload)
    assert at > 0
    data[at + len(payload) // 2] ^= 0x40
    path = tmp_path / "damaged.sanc"
    path.write_bytes(bytes(data))
    return path


# --- inspect ------------------------------------------------------------------------------


def test_inspect_reports_what_the_file_holds(coded: Coded) -> None:
    summary = inspect_file(coded.path)
    trailer = read_sanc(coded.path).trailer
    assert trailer is not None
    assert (summary.block_count, summary.block_length, summary.sample_rate_hz) == (3, BLOCK, 360.0)
    assert summary.duration_s == pytest.approx(N / RATE_HZ)
    assert summary.model == "beat-template/1"
    assert summary.manifest_sha256 == "ab" * 32
    assert (summary.kernels, summary.kernel_sizes) == (2, (256, 256))
    assert (summary.decoder_mode, summary.residual_transform) == ("adjoint", "bior4.4/5")
    assert summary.metadata == {"record": "mitdb/100"}
    assert summary.damaged is None
    assert summary.file_bytes == coded.path.stat().st_size
    assert summary.code_bytes == trailer.code_bytes
    assert sum(c.code_bytes for c in summary.channels) == trailer.code_bytes
    assert summary.file_bits_per_sample == pytest.approx(8 * summary.file_bytes / (2 * N))
    codebook = read_sanc(coded.path).header.codebook
    for c, stats in enumerate(summary.channels):
        own = sum(len(encode_block(b, codebook).channels[c].payload) for b in coded.blocks)
        assert own < stats.code_bytes < own + 40  # its own payload plus a share of block framing
        assert stats.samples == N
        assert stats.bits_per_sample == pytest.approx(8 * stats.code_bytes / N)
        assert stats.compression_ratio == pytest.approx(N * 16 / 8 / stats.code_bytes)
        assert stats.compression_ratio_adc == pytest.approx(N * 11 / 8 / stats.code_bytes)
        assert stats.spikes == coded.beats
        residuals = [b.channels[c].residual for b in coded.blocks]
        assert stats.residual_coefficients == sum(r.indices.size for r in residuals if r) > 0
    assert [c.name for c in summary.channels] == ["MLII", "V5"]
    assert summary.channels[0].bits_per_sample < 3.0


def test_inspect_refuses_a_missing_or_foreign_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        inspect_file(tmp_path / "absent.sanc")
    (tmp_path / "text.sanc").write_text("not a sanc file")
    with pytest.raises(CorruptFileError, match="signature"):
        inspect_file(tmp_path / "text.sanc")


# --- decode and compare -------------------------------------------------------------------


def test_decode_to_recording_gives_the_reference_decoder_samples(coded: Coded) -> None:
    recording, error = decode_to_recording(coded.path)
    header, reference = decode_file(coded.path)
    assert error is None
    np.testing.assert_array_equal(recording.samples, reference)
    assert recording.channels == header.channels
    assert recording.sample_rate_hz == RATE_HZ
    assert prdn(coded.original.samples[0], recording.samples[0]) < 10.0


def test_compare_uses_the_metric_definitions(coded: Coded) -> None:
    decoded, _ = decode_to_recording(coded.path)
    result = compare(coded.original, decoded)
    x, x_hat = coded.original.samples, decoded.samples
    assert (result.samples, result.length_mismatch) == (N, 0)
    assert result.channel_names == ("MLII", "V5")
    for c, channel in enumerate(result.channels):
        assert channel.prdn_percent == pytest.approx(prdn(x[c], x_hat[c]))
        assert channel.prd_percent == pytest.approx(prd(x[c], x_hat[c], baseline=0.0))
        assert channel.normalized_loss == pytest.approx(normalized_loss(x[c], x_hat[c]))
        assert channel.max_abs_error == pytest.approx(np.abs(x[c] - x_hat[c]).max())
        assert channel.snr_db == pytest.approx(-20 * math.log10(channel.prdn_percent / 100))
    sse = ((x - x_hat) ** 2).sum()
    ssd = ((x - x.mean(axis=1, keepdims=True)) ** 2).sum()
    assert result.overall.prdn_percent == pytest.approx(100 * math.sqrt(sse / ssd))
    assert result.overall.samples == 2 * N


def test_compare_aligns_lengths_and_skips_missing_samples(coded: Coded) -> None:
    decoded, _ = decode_to_recording(coded.path)
    samples = coded.original.samples[:, :5000].copy()
    samples[1, 100:200] = np.nan
    short = replace(coded.original, samples=samples, digital_samples=None)
    result = compare(short, decoded)
    assert (result.samples, result.length_mismatch) == (5000, 1000)
    assert result.channels[0].prdn_percent == pytest.approx(
        prdn(samples[0], decoded.samples[0, :5000])
    )
    keep = np.isfinite(samples[1])
    assert result.channels[1].samples == 4900
    assert result.channels[1].prdn_percent == pytest.approx(
        prdn(samples[1, keep], decoded.samples[1, :5000][keep])
    )


def test_compare_refuses_other_channel_counts_and_rates(coded: Coded) -> None:
    decoded, _ = decode_to_recording(coded.path)
    with pytest.raises(InvalidInputError, match="1 channels"):
        compare(coded.original.select([0]), decoded)
    with pytest.raises(InvalidInputError, match="sample rates differ"):
        compare(replace(coded.original, sample_rate_hz=250.0), decoded)


# --- plot ---------------------------------------------------------------------------------


def test_plot_writes_a_png(coded: Coded, tmp_path: Path) -> None:
    out = plot(
        coded.original, coded.path, tmp_path / "ecg.png", channel=1, start_s=2.0, duration_s=5.0
    )
    assert out == tmp_path / "ecg.png"
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert out.stat().st_size > 10_000
    alone = plot(None, coded.path, tmp_path / "alone.png")  # 10 s default, no original
    assert alone.stat().st_size > 10_000


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_s": 20.0}, "outside the recording"),
        ({"start_s": -1.0}, "outside the recording"),
        ({"duration_s": 0.0}, "positive duration"),
        ({"start_s": math.nan}, "finite start"),
        ({"channel": 2}, "channel 2 is out of range"),
    ],
)
def test_plot_refuses_a_span_or_channel_outside_the_recording(
    coded: Coded, tmp_path: Path, kwargs: dict[str, float], message: str
) -> None:
    with pytest.raises(InvalidInputError, match=message):
        plot(coded.original, coded.path, tmp_path / "x.png", **kwargs)  # type: ignore[arg-type]
    assert not (tmp_path / "x.png").exists()


# --- damaged files ------------------------------------------------------------------------


def test_a_damaged_block_is_named_and_salvage_keeps_the_blocks_before_it(
    coded: Coded, tmp_path: Path
) -> None:
    path = _damaged(coded, tmp_path)
    with pytest.raises(CorruptFileError, match="block 1") as caught:
        inspect_file(path)
    assert caught.value.block_index == 1
    with pytest.raises(CorruptFileError, match="block 1"):
        decode_to_recording(path)
    summary = inspect_file(path, salvage=True)
    assert summary.damaged is not None
    assert "block 1" in summary.damaged
    assert summary.block_count == 1
    assert summary.code_bytes == len(
        block_bytes(coded.blocks[0], read_sanc(path, salvage=True).header.codebook)
    )
    assert [c.samples for c in summary.channels] == [BLOCK, BLOCK]
    recording, error = decode_to_recording(path, salvage=True)
    assert error is not None
    assert error.startswith(summary.damaged)
    assert f"..{BLOCK - 1} lack the lost block's overlap" in error  # the provisional tail is named
    np.testing.assert_array_equal(recording.samples, decode_file(path, salvage=True)[1])
    assert recording.n_samples == BLOCK


def test_a_file_cut_after_its_header_salvages_to_nothing(coded: Coded, tmp_path: Path) -> None:
    data = coded.path.read_bytes()
    path = tmp_path / "cut.sanc"
    first = block_bytes(coded.blocks[0], read_sanc(coded.path).header.codebook)
    path.write_bytes(data[: data.find(first) - 3])  # before block 0's record
    summary = inspect_file(path, salvage=True)
    assert summary.block_count == 0
    assert "truncated" in (summary.damaged or "")
    assert math.isnan(summary.channels[0].bits_per_sample)
    assert to_json(summary)["channels"][0]["bits_per_sample"] is None
    with pytest.raises(CorruptFileError, match="no intact block"):
        decode_to_recording(path, salvage=True)


# --- JSON ---------------------------------------------------------------------------------


def test_to_json_gives_plain_json(coded: Coded) -> None:
    summary = to_json(inspect_file(coded.path))
    text = json.dumps(summary, allow_nan=False)
    assert json.loads(text)["channels"][1]["name"] == "V5"
    assert summary["kernel_sizes"] == [256, 256]
    decoded, _ = decode_to_recording(coded.path)
    comparison = to_json(compare(coded.original, decoded))
    json.dumps(comparison, allow_nan=False)
    assert comparison["channel_names"] == ["MLII", "V5"]
    assert comparison["overall"]["name"] == "overall"
    with pytest.raises(InvalidInputError):
        to_json("summary")  # type: ignore[arg-type]
