"""Rate-distortion benchmark (compression.md §8): shipped SAN ECG models vs wavelet, DCT and
lossless coders on the MIT-BIH records the models never saw.

From the repository root: `make bench`, or `PYTHONPATH=. python bench/rate_distortion.py [--records 100 105 ...]`

Protocol (docs/rate-distortion.md):
- data: channel 0 (MLII), samples [108000, 216000) of each unseen record (the 5 minutes the
  shipped models were tested on), ADC counts minus the ADC zero, cut to whole 2048-sample blocks
  (52 blocks = 106 496 samples) so that every method codes exactly the same samples; the SAN
  models get physical mV = counts / 200 (PRDN is scale-free);
- wavelet (bior4.4, L5, periodization, uniform Δ) and DCT-64: H0 rate estimate (bench.baselines);
- the same quantized wavelet coefficients through our real sparse coder
  (sancodec.sparse_stream.encode_sparse with dyadic_bands(2048)), real bytes, plus a 2-byte
  coefficient count per block;
- SAN models: training.codec_eval.measure with the exported encoder in ONNX Runtime, rate from the
  real serialized block bytes; the kernels are then charged (fp16) once per record and, as a
  second figure, once per block; beside it the H0 estimate of the same code's streams;
- lossless: FLAC and zstd-19 (on first differences), real bytes.
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.interpolate

from bench.baselines import (
    dct_coder,
    flac_bps,
    h0_bits,
    interpolate_bps_at_prdn,
    interpolate_prdn_at_bps,
    load_mitdb_adc,
    pareto_envelope,
    sweep,
    wavelet_coder,
    zstd_bps,
)
from sancodec.bundle import load_bundle
from sancodec.metrics import bits_per_sample
from sancodec.quantization import Quantizer
from sancodec.sparse_stream import dyadic_bands, encode_sparse
from sancodec.streamcoder import CodingPlan
from training.codec_eval import code_signal, measure, onnx_detector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wfdb" / "mitdb"
OUT_DIR = ROOT / "docs" / "rate-distortion"
UNSEEN = ("100", "105", "200", "210", "233", "234")
SPAN = (108000, 216000)
BLOCK = 2048
COUNTS_PER_MV = 200.0
WAVELET_STEPS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DCT_STEPS = WAVELET_STEPS
# residual steps in model units; the SAN step stays the manifest's
ECG_RESIDUAL_STEPS = (0.05, 0.1, 0.15, 0.3, 0.6, 1.0, 2.0, 4.0, 8.0)
LOWRATE_SAN_STEPS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
PRDN_TARGETS = (2.0, 5.0, 9.0, 20.0, 30.0)
BPS_TARGETS = (0.1, 0.25, 0.5, 1.0)
COUNT_BYTES = 2  # per-block coefficient count of the sparse wavelet coder


def wavelet_sparse_sweep(x: np.ndarray, steps: tuple[float, ...]) -> list[dict]:
    """The bench wavelet coder's quantized coefficients, coded by our sparse coder (real bytes)."""
    bands = dyadic_bands(BLOCK)
    points = []
    for step in steps:
        r = wavelet_coder(x, step)
        flat = np.concatenate(r["coefficients"], axis=1)  # (n_blocks, 2048), coarsest first
        total = 0
        for row in flat:
            (idx,) = np.nonzero(row)
            total += len(encode_sparse(idx, row[idx], 0, bands)) + COUNT_BYTES
        bps = bits_per_sample(total, r["n_samples"])
        points.append({"step": float(step), "bps": bps, "prdn": r["prdn"], "prd": r["prd"]})
    return points


def _code_h0_bits(coded: list[Any]) -> float:
    """H0 estimate of a SAN code: gaps, kernel ids, levels, offsets; residual gaps and levels."""
    gaps, ids, levels, offsets, r_gaps, r_levels = [], [], [], [], [], []
    for c in coded:
        san = c.code.san
        order = np.argsort(san.positions, kind="stable")
        gaps.append(np.diff(san.positions[order] - c.start, prepend=0))
        ids.append(san.kernel_ids[order])
        levels.append(san.levels[order])
        offsets.append(san.offset_level)
        if c.code.residual is not None:
            r_gaps.append(np.diff(np.asarray(c.code.residual.indices), prepend=-1))
            r_levels.append(np.asarray(c.code.residual.levels))
    streams = [np.concatenate(s) for s in (gaps, ids, levels, r_gaps, r_levels) if s]
    streams.append(np.diff(np.asarray(offsets), prepend=0))
    counts = [c.code.san.spike_count for c in coded]
    streams.append(np.asarray(counts))
    if r_gaps:
        streams.append(np.asarray([g.size for g in r_gaps]))
    return sum(h0_bits(s) for s in streams)


