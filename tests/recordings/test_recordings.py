"""recordings: reading the shared real recordings, errors, and write/read round trips."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pyedflib
import pytest

from recordings import Recording, read_recording, write_recording
from sancodec.errors import InvalidConfigError, InvalidInputError, InvalidSignalError
from sancodec.header import ChannelInfo


def _decode_212(raw: bytes, frames: int) -> npt.NDArray[np.int64]:
    """Two signals in format 212: 3 bytes per frame, 12-bit two's complement values."""
    b = np.frombuffer(raw[: 3 * frames], dtype=np.uint8).reshape(frames, 3).astype(np.int64)
    s0 = b[:, 0] | (b[:, 1] & 0x0F) << 8
    s1 = b[:, 2] | (b[:, 1] & 0xF0) << 4
    both = np.stack([s0, s1])
    return np.where(both >= 2048, both - 4096, both)


def _synthetic(n: int = 1234, rate: float = 250.0, start: str = "") -> Recording:
    t = np.arange(n) / rate
    samples = np.stack([np.sin(2 * np.pi * 3 * t) * 1.5, 40.0 * np.cos(2 * np.pi * 0.7 * t) - 7])
    channels = (ChannelInfo(name="ECG", units="mV"), ChannelInfo(name="ABP", units="mmHg"))
    return Recording(samples, rate, channels, start_time=start, source="synthetic")


# --- real files ---------------------------------------------------------------------------


def test_mitdb100_matches_a_direct_format_212_decode(shared_data: Path) -> None:
    rec = read_recording(shared_data / "wfdb" / "mitdb" / "100", sampto=3000)
    counts = _decode_212((shared_data / "wfdb" / "mitdb" / "100.dat").read_bytes(), 3000)
    assert rec.channel_names == ("MLII", "V5")
    assert rec.sample_rate_hz == 360.0
    assert [c.units for c in rec.channels] == ["mV", "mV"]
    assert [(c.adc_gain, c.adc_baseline, c.adc_resolution_bits) for c in rec.channels] == [
        (200.0, 1024, 11),
        (200.0, 1024, 11),
    ]
    digital = rec.digital()
    assert digital is not None
    assert digital.dtype == np.int16
    np.testing.assert_array_equal(digital, counts)
    np.testing.assert_allclose(rec.samples, (counts - 1024) / 200.0, atol=1e-12)
    assert rec.samples.shape == (2, 3000)
    assert rec.duration_s == pytest.approx(3000 / 360)


def test_mitdb100_by_hea_path_channel_name_and_window(shared_data: Path) -> None:
    full = read_recording(shared_data / "wfdb" / "mitdb" / "100", sampto=2000)
    part = read_recording(
        shared_data / "wfdb" / "mitdb" / "100.hea", channels=["V5"], sampfrom=500, sampto=1500
    )
    assert part.channel_names == ("V5",)
    np.testing.assert_array_equal(part.samples, full.samples[1:, 500:1500])
    np.testing.assert_array_equal(part.samples, full.select([1]).slice(500, 1500).samples)
    swapped = read_recording(
        shared_data / "wfdb" / "mitdb" / "100", channels=[1, "MLII"], sampto=2000
    )
    assert swapped.channel_names == ("V5", "MLII")
    np.testing.assert_array_equal(swapped.samples, full.samples[::-1])
    np.testing.assert_array_equal(swapped.digital(), full.digital()[::-1])


def test_challenge_2015_mat_signal_file(shared_data: Path) -> None:
    rec = read_recording(shared_data / "wfdb" / "challenge-2015" / "a103l", sampto=2500)
    assert rec.channel_names == ("II", "V", "PLETH")
    assert rec.sample_rate_hz == 250.0
    assert rec.samples.shape == (3, 2500)
    digital = rec.digital()
    assert digital is not None
    # The first values as the header records them (the field after the resolution and zero).
    np.testing.assert_array_equal(digital[:, 0], [-171, 9127, 6042])
    assert rec.channels[0].adc_gain == 7247.0
    assert rec.samples[0, 0] == pytest.approx(-171 / 7247.0)


