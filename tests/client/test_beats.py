"""`sancodec compare --beats/--annotations` on a hand-checked excerpt of MIT-BIH 100, and the
cheap block-path detector (sancodec.beats) against the reference annotations and wfdb."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import numpy as np
import pytest
import wfdb
import wfdb.processing
from cli_runner import CliRun

from client.beats import BEAT_SYMBOLS, qrs_beats, read_reference_beats
from sancodec import metrics
from sancodec.beats import _moving_mean, _running_sums, detect_beats, match_beats, rr_errors_s

FS = 360.0
N = 30 * 360  # the first 30 s of record 100
# Hand-checked in the .atr file: a '+' rhythm label at 18, then 37 beats, 36 N and one A (2044).
# GQRS finds all but the first (at 77, 0.21 s into the signal, inside its start-up).
BEATS_IN_EXCERPT = 37
REMOVED, MOVED = 10, 20  # beats flattened out of and moved later in the "decoded" excerpt
MOVE = 18  # samples: 50 ms


@pytest.fixture(scope="module")
def excerpt(shared_data: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """100's MLII, 0-30 s, as a WFDB record with its own .atr; and a decoded .npy in which beat
    10 is flattened away and beat 20's QRS is moved 50 ms later."""
    folder = tmp_path_factory.mktemp("beats")
    source = str(shared_data / "wfdb" / "mitdb" / "100")
    record = wfdb.rdrecord(source, sampto=N, channels=[0], physical=False)
    wfdb.wrsamp("excerpt", fs=FS, units=["mV"], sig_name=["MLII"], d_signal=record.d_signal,
                fmt=["16"], adc_gain=[200.0], baseline=[1024], write_dir=str(folder))  # fmt: skip
    ann = wfdb.rdann(source, "atr", sampto=N)
    wfdb.wrann("excerpt", "atr", ann.sample, np.asarray(ann.symbol), write_dir=str(folder))
    x = (record.d_signal[:, 0] - 1024) / 200.0
    beats = ann.sample[np.isin(ann.symbol, list(BEAT_SYMBOLS))]
    assert beats.size == BEATS_IN_EXCERPT
    x_hat = x.copy()
    r = beats[REMOVED]
    x_hat[r - 36 : r + 36] = np.linspace(x[r - 36], x[r + 36], 72)
    r = beats[MOVED]
    qrs = x[r - 36 : r + 36].copy()
    x_hat[r - 36 : r + 54] = np.linspace(x[r - 36], x[r + 54], 90)
    x_hat[r - 36 + MOVE : r + 36 + MOVE] = qrs
    np.save(folder / "decoded.npy", x_hat[None, :])
    return folder / "excerpt.hea", folder / "decoded.npy"


def _beats(run: CliRun, *args: str) -> dict[str, object]:
    code, out, err = run("--json", "compare", *args)
    assert code == 0, err
    (channel,) = json.loads(out)["beats"]
    return channel  # type: ignore[no-any-return]


def test_compare_scores_both_signals_against_the_annotations(excerpt: tuple[Path, Path], run: CliRun) -> None:  # fmt: skip
    original, decoded = excerpt
    found = _beats(run, str(original), str(decoded), "--annotations", "atr")
    assert found["reference_beats"] == BEATS_IN_EXCERPT
    assert found["original"] == {"beats": 36, "sensitivity_percent": pytest.approx(100 * 36 / 37), "positive_predictivity_percent": 100.0}  # fmt: skip
    assert found["decoded"] == {
        "beats": 35, "sensitivity_percent": pytest.approx(100 * 35 / 37),
        "positive_predictivity_percent": 100.0,
    }  # fmt: skip
    assert found["agreement_percent"] == pytest.approx(100 * 35 / 36)
    assert found["extra_beats_percent"] == 0.0
    # 35 RR intervals, 2 lost with the removed beat; the moved beat lengthens one of the other
    # 33 by 50 ms and shortens the next by as much.
    assert found["rr_error_mean_ms"] == pytest.approx(2 * 50 / 33)
    assert found["rr_error_p99_ms"] == pytest.approx(50.0)
    by_file = _beats(run, str(original), str(decoded), "--annotations", str(original.with_suffix(".atr")))  # fmt: skip
    assert by_file == found


