"""The paper-metric baseline (bench/paper_metric.py) and how `make bench` rewrites the docs."""

from __future__ import annotations

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


def test_ideal_adaptive_binary_code_length(mitdb100: np.ndarray) -> None:
    import pywt

    from bench.entropy_estimate import adaptive_binary_bits
    from sancodec.sparse_stream import dyadic_bands, encode_sparse

    bands = dyadic_bands(2048)
    assert adaptive_binary_bits(np.zeros(2048 + 64, dtype=np.int64), bands) == 0.0
    flat = np.concatenate(pywt.wavedec(mitdb100[:2048], "bior4.4", mode="periodization", level=5))
    levels = np.rint(flat / 24).astype(np.int64)
    (where,) = np.nonzero(levels)
    ideal = adaptive_binary_bits(levels, bands)
    rice = 8 * len(encode_sparse(where, levels[where], 0, bands))
    # every value pays its sign and at least a fraction of a bit for its gap and magnitude
    assert where.size < ideal < rice