def test_truncated_apnea_record_is_clipped_with_a_warning_or_refused(
    shared_data: Path, caplog: pytest.LogCaptureFixture
) -> None:
    record = shared_data / "wfdb" / "apnea-ecg" / "a01"
    with caplog.at_level(logging.WARNING):
        tail = read_recording(record, sampfrom=1_570_000)
    assert tail.samples.shape == (1, 816)
    assert np.all(np.isfinite(tail.samples))
    assert "truncated" in caplog.text
    with pytest.raises(InvalidInputError, match=r"1570816 samples.*truncated"):
        read_recording(record, sampfrom=1_570_000, sampto=1_570_817)
    with pytest.raises(InvalidInputError, match="past the end"):
        read_recording(record, sampto=3_000_000)


def test_eegmat_edf(shared_data: Path) -> None:
    path = shared_data / "edf" / "eegmat" / "Subject00_2.edf"
    rec = read_recording(path, sampto=1000)
    assert rec.channel_count == 21
    assert rec.sample_rate_hz == 500.0
    assert rec.channel_names[0] == "EEG Fp1"
    assert rec.channel_names[-1] == "ECG ECG"
    assert rec.channels[0].units == "uV"
    assert rec.channels[-1].units == "mV"
    assert rec.channels[0].adc_resolution_bits == 16
    assert rec.start_time == "2011-01-01T00:00:00"
    with pyedflib.EdfReader(str(path)) as reader:
        fp1 = reader.readSignal(0, 0, 1000)
        fp1_counts = reader.readSignal(0, 0, 1000, digital=True)
    np.testing.assert_allclose(rec.samples[0], fp1, rtol=0, atol=1e-9)
    digital = rec.digital()
    assert digital is not None
    np.testing.assert_array_equal(digital[0], fp1_counts)
    # The gain is counts per unit, as in WFDB.
    gain = rec.channels[0].adc_gain
    np.testing.assert_allclose(np.diff(rec.samples[0]) * gain, np.diff(fp1_counts), atol=1e-6)


def test_bidmc_csv_rate_from_time_column_and_stripped_names(shared_data: Path) -> None:
    rec = read_recording(shared_data / "csv" / "bidmc" / "bidmc_01_Signals.csv")
    assert rec.sample_rate_hz == pytest.approx(125.0, rel=1e-9)
    assert rec.channel_names == ("RESP", "PLETH", "V", "AVR", "II")
    assert rec.samples.shape == (5, 60001)
    np.testing.assert_allclose(rec.samples[:, 0], [0.35386, 0.43597, 0.52549, 0.30392, 0.72549])
    assert rec.missing_count() == 0
    assert rec.digital() is None


@pytest.mark.parametrize("relative", ["Z/Z001.txt", "N/N001.TXT"])
def test_bonn_eeg_text(shared_data: Path, relative: str) -> None:
    path = shared_data / "bonn_eeg" / relative
    rec = read_recording(path)
    values = np.loadtxt(path)
    assert rec.samples.shape == (1, 4097)
    assert rec.sample_rate_hz == 173.61
    assert rec.channels[0].units == "uV"
    assert rec.channels[0].adc_resolution_bits == 12
    np.testing.assert_array_equal(rec.samples[0], values)
    digital = rec.digital()
    assert digital is not None
    np.testing.assert_array_equal(digital[0], values.astype(np.int16))


# --- NPY -----------------------------------------------------------------------------------