def test_compare_without_annotations_compares_the_two_detections(excerpt: tuple[Path, Path], run: CliRun) -> None:  # fmt: skip
    original, decoded = excerpt
    found = _beats(run, str(original), str(decoded), "--beats")
    assert found["reference_beats"] is found["original"] is found["decoded"] is None
    assert (found["original_beats"], found["decoded_beats"]) == (36, 35)
    assert found["agreement_percent"] == pytest.approx(100 * 35 / 36)
    code, out, _ = run("compare", str(original), str(decoded), "--beats")
    assert code == 0
    assert "agreement 97.22% of the original's beats kept" in out
    code, out, _ = run("compare", str(original), str(decoded))
    assert (
        "beats" not in out
    )  # beats only when asked: the detector takes seconds on long recordings


def test_compare_refuses_annotations_it_cannot_find(excerpt: tuple[Path, Path], run: CliRun) -> None:  # fmt: skip
    original, decoded = excerpt
    code, _, err = run("compare", str(original), str(decoded), "--annotations", "qrs")
    assert code == 2
    assert "cannot read annotations" in err


# The least share of the annotated beats (Se and PPV) the block detector finds in the first five
# minutes, and of GQRS's: 208 and 228 hold runs of PVCs and beats of very different sizes.
BLOCK_DETECTOR_FLOOR = {"100": 0.99, "105": 0.99, "208": 0.98, "228": 0.95, "233": 0.99}


@pytest.mark.parametrize("record", sorted(BLOCK_DETECTOR_FLOOR))
def test_block_detector_finds_the_annotated_beats(shared_data: Path, record: str) -> None:
    """The server's detector, block by block (2048 samples) on 5 minutes, against the .atr."""
    path = shared_data / "wfdb" / "mitdb" / record
    x = wfdb.rdrecord(str(path), sampto=108000, channels=[0]).p_signal[:, 0]
    found = np.concatenate(
        [detect_beats(x[lo : lo + 2048], FS) + lo for lo in range(0, x.size, 2048)]
    )
    reference = read_reference_beats("atr", path, x.size)
    scored = wfdb.processing.compare_annotations(reference, found, int(0.15 * FS))
    floor = BLOCK_DETECTOR_FLOOR[record]
    assert min(scored.sensitivity, scored.positive_predictivity) > floor
    agreement = metrics.beat_agreement(qrs_beats(x, FS), found, int(0.15 * FS))
    assert agreement > floor


def test_matching_agrees_with_wfdb_compare_annotations(shared_data: Path) -> None:
    x = wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / "208"), sampto=108000, channels=[0])
    signal = x.p_signal[:, 0]
    gqrs, cheap = qrs_beats(signal, FS), detect_beats(signal, FS)
    scored = wfdb.processing.compare_annotations(gqrs, cheap, int(0.15 * FS))
    kept, _ = match_beats(gqrs, cheap, int(0.15 * FS))
    assert kept.size == scored.tp
    assert metrics.beat_agreement(gqrs, cheap, int(0.15 * FS)) == pytest.approx(scored.sensitivity)


def test_beat_figures_of_plain_cases() -> None:
    assert detect_beats(np.zeros(3600), FS).size == 0
    assert detect_beats(np.full(3600, np.nan), FS).size == 0
    assert np.isnan(metrics.beat_agreement([], [5], 10))
    assert metrics.beat_agreement([100, 200, 300], [95, 290, 410], 10) == pytest.approx(2 / 3)
    # one test beat cannot stand for two reference beats
    assert match_beats([100, 104], [102], 5)[0].tolist() == [0]
    errors = rr_errors_s([0, 360, 720, 1080], [0, 378, 720, 1080], FS)
    assert errors.tolist() == pytest.approx([0.05, 0.05, 0.0])