def san_sweep(bundle_dir: Path, x_mv: np.ndarray, which: str, steps: tuple[float, ...]) -> dict:
    """Operating points of one shipped model: real bytes, kernels charged per record/per block."""
    m = load_bundle(bundle_dir).manifest
    session = ort.InferenceSession(
        str(bundle_dir / "encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    detect = onnx_detector(session)
    n = x_mv.size
    kernel_bits = 16 * m.codebook.weight_count
    blocks = math.ceil(n / m.block_length)
    curves: dict[str, list[dict]] = {"real": [], "per_record": [], "per_block": [], "h0": []}
    seconds = 0.0
    for step in steps:
        san_exp, res_exp = m.san_step_exp, m.residual_step_exp
        if which == "residual":
            res_exp = Quantizer.from_step(step).step_exp
        else:
            san_exp = Quantizer.from_step(step).step_exp
        plan = CodingPlan(
            m.codebook, m.block_length, m.context, m.normalization.scale, san_exp, res_exp
        )
        t0 = time.perf_counter()
        r = measure(plan, x_mv, detect)
        seconds += time.perf_counter() - t0
        h0 = _code_h0_bits(code_signal(plan, x_mv, detect))
        base = {"step": float(step), "prdn": r["prdn_percent"], "prd": math.nan}
        bps = r["bits_per_sample"]
        curves["real"].append({**base, "bps": bps})
        curves["per_record"].append({**base, "bps": bps + kernel_bits / n})
        curves["per_block"].append({**base, "bps": bps + kernel_bits * blocks / n})
        curves["h0"].append({**base, "bps": h0 / n + kernel_bits / n})
    return {
        "curves": curves,
        "samples_per_s": n * len(steps) / seconds,
        "kernel_bps_record": kernel_bits / n,
        "kernel_bps_block": kernel_bits * blocks / n,
    }


def bd_rate(test: list[dict], anchor: list[dict]) -> float:
    """Bjøntegaard rate difference (%) of `test` vs `anchor`: pchip of log10(bps) over
    SNR_N = -20 log10(PRDN/100) on each lower envelope, mean over the overlapping SNR range."""

    def curve(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        env = pareto_envelope(points)
        snr = np.array([-20 * math.log10(d / 100) for _, d in env])
        lr = np.array([math.log10(b) for b, _ in env])
        return snr, lr  # snr increases with bps

    s1, r1 = curve(test)
    s0, r0 = curve(anchor)
    if s1.size < 2 or s0.size < 2:
        return math.nan
    lo, hi = max(s1[0], s0[0]), min(s1[-1], s0[-1])
    if hi <= lo:
        return math.nan
    grid = np.linspace(lo, hi, 200)
    p1 = scipy.interpolate.PchipInterpolator(s1, r1)(grid)
    p0 = scipy.interpolate.PchipInterpolator(s0, r0)(grid)
    return float((10 ** np.mean(p1 - p0) - 1) * 100)


def run_record(record: str) -> dict[str, Any]:
    x = load_mitdb_adc(DATA / record)[SPAN[0] : SPAN[1]]
    x = x[: (x.size // BLOCK) * BLOCK]
    x_mv = x / COUNTS_PER_MV
    t0 = time.perf_counter()
    methods: dict[str, list[dict]] = {
        "wavelet bior4.4 L5 (H0)": sweep(x, wavelet_coder, WAVELET_STEPS),
        "wavelet bior4.4 L5 (our sparse coder)": wavelet_sparse_sweep(x, WAVELET_STEPS),
        "DCT-64 (H0)": sweep(x, dct_coder, DCT_STEPS),
    }
    t_base = time.perf_counter() - t0
    ecg = san_sweep(ROOT / "models" / "ecg" / "1", x_mv, "residual", ECG_RESIDUAL_STEPS)
    low = san_sweep(ROOT / "models" / "ecg-lowrate" / "1", x_mv, "san", LOWRATE_SAN_STEPS)
    for name, res in (("ecg", ecg), ("ecg-lowrate", low)):
        c = res["curves"]
        methods[f"{name} (real bytes)"] = c["real"]
        methods[f"{name} (+kernels/record)"] = c["per_record"]
        methods[f"{name} (+kernels/block)"] = c["per_block"]
        methods[f"{name} (H0 +kernels/record)"] = c["h0"]
    lossless = {
        "FLAC": flac_bps(x),
        "zstd-19 (deltas)": zstd_bps(x, 19, delta=True),
    }
    return {
        "record": record,
        "n": int(x.size),
        "methods": methods,
        "lossless": lossless,
        "speed": {"ecg": ecg["samples_per_s"], "ecg-lowrate": low["samples_per_s"]},
        "kernel_bps": {
            n: (r["kernel_bps_record"], r["kernel_bps_block"])
            for n, r in (("ecg", ecg), ("ecg-lowrate", low))
        },
        "baseline_seconds": t_base,
    }


def summarize(points: list[dict]) -> list[float]:
    return [interpolate_bps_at_prdn(points, t) for t in PRDN_TARGETS] + [
        interpolate_prdn_at_bps(points, t) for t in BPS_TARGETS
    ]


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def table(rows: dict[str, list[float]]) -> str:
    head = ["method"] + [f"bps@PRDN {t:g}%" for t in PRDN_TARGETS]
    head += [f"PRDN%@{t:g} bps" for t in BPS_TARGETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, vals in rows.items():
        lines.append("| " + " | ".join([name] + [_fmt(v) for v in vals]) + " |")
    return "\n".join(lines)


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 6))
    styles = {"(H0 +": ":", "kernels/block": "--"}
    for name, raw in result["methods"].items():
        pts = sorted(raw, key=lambda p: p["bps"])
        ls = next((v for k, v in styles.items() if k in name), "-")
        ax.loglog([p["bps"] for p in pts], [p["prdn"] for p in pts], ls, marker="o", ms=3,
                  label=name)  # fmt: skip
    for name, bps in result["lossless"].items():
        ax.axvline(bps, color="grey", lw=0.8, ls="-.")
        ax.text(bps, 0.6, f" {name} {bps:.2f}", rotation=90, fontsize=7, va="bottom")
    ax.set_xlabel("bits per sample")
    ax.set_ylabel("PRDN (%)")
    ax.set_title(f"MIT-BIH {result['record']}, ch 0, samples {SPAN[0]}..{SPAN[0] + result['n']}")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", nargs="*", default=list(UNSEEN))
    args = parser.parse_args()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    results = []
    for record in args.records:
        t0 = time.perf_counter()
        r = run_record(record)
        plot(r, OUT_DIR / f"{record}.png")
        results.append(r)
        print(f"record {record}: {time.perf_counter() - t0:.1f} s", flush=True)
    names = list(results[0]["methods"])
    out = []
    pooled = {n: np.mean([summarize(r["methods"][n]) for r in results], axis=0) for n in names}
    for r in results:
        rows = {n: summarize(r["methods"][n]) for n in names}
        lossless = ", ".join(f"{k} {v:.3f} b/s" for k, v in r["lossless"].items())
        san = []
        for n in ("ecg (real bytes)", "ecg-lowrate (real bytes)"):
            pts = ", ".join(
                f"{p['step']:g}: {p['bps']:.3f}/{p['prdn']:.1f}" for p in r["methods"][n]
            )
            san.append(f"- {n}, step: b/s / PRDN %: {pts}")
        out.append(f"### Record {r['record']}\n\n{table(rows)}\n\nLossless: {lossless}.\n")
        out.append("\n".join(san) + "\n")
    bd_names = [n for n in names if n.startswith("ecg")]
    anchors = ("wavelet bior4.4 L5 (H0)", "wavelet bior4.4 L5 (our sparse coder)")
    bd_lines = ["| SAN curve | anchor | " + " | ".join(r["record"] for r in results) + " | mean |",
                "|---|---|" + "---|" * (len(results) + 1)]  # fmt: skip
    for n in bd_names:
        for a in anchors:
            vals = [bd_rate(r["methods"][n], r["methods"][a]) for r in results]
            mean = float(np.nanmean(vals)) if not all(math.isnan(v) for v in vals) else math.nan
            cells = ["–" if math.isnan(v) else f"{v:+.0f}%" for v in [*vals, mean]]
            bd_lines.append(f"| {n} | {a} | " + " | ".join(cells) + " |")
    lossless_mean = {k: float(np.mean([r["lossless"][k] for r in results])) for k in
                     results[0]["lossless"]}  # fmt: skip
    speed = {k: float(np.mean([r["speed"][k] for r in results])) for k in ("ecg", "ecg-lowrate")}
    kern = results[0]["kernel_bps"]
    total = time.perf_counter() - t_start
    report = "\n".join([
        f"<!-- generated by bench/rate_distortion.py on {time.strftime('%Y-%m-%d %H:%M %Z')}, "
        f"{platform.node()} ({platform.machine()}, {platform.processor() or 'cpu'}), "
        f"{total:.0f} s -->",
        "## Per record", *out,
        "## BD-rate (Bjøntegaard, % rate change vs the anchor; negative = SAN cheaper)\n",
        "\n".join(bd_lines), "",
        f"SAN code+decode throughput inside measure() (ONNX encoder, CPU, both layers): "
        f"ecg {speed['ecg']:.0f} samples/s, ecg-lowrate {speed['ecg-lowrate']:.0f} samples/s.",
        f"Kernel charge (fp16): ecg {kern['ecg'][0]:.4f} b/s once per record, "
        f"{kern['ecg'][1]:.3f} b/s per block; ecg-lowrate {kern['ecg-lowrate'][0]:.4f} / "
        f"{kern['ecg-lowrate'][1]:.3f} b/s.", "",
        "## Pooled (mean over all records; – if undefined on any record)\n", table(pooled), "",
        "Lossless (mean): " + ", ".join(f"{k} {v:.3f} b/s" for k, v in lossless_mean.items()),
    ])  # fmt: skip
    print(report)
    print(f"total {total:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
