"""Spikes at the beats (`"spikes": "beats"`, the shipped ecg-rhythm): one spike on each annotated
beat of a real record, whatever the chunking (the server's codes: tests/server/test_beat_agreement.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import wfdb

from sancodec.bundle import load_bundle
from sancodec.channelcoder import ChannelCoder
from sancodec.errors import InvalidConfigError, ProtocolError
from sancodec.plan import CodingPlan, Spikes
from sancodec.streamcoder import CodedChannel

MODELS = Path(__file__).resolve().parents[2] / "models"
FS = 360.0
N = 3 * 16384  # three of ecg-rhythm's blocks


@pytest.fixture(scope="module")
def rhythm() -> CodingPlan:
    plan = CodingPlan.from_manifest(load_bundle(MODELS / "ecg-rhythm" / "1").manifest)
    assert plan.spikes == "beats"
    return plan


@pytest.fixture(scope="module")
def record_208(shared_data: Path) -> tuple[np.ndarray, np.ndarray]:
    """MIT-BIH 208 (a training record, rich in ventricular beats), MLII in mV, and its beats."""
    path = str(shared_data / "wfdb" / "mitdb" / "208")
    x = wfdb.rdrecord(path, sampto=N, channels=[0]).p_signal[:, 0]
    ann = wfdb.rdann(path, "atr", sampto=N)
    beats = ann.sample[np.isin(ann.symbol, list("NLRBAaJSVrFejnE/fQ?"))]
    return x, beats


def _code(plan: CodingPlan, x: np.ndarray, chunk: int) -> list[CodedChannel]:
    coder, out = ChannelCoder(plan), []
    for lo in range(0, x.size, chunk):
        out += [c for w in coder.push(x[lo : lo + chunk]) for c in coder.accept(w, None)]
    out += [c for w in coder.finish() for c in coder.accept(w, None)]
    return out + coder.ready()


def test_every_annotated_beat_gets_one_spike_on_it(rhythm: CodingPlan, record_208: tuple[np.ndarray, np.ndarray]) -> None:  # fmt: skip
    x, beats = record_208
    coded = _code(rhythm, x, 5000)
    spikes = np.concatenate([c.code.san.positions for c in coded])
    values, left = rhythm.codebook.painted(0)
    peaks = spikes - left + int(np.argmax(np.abs(values)))  # where each painted kernel peaks
    window = int(0.15 * FS)
    nearest = np.min(np.abs(peaks[:, None] - beats[None, :]), axis=0)
    assert np.mean(nearest <= window) > 0.98  # sensitivity: 208's ventricular beats included
    extra = np.min(np.abs(beats[:, None] - peaks[None, :]), axis=0) > window
    assert np.mean(extra) < 0.02  # and hardly a spike that is not on a beat
    assert all(np.all(c.code.san.levels != 0) for c in coded)


def test_codes_do_not_depend_on_the_chunking(rhythm: CodingPlan, record_208: tuple[np.ndarray, np.ndarray]) -> None:  # fmt: skip
    x, _ = record_208
    whole = [c.payload for c in _code(rhythm, x, x.size)]
    assert [c.payload for c in _code(rhythm, x, 997)] == whole
    assert [c.payload for c in _code(rhythm, x, 16385)] == whole


def test_a_beat_plan_takes_no_detector_and_an_encoder_plan_needs_one(rhythm: CodingPlan) -> None:
    coder = ChannelCoder(rhythm)
    (window,) = coder.push(np.zeros(16384 + 256))
    none = Spikes(np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0))
    with pytest.raises(ProtocolError, match="come from the beats"):
        coder.accept(window, none)
    encoder_plan = CodingPlan.from_manifest(load_bundle(MODELS / "ecg-lowrate" / "1").manifest)
    other = ChannelCoder(encoder_plan)
    (first, *_) = other.push(np.zeros(8192 + 256))
    with pytest.raises(ProtocolError, match="spikes are missing"):
        other.accept(first, None)
    with pytest.raises(InvalidConfigError, match="sample rate"):
        CodingPlan(rhythm.codebook, 16384, 256, 1.0, rhythm.san_step_exp, spikes="beats")
