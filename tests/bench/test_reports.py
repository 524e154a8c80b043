"""The paper-metric baseline (bench/paper_metric.py) and how `make bench` rewrites the docs."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from bench.paper_metric import wavelet_scores
from bench.rd_report import replace_section


def test_wavelet_scores_follow_the_papers_accounting(mitdb100: np.ndarray) -> None:
    x = mitdb100[:2000].astype(np.float64)
    windows = np.stack([(w - w.mean()) / w.std() for w in x.reshape(2, 1000)]).astype(np.float32)
    scores = wavelet_scores(windows, range(1, 1001))
    inv_cr, loss, phi = scores.T
    assert inv_cr[0] == pytest.approx(2 / 1000)  # one index and one amplitude per kept value
    assert inv_cr[-1] == pytest.approx(2.0)
    assert loss[-1] < 1e-4  # every coefficient kept: the transform inverts (float32 windows)
    assert loss[0] > 0.5  # one coefficient of a beat's worth of ECG explains little
    # L1 loss of a biorthogonal wavelet need not fall with every kept value, but it falls overall
    assert loss[0] > loss[9] > loss[99] > loss[999]
    assert phi == pytest.approx(np.hypot(inv_cr, loss), abs=0.05)  # mean of per-window φ
    assert phi.min() < 0.3  # the fixed wavelet's best trade-off on record 100


def test_replace_section_keeps_the_hand_written_rest(tmp_path: Path) -> None:
    doc = tmp_path / "doc.md"
    doc.write_text("# Title\n\nhand-written\n")
    replace_section(doc, "rd", "first run")
    replace_section(doc, "rd", "second run")
    text = doc.read_text()
    assert text.startswith("# Title\n\nhand-written\n\n<!-- begin rd")
    assert "second run" in text
    assert "first run" not in text
    doc.write_text(text + "\nmore notes\n")
    replace_section(doc, "rd", "third run")
    assert doc.read_text().endswith("third run\n<!-- end rd -->\n\nmore notes\n")


def test_the_peers_best_case_is_a_lower_convex_hull_of_real_points(mitdb100: np.ndarray) -> None:
    from bench.peers import bioleptic_sweep, lower_hull

    hull = bioleptic_sweep(mitdb100[:8192].astype(np.float64))
    assert len(hull) >= 4
    assert all(a["bps"] < b["bps"] and a["prdn"] > b["prdn"] for a, b in itertools.pairwise(hull))
    slopes = [(b["prdn"] - a["prdn"]) / (b["bps"] - a["bps"]) for a, b in itertools.pairwise(hull)]
    assert all(s1 <= s2 + 1e-9 for s1, s2 in itertools.pairwise(slopes))  # convex from below
    square = [{"bps": 1.0, "prdn": 10.0}, {"bps": 2.0, "prdn": 9.0}, {"bps": 4.0, "prdn": 2.0}]
    assert [p["bps"] for p in lower_hull(square)] == [1.0, 4.0]  # the middle lies above the chord