def test_compare_detects_beats_in_millivolts_whatever_the_units(excerpt: tuple[Path, Path], run: CliRun, tmp_path: Path) -> None:  # fmt: skip
    """The same excerpt stored in µV gives the same beats: GQRS's thresholds are in mV."""
    original, decoded = excerpt
    record = wfdb.rdrecord(str(original.with_suffix("")), physical=False)
    wfdb.wrsamp("excerpt", fs=FS, units=["uV"], sig_name=["MLII"], d_signal=record.d_signal,
                fmt=["16"], adc_gain=[0.2], baseline=[1024], write_dir=str(tmp_path))  # fmt: skip
    in_uv = _beats(run, str(tmp_path / "excerpt.hea"), str(original), "--beats")
    assert in_uv["original_beats"] == in_uv["decoded_beats"] == 36
    assert in_uv["agreement_percent"] == 100.0
    wfdb.wrsamp("pressure", fs=FS, units=["mmHg"], sig_name=["ABP"], d_signal=record.d_signal,
                fmt=["16"], adc_gain=[200.0], baseline=[1024], write_dir=str(tmp_path))  # fmt: skip
    code, _, err = run("compare", str(tmp_path / "pressure.hea"), str(decoded), "--beats")
    assert code == 2
    assert "'ABP' is in 'mmHg': beats are detected in voltages" in err


def test_the_detectors_percentile_is_numpys() -> None:
    """The block-path detector's thresholds come from a partial sort instead of np.percentile
    (a third of its time): the very same floats."""
    from sancodec.beats import _percentile

    rng = np.random.default_rng(1)
    for n in [*range(1, 40), 1440, 4096]:
        x = rng.gamma(0.5, 2.0, n)
        for q in (10, 50, 90, 99):
            assert _percentile(x, q) == float(np.percentile(x, q))


@pytest.mark.parametrize("width", [1, 2, 3, 14, 36, 72, 500])
def test_the_moving_mean_is_a_centred_box_filter(width: int) -> None:
    """np.convolve(x, box, "same"), zeros beyond the ends (for inputs at least a box long)."""
    rng = np.random.default_rng(width)
    for n in (width, width + 1, width + 7, 4096):
        x = rng.normal(size=n)
        box = np.convolve(x, np.ones(width) / width, "same")
        assert np.allclose(_moving_mean(_running_sums(x), width), box, atol=1e-12)


def _numpy_detector(x: np.ndarray, fs: float) -> np.ndarray:
    """The detector as the module's docstring states it, in plain NumPy (the compiled one's
    reference): running sums by np.cumsum, moving means as slices of them, np.gradient,
    np.percentile per stretch, runs above the threshold."""

    def moving_mean(x: np.ndarray, width: int) -> np.ndarray:
        sums = np.concatenate(([0.0], np.cumsum(x)))
        before = width - 1 - (width - 1) // 2
        ends = np.clip(np.arange(x.size) + width - before, 0, x.size)
        return (sums[ends] - sums[np.clip(np.arange(x.size) - before, 0, x.size)]) / width

    band = moving_mean(x, round(0.040 * fs)) - moving_mean(x, round(0.200 * fs))
    slope = np.gradient(band)
    energy = moving_mean(slope * slope, round(0.100 * fs))
    count = max(1, energy.size // round(4.0 * fs))
    edges = np.linspace(0, energy.size, count + 1).astype(np.int64)
    levels = np.array([np.percentile(energy[a:b], 90) for a, b in itertools.pairwise(edges)])
    levels = np.maximum(levels, 0.05 * levels.max())
    above = energy > np.repeat(0.4 * levels, np.diff(edges))
    flips = np.flatnonzero(np.diff(np.concatenate(([0], above.view(np.int8), [0]))))
    kept: list[int] = []
    for a, b in zip(flips[::2], flips[1::2], strict=True):
        p = a + int(np.argmax(np.abs(band[a:b])))
        if kept and p - kept[-1] < round(0.200 * fs):
            if abs(band[p]) > abs(band[kept[-1]]):
                kept[-1] = p
            continue
        kept.append(p)
    return np.asarray(kept, dtype=np.int64)


@pytest.mark.parametrize("record", ["100", "208", "233"])
def test_the_compiled_detector_is_the_numpy_one(shared_data: Path, record: str) -> None:
    """Same beats, blocks and whole excerpts, clean and noisy, at three sample rates."""
    x = wfdb.rdrecord(str(shared_data / "wfdb" / "mitdb" / record), sampto=6 * 4096).p_signal
    rng = np.random.default_rng(int(record))
    for lead in x.T:
        for lo, n in ((0, lead.size), (4096, 4096), (9000, 2048), (20000, 700)):
            part = lead[lo : lo + n]
            for y in (part, part + rng.normal(scale=0.05, size=part.size)):
                for fs in (360.0, 250.0, 128.0):
                    found = detect_beats(y, fs)
                    assert np.array_equal(found, _numpy_detector(y, fs)), (lo, n, fs)