def test_npy_shapes_and_required_rate(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(0)
    one = rng.normal(size=500)
    np.save(tmp_path / "one.npy", one)
    rec = read_recording(tmp_path / "one.npy", sample_rate_hz=100.0)
    assert rec.samples.shape == (1, 500)
    np.testing.assert_array_equal(rec.samples[0], one)
    tall = rng.normal(size=(500, 3))
    np.save(tmp_path / "tall.npy", tall)
    with caplog.at_level(logging.INFO):
        rec = read_recording(tmp_path / "tall.npy", sample_rate_hz=100.0)
    assert rec.samples.shape == (3, 500)
    np.testing.assert_array_equal(rec.samples, tall.T)
    assert "transposed" in caplog.text
    assert rec.digital() is None
    with pytest.raises(InvalidConfigError, match="sample_rate_hz"):
        read_recording(tmp_path / "one.npy")


# --- errors --------------------------------------------------------------------------------


def test_missing_files_name_the_path(tmp_path: Path) -> None:
    for name in ("absent.edf", "absent.csv", "absent.hea"):
        with pytest.raises(InvalidInputError, match=r"absent\.\w+: no such file"):
            read_recording(tmp_path / name)
    with pytest.raises(InvalidInputError, match=r"no such file \(nor a WFDB header .*rec\.hea\)"):
        read_recording(tmp_path / "rec")
    with pytest.raises(InvalidInputError, match=r"directory .* does not exist"):
        write_recording(_synthetic(), tmp_path / "no" / "such" / "dir.csv")


def test_unknown_suffix(tmp_path: Path) -> None:
    path = tmp_path / "signal.xyz"
    path.write_text("1\n2\n")
    with pytest.raises(InvalidInputError, match=r"signal\.xyz.*unsupported file type '\.xyz'"):
        read_recording(path)
    with pytest.raises(InvalidInputError, match="cannot write"):
        write_recording(_synthetic(), tmp_path / "out.wav")


def test_garbled_files_give_one_clear_error(tmp_path: Path) -> None:
    cases = {
        "x.edf": "this is not an EDF file\n",
        "x.npy": "not numpy either",
        "x.txt": "12\nabc\n",
        "x.hea": "garbage header ###\n",
    }
    for name, text in cases.items():
        path = tmp_path / name
        path.write_text(text)
        with pytest.raises(InvalidInputError) as info:
            read_recording(path, sample_rate_hz=100.0)
        message = str(info.value)
        assert str(path.with_suffix("")) in message
        assert "\n" not in message
        assert info.value.__cause__ is None
        assert info.value.__suppress_context__


def test_csv_without_time_column_needs_a_rate(tmp_path: Path) -> None:
    path = tmp_path / "plain.csv"
    path.write_text(" a , b\n1,2\n3,4\n5,6\n")
    with pytest.raises(InvalidConfigError, match="sample_rate_hz"):
        read_recording(path)
    rec = read_recording(path, sample_rate_hz=50.0)
    assert rec.channel_names == ("a", "b")
    np.testing.assert_array_equal(rec.samples, [[1, 3, 5], [2, 4, 6]])


def test_csv_needs_a_header_row_and_whole_rows(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("1,2\n3,4\n")
    with pytest.raises(InvalidInputError, match="header row"):
        read_recording(path, sample_rate_hz=10.0)
    path.write_text("a,b\n1,2\n3\n")
    with pytest.raises(InvalidInputError, match="row 3 has 1 cells, the header has 2"):
        read_recording(path, sample_rate_hz=10.0)


def test_csv_non_numeric_cells_are_missing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "holes.csv"
    path.write_text("time_ms,x [mV],y\n0,1,2\n10,oops,4\n20,5,\n30,7,8\n")
    with caplog.at_level(logging.WARNING):
        rec = read_recording(path)
    assert rec.missing_count() == 2
    assert np.isnan(rec.samples[0, 1])
    assert np.isnan(rec.samples[1, 2])
    assert "2 cells" in caplog.text
    assert rec.channels[0].units == "mV"
    assert rec.channel_names == ("x", "y")
    assert rec.sample_rate_hz == 100.0


def test_unknown_channel_name_lists_the_available_ones(shared_data: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"no channel named 'V1'; available: 'MLII', 'V5'"):
        read_recording(shared_data / "wfdb" / "mitdb" / "100", channels=["V1"], sampto=10)
    with pytest.raises(InvalidInputError, match="select at least one channel"):
        read_recording(shared_data / "wfdb" / "mitdb" / "100", channels=[], sampto=10)
    rec = _synthetic()
    with pytest.raises(InvalidInputError, match="'ECG', 'ABP'"):
        rec.select(["PLETH"])
    with pytest.raises(InvalidInputError, match="out of range"):
        rec.select([2])


def test_edf_mixed_rates_need_a_channel_choice(tmp_path: Path) -> None:
    path = tmp_path / "mixed.edf"
    headers = [
        {
            "label": name,
            "dimension": "uV",
            "sample_frequency": rate,
            "physical_min": -100.0,
            "physical_max": 100.0,
            "digital_min": -32768,
            "digital_max": 32767,
            "prefilter": "",
            "transducer": "",
        }
        for name, rate in (("fast", 100), ("slow", 50), ("fast2", 100))
    ]
    with pyedflib.EdfWriter(str(path), 3, pyedflib.FILETYPE_EDFPLUS) as writer:
        writer.setSignalHeaders(headers)
        writer.writeSamples([np.zeros(200), np.ones(100), np.full(200, 2.0)])
    with pytest.raises(InvalidInputError, match=r"100 Hz: fast, fast2; 50 Hz: slow"):
        read_recording(path)
    rec = read_recording(path, channels=["fast2", 0])
    assert rec.channel_names == ("fast2", "fast")
    assert rec.sample_rate_hz == 100.0
    np.testing.assert_allclose(rec.samples[0], 2.0, atol=200 / 65535)
    assert read_recording(path, channels=["slow"]).sample_rate_hz == 50.0


# --- Recording -----------------------------------------------------------------------------


def test_recording_validation() -> None:
    channel = (ChannelInfo(name="a"),)
    with pytest.raises(InvalidSignalError, match="infinite"):
        Recording(np.array([[0.0, np.inf]]), 10.0, channel)
    with pytest.raises(InvalidSignalError, match="shape"):
        Recording(np.zeros(4), 10.0, channel)
    with pytest.raises(InvalidInputError, match="2 channel descriptions"):
        Recording(np.zeros((1, 4)), 10.0, channel * 2)
    with pytest.raises(InvalidConfigError, match="sample rate"):
        Recording(np.zeros((1, 4)), float("nan"), channel)
    with pytest.raises(InvalidInputError, match="RFC 3339"):
        Recording(np.zeros((1, 4)), 10.0, channel, start_time="yesterday")
    rec = Recording(np.array([[0.0, np.nan, 2.0]]), 10.0, channel)
    assert rec.missing_count() == 1
    assert not rec.samples.flags.writeable


def test_select_and_slice() -> None:
    rec = _synthetic(n=1000, start="2024-03-01T12:00:00+01:00")
    part = rec.select(["ABP", 0]).slice(250, 750)
    assert part.channel_names == ("ABP", "ECG")
    np.testing.assert_array_equal(part.samples, rec.samples[::-1, 250:750])
    assert part.duration_s == pytest.approx(2.0)
    assert part.start_time == "2024-03-01T12:00:01+01:00"
    assert rec.select("ECG").channel_count == 1
    with pytest.raises(InvalidInputError, match="empty sample range"):
        rec.slice(10, 10)
    with pytest.raises(InvalidInputError, match="past the end"):
        rec.slice(0, 1001)


# --- round trips ---------------------------------------------------------------------------


def test_npy_round_trip_is_float32_exact(tmp_path: Path) -> None:
    rec = _synthetic()
    back = read_recording(write_recording(rec, tmp_path / "r.npy"), sample_rate_hz=250.0)
    np.testing.assert_array_equal(back.samples, rec.samples.astype(np.float32))
    np.testing.assert_allclose(back.samples, rec.samples, rtol=2**-24, atol=0)


def test_csv_round_trip_is_exact(tmp_path: Path) -> None:
    rec = _synthetic(rate=360.0)
    samples = rec.samples.copy()
    samples[1, 17] = np.nan
    rec = Recording(samples, 360.0, rec.channels)
    back = read_recording(write_recording(rec, tmp_path / "r.csv"))
    assert back.sample_rate_hz == 360.0
    assert back.channels == rec.channels
    np.testing.assert_array_equal(back.samples, rec.samples)
    assert back.missing_count() == 1


def test_wfdb_round_trip_within_one_half_count(tmp_path: Path) -> None:
    rec = _synthetic(start="2020-01-02T03:04:05")
    samples = rec.samples.copy()
    samples[0, 100] = np.nan
    rec = Recording(samples, rec.sample_rate_hz, rec.channels, start_time=rec.start_time)
    header = write_recording(rec, tmp_path / "syn.hea")
    assert header == tmp_path / "syn.hea"
    back = read_recording(header)
    assert back.channel_names == rec.channel_names
    assert [c.units for c in back.channels] == ["mV", "mmHg"]
    assert back.sample_rate_hz == 250.0
    assert back.start_time == rec.start_time
    assert back.missing_count() == 1
    for row, back_row, channel in zip(rec.samples, back.samples, back.channels, strict=True):
        assert channel.adc_gain > 0
        np.testing.assert_allclose(back_row, row, rtol=0, atol=0.5 / channel.adc_gain + 1e-12)
        assert 0.5 / channel.adc_gain < 1e-3 * np.nanmax(np.abs(row))


def test_wfdb_round_trip_keeps_the_source_adc_counts(shared_data: Path, tmp_path: Path) -> None:
    rec = read_recording(shared_data / "wfdb" / "mitdb" / "100", sampfrom=1000, sampto=4000)
    back = read_recording(write_recording(rec, tmp_path / "m100"))
    assert back.channels == rec.channels
    np.testing.assert_array_equal(back.digital(), rec.digital())
    np.testing.assert_array_equal(back.samples, rec.samples)


def test_edf_round_trip_keeps_length_nan_and_start(tmp_path: Path) -> None:
    rec = _synthetic(n=1234, start="2021-06-07T08:09:10")
    samples = rec.samples.copy()
    samples[1, 5] = np.nan
    rec = Recording(samples, rec.sample_rate_hz, rec.channels, start_time=rec.start_time)
    back = read_recording(write_recording(rec, tmp_path / "r.edf"))
    assert back.samples.shape == rec.samples.shape
    assert back.sample_rate_hz == 250.0
    assert back.channel_names == rec.channel_names
    assert [c.units for c in back.channels] == ["mV", "mmHg"]
    assert back.start_time == rec.start_time
    assert back.missing_count() == 1
    for row, back_row, channel in zip(rec.samples, back.samples, back.channels, strict=True):
        step = 1 / channel.adc_gain
        np.testing.assert_allclose(back_row, row, rtol=0, atol=0.5 * step + 1e-12)
        assert step < 2 * (np.nanmax(row) - np.nanmin(row)) / 65535


def test_edf_round_trip_of_a_real_recording(shared_data: Path, tmp_path: Path) -> None:
    rec = read_recording(shared_data / "edf" / "eegmat" / "Subject00_2.edf", sampto=777)
    back = read_recording(write_recording(rec, tmp_path / "eeg.edf"))
    assert back.channel_names == rec.channel_names
    assert back.start_time == rec.start_time
    assert back.samples.shape == (21, 777)
    steps = np.array([1 / c.adc_gain for c in back.channels])[:, np.newaxis]
    assert np.all(np.abs(back.samples - rec.samples) <= 0.5 * steps + 1e-9)


def test_edf_rate_that_needs_rounding_is_logged(
    shared_data: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    rec = read_recording(shared_data / "bonn_eeg" / "Z" / "Z001.txt")
    with caplog.at_level(logging.WARNING):
        back = read_recording(write_recording(rec, tmp_path / "bonn.edf"))
    assert "other EDF readers will see 173.61017" in caplog.text
    assert back.sample_rate_hz == 173.61
    step = 1 / back.channels[0].adc_gain
    np.testing.assert_allclose(back.samples, rec.samples, rtol=0, atol=0.5 * step + 1e-9)


def test_edf_write_failure_leaves_no_file(tmp_path: Path) -> None:
    rec = _synthetic(rate=1e-4)
    with pytest.raises(InvalidInputError, match=r"r\.edf: cannot write EDF file \(No suitable"):
        write_recording(rec, tmp_path / "r.edf")
    assert not (tmp_path / "r.edf").exists()
    huge = Recording(np.array([[0.0, 3e9]]), 10.0, (ChannelInfo(name="x"),))
    with pytest.raises(InvalidInputError, match="8-character"):
        write_recording(huge, tmp_path / "huge.edf")
    assert not (tmp_path / "huge.edf").exists()
