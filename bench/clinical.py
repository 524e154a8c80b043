"""Clinical fidelity (issue #15): does a decoded ECG keep the beats a clinician reads?

From the repository root: `make bench`, or `PYTHONPATH=. python -m bench.clinical [--write-docs]
[--records 100 105 ...]`. Results go to docs/benchmarks.md ("Beats") and docs/models.md.

Protocol (compression.md §11):
- data: every shared MIT-BIH record (all carry `.atr`), channel 0 (MLII) in mV, samples
  [108000, 214496): the shipped models' five test minutes cut to whole 2048-sample blocks, so that
  every codec codes the same samples; the models' training and validation records are marked;
- each shipped ECG model at its shipped steps and at one coarser step, coded as the server codes
  (`training.codec_eval.code_signal` with the exported encoder in ONNX Runtime); rate from the real
  block bytes with the kernels charged once per record (fp16);
- at the same rate: the wavelet coder of compression.md §2c (bior4.4 L5, H0 rate; its step found by
  bisection) and `bioleptic` (real bytes; cdf97 at scales 6-12, its quant_multiplier found by
  bisection; the scale with the lowest PRDN is kept: the peer's best case);
- beats: wfdb's GQRS on the original and on each decoded signal, scored against the `.atr` beat
  annotations with compare_annotations (150 ms): sensitivity (Se) and positive predictivity (PPV);
  the share of the original's detections the decoded ones keep; the RR-interval error;
- the server's block-path detector (sancodec.beats, per 2048-sample block) against the same
  annotations and against GQRS, which is what licenses it for the live metric.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import asdict
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pywt
import wfdb

from bench.baselines import wavelet_coder
from bench.san_sweeps import served_stream
from client.beats import beat_fidelity, qrs_beats, read_reference_beats, score
from sancodec import metrics
from sancodec.beats import BEAT_TOLERANCE_S, detect_beats
from sancodec.bundle import Bundle, load_bundle
from sancodec.quantization import Quantizer
from sancodec.streamcoder import CodingPlan
from training.codec_eval import Detector, onnx_detector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wfdb" / "mitdb"
RECORDS = ("100", "101", "103", "105", "106", "200", "208", "210", "228", "233", "234")
SEEN = {"101": "trained", "106": "trained", "208": "trained", "228": "trained", "103": "validation"}
FS = 360.0
BLOCK = 2048
SPAN = (108000, 108000 + (108000 // BLOCK) * BLOCK)
# (model, the step that moves, steps): None is the shipped step
OPERATING_POINTS = (
    ("ecg", "residual", (None, 4.0)),
    ("ecg-lowrate", "san", (None, 1.0)),
    ("ecg-rhythm", "san", (None, 2.0)),
)
BIOLEPTIC_SCALES = (6, 8, 10, 12)

__all__ = ["OPERATING_POINTS", "RECORDS", "bioleptic_at", "model_point", "run_record", "wavelet_at"]


def load(record: str) -> tuple[np.ndarray, np.ndarray]:
    """MLII in mV over SPAN, and the reference beats in it (sample indices from SPAN's start)."""
    path = DATA / record
    x = wfdb.rdrecord(str(path), sampfrom=SPAN[0], sampto=SPAN[1], channels=[0]).p_signal[:, 0]
    beats = read_reference_beats("atr", path, SPAN[1])
    return x, beats[beats >= SPAN[0]] - SPAN[0]


@lru_cache(maxsize=4)
def _shipped(name: str) -> tuple[Bundle, Detector]:
    bundle = load_bundle(ROOT / "models" / name / "1")
    session = ort.InferenceSession(str(bundle.encoder_path), providers=["CPUExecutionProvider"])
    return bundle, onnx_detector(session)


def model_point(name: str, x: np.ndarray, which: str = "residual", step: float | None = None) -> dict[str, Any]:  # fmt: skip
    """A shipped model on `x` (mV) as the server codes it (kernels fitted to the stream where the
    model adapts, their updates in the block bytes): rate with the model's kernels charged once
    besides, PRDN, and the decoded signal (`x_hat`)."""
    bundle, detect = _shipped(name)
    m = bundle.manifest
    plan = CodingPlan.from_manifest(m)
    if step is not None:
        plan = dataclasses.replace(
            plan, **{f"{which}_step_exp": Quantizer.from_step(step).step_exp}
        )
    coded, code_bytes = served_stream(bundle, plan, x, detect)
    x_hat = np.concatenate([c.reconstruction for c in coded]) * plan.scale
    kernel_bits = 16 * m.codebook.weight_count
    bps = metrics.bits_per_sample(code_bytes, x.size) + kernel_bits / x.size
    label = "shipped" if step is None else f"{which} step {step:g}"
    return {
        "method": f"{name} ({label})",
        "bps": bps,
        "prdn": metrics.prdn(x, x_hat),
        "x_hat": x_hat,
    }


def _bisect(rate: Callable[[float], float], target: float, low: float, high: float) -> float:
    """The largest log2-parameter in [low, high] whose rate stays at or under `target` (rate
    rises with the parameter); `low` when even that is over."""
    for _ in range(24):
        middle = (low + high) / 2
        if rate(middle) <= target:
            low = middle
        else:
            high = middle
    return low


def wavelet_at(x: np.ndarray, target_bps: float) -> dict[str, Any]:
    """compression.md §2c's wavelet coder (H0 rate) at the finest step within `target_bps`."""

    def coded(log_step: float) -> dict[str, Any]:
        return wavelet_coder(x, 2.0**-log_step, block=BLOCK)

    log_step = _bisect(lambda s: coded(s)["bps"], target_bps, -8.0, 16.0)
    r, step = coded(log_step), 2.0**-log_step
    blocks = pywt.waverec([q * step for q in r["coefficients"]], "bior4.4", mode="periodization", axis=-1)  # fmt: skip
    return {"method": "wavelet bior4.4 L5 (H0)", "bps": r["bps"], "prdn": r["prdn"],
            "x_hat": blocks[:, :BLOCK].ravel()}  # fmt: skip


def bioleptic_at(x: np.ndarray, target_bps: float) -> dict[str, Any]:
    """bioleptic (real bytes) within `target_bps`: the scale with the lowest PRDN there."""
    import bioleptic

    def coded(scale: int, log_q: float) -> tuple[float, np.ndarray]:
        options = bioleptic.CompressionOptions("cdf97", scale, "medium", "auto", 2.0**log_q)
        data = bioleptic.compress_signal(x.astype(np.float64), options)
        return 8.0 * len(data) / x.size, np.asarray(bioleptic.decompress_signal(data), np.float64)

    best: dict[str, Any] | None = None
    for scale in BIOLEPTIC_SCALES:
        bps, x_hat = coded(scale, _bisect(lambda q, s=scale: coded(s, q)[0], target_bps, -6.0, 10.0))  # fmt: skip
        point = {"method": "bioleptic cdf97", "bps": bps, "prdn": metrics.prdn(x, x_hat[: x.size]),
                 "x_hat": x_hat[: x.size], "scale": scale}  # fmt: skip
        if best is None or point["prdn"] < best["prdn"]:
            best = point
    assert best is not None
    return best


def block_detector(x: np.ndarray, reference: np.ndarray) -> dict[str, float]:
    """The server's detector, block by block, against the annotations and against GQRS."""
    found = np.concatenate([detect_beats(x[lo : lo + BLOCK], FS) + lo for lo in range(0, x.size, BLOCK)])  # fmt: skip
    scored = score(reference, found, FS)
    gqrs = qrs_beats(x, FS)
    tolerance = int(BEAT_TOLERANCE_S * FS)
    return {
        "se": scored.sensitivity_percent, "ppv": scored.positive_predictivity_percent,
        "qrs_kept": 100 * metrics.beat_agreement(gqrs, found, tolerance),
        "qrs_extra": 100 * (1 - metrics.beat_agreement(found, gqrs, tolerance)),
    }  # fmt: skip


def run_record(record: str, peers: bool = True) -> dict[str, Any]:
    """Every operating point on one record, with the peers at each point's rate."""
    x, reference = load(record)
    points = []
    for name, which, steps in OPERATING_POINTS:
        for step in steps:
            point = model_point(name, x, which, step)
            group = [point]
            if peers:
                group += [wavelet_at(x, point["bps"]), bioleptic_at(x, point["bps"])]
            for p in group:
                fidelity = beat_fidelity("MLII", x, p.pop("x_hat"), FS, reference)
                points.append({**p, "at": point["method"], "beats": asdict(fidelity)})
    return {"record": record, "seen": SEEN.get(record, ""), "reference_beats": int(reference.size),
            "points": points, "detector": block_detector(x, reference)}  # fmt: skip


def main() -> int:
    from bench.clinical_report import report

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    parser.add_argument("--records", nargs="*", default=list(RECORDS))
    parser.add_argument("--write-docs", action="store_true", help="rewrite the Beats sections of docs/")  # fmt: skip
    args = parser.parse_args()
    started = time.perf_counter()
    results = []
    for record in args.records:
        t0 = time.perf_counter()
        results.append(run_record(record))
        print(f"record {record}: {time.perf_counter() - t0:.1f} s", flush=True)
    report(results, args.write_docs, time.perf_counter() - started)
    return 0 if all(math.isfinite(p["bps"]) for r in results for p in r["points"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
