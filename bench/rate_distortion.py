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
import io
import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pywt
import scipy.interpolate

from bench import entropy_estimate, paper_metric
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
from sancodec.binary_stream import decode_binary, encode_binary
from sancodec.bundle import load_bundle
from sancodec.codes import BlockCode, EntropyCoder, parse_block
from sancodec.decoder import decode
from sancodec.header import ChannelInfo, StreamHeader
from sancodec.metrics import bits_per_sample, prdn
from sancodec.quantization import Quantizer
from sancodec.sancfile import SIGNATURE, SancWriter
from sancodec.sparse_stream import decode_sparse, dyadic_bands, encode_sparse
from sancodec.streamcoder import CodingPlan, Spikes
from training.adapt import adapt_codebook, code_recording, plans_for
from training.codec_eval import code_signal, measure, onnx_detector

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wfdb" / "mitdb"
DOCS = ROOT / "docs"
OUT_DIR = DOCS / "rate-distortion"
UNSEEN = ("100", "105", "200", "210", "233", "234")
SPAN = (108000, 216000)
BLOCK = 2048
COUNTS_PER_MV = 200.0
MITDB_HZ = 360.0
WAVELET_STEPS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DCT_STEPS = WAVELET_STEPS
# residual steps in model units; the SAN step stays the manifest's
ECG_RESIDUAL_STEPS = (0.05, 0.1, 0.15, 0.3, 0.6, 1.0, 2.0, 4.0, 8.0)
LOWRATE_SAN_STEPS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
PRDN_TARGETS = (2.0, 5.0, 9.0, 20.0, 30.0)
BPS_TARGETS = (0.1, 0.25, 0.5, 1.0)
THINNING = (1.0, 0.75, 0.5, 0.25, 0.0)  # share of each window's spikes kept (sparsity sweep)
COUNT_BYTES = 2  # per-block coefficient count of the sparse wavelet coder


def wavelet_sparse_sweep(
    x: np.ndarray, steps: tuple[float, ...], write: Any = encode_sparse
) -> list[dict]:
    """The bench wavelet coder's quantized coefficients, coded by our sparse coder (real bytes):
    Golomb-Rice (`encode_sparse`) or the adaptive binary range coder (`encode_binary`)."""
    bands = dyadic_bands(BLOCK)
    points = []
    for step in steps:
        r = wavelet_coder(x, step)
        flat = np.concatenate(r["coefficients"], axis=1)  # (n_blocks, 2048), coarsest first
        total = 0
        for row in flat:
            (idx,) = np.nonzero(row)
            total += len(write(idx, row[idx], 0, bands)) + COUNT_BYTES
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


def binary_sweep(bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...]) -> list[dict]:
    """The shipped model with its residual layer through the adaptive binary range coder."""
    m = load_bundle(bundle_dir).manifest
    session = ort.InferenceSession(
        str(bundle_dir / "encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    detect = onnx_detector(session)
    points = []
    for step in steps:
        plan = CodingPlan(
            m.codebook, m.block_length, m.context, m.normalization.scale, m.san_step_exp,
            Quantizer.from_step(step).step_exp, residual_coder=EntropyCoder.ADAPTIVE_BINARY,
        )  # fmt: skip
        r = measure(plan, x_mv, detect)
        points.append({"step": float(step), "bps": r["bits_per_sample"], "prdn": r["prdn_percent"],
                       "prd": math.nan})  # fmt: skip
    return points


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
    for step in steps:
        san_exp, res_exp = m.san_step_exp, m.residual_step_exp
        if which == "residual":
            res_exp = Quantizer.from_step(step).step_exp
        else:
            san_exp = Quantizer.from_step(step).step_exp
        plan = CodingPlan(
            m.codebook, m.block_length, m.context, m.normalization.scale, san_exp, res_exp
        )
        r = measure(plan, x_mv, detect)
        h0 = _code_h0_bits(code_signal(plan, x_mv, detect))
        base = {"step": float(step), "prdn": r["prdn_percent"], "prd": math.nan}
        bps = r["bits_per_sample"]
        curves["real"].append({**base, "bps": bps})
        curves["per_record"].append({**base, "bps": bps + kernel_bits / n})
        curves["per_block"].append({**base, "bps": bps + kernel_bits * blocks / n})
        curves["h0"].append({**base, "bps": h0 / n + kernel_bits / n})
    return {
        "curves": curves,
        "shipped": shipped_point(bundle_dir, x_mv, detect),
        "kernel_bps_record": kernel_bits / n,
        "kernel_bps_block": kernel_bits * blocks / n,
    }


def shipped_point(bundle_dir: Path, x_mv: np.ndarray, detect: Any) -> dict[str, float]:
    """At the model's shipped steps: samples/s of encoding (detector, both layers, serialized
    block bytes) and of decoding (parse and check the bytes, reference decoder), one after the
    other on one thread; and the bits per sample of the block codes alone and of the same blocks
    in a real .sanc file (signature, header with the codebook, per-block framing and CRC, trailer)."""
    bundle = load_bundle(bundle_dir)
    m = bundle.manifest
    plan = CodingPlan(
        m.codebook, m.block_length, m.context, m.normalization.scale, m.san_step_exp,
        m.residual_step_exp,
    )  # fmt: skip
    t0 = time.perf_counter()
    coded = code_signal(plan, x_mv, detect)
    blocks = [BlockCode(c.start, c.signal.size, (c.code,)) for c in coded]
    data = [b.to_bytes() for b in blocks]
    t1 = time.perf_counter()
    decoded = decode([parse_block(b) for b in data], plan.codebook, 1)
    t2 = time.perf_counter()
    assert decoded.shape == (1, x_mv.size)
    header = StreamHeader(
        bundle.ref, m.codebook,
        MITDB_HZ, m.block_length, (ChannelInfo("MLII", "mV", 0.0, m.normalization.scale),),
    )  # fmt: skip
    file = io.BytesIO()
    with SancWriter(file, header) as writer:
        for block in blocks:
            writer.write(block)
    header_bytes = len(SIGNATURE) + len(header.to_proto().SerializeToString(deterministic=True))
    n = x_mv.size
    return {
        "encode": n / (t1 - t0),
        "decode": n / (t2 - t1),
        "code_bps": bits_per_sample(sum(len(d) for d in data), n),
        "file_bps": bits_per_sample(len(file.getvalue()), n),
        "header_bps": bits_per_sample(header_bytes, n),
    }


def wavelet_sparse_speed(
    x: np.ndarray, step: float, write: Any = encode_sparse, read: Any = decode_sparse
) -> tuple[float, float]:
    """Samples/s of the sparse-coded wavelet: transform, quantize and code; decode and invert."""
    bands = dyadic_bands(BLOCK)
    t0 = time.perf_counter()
    codes = []
    for block in x.reshape(-1, BLOCK):
        flat = np.concatenate(pywt.wavedec(block, "bior4.4", mode="periodization", level=5))
        levels = np.rint(flat / step).astype(np.int64)
        (idx,) = np.nonzero(levels)
        codes.append((idx.size, write(idx, levels[idx], 0, bands)))
    t1 = time.perf_counter()
    layout = [
        c.size for c in pywt.wavedec(np.zeros(BLOCK), "bior4.4", mode="periodization", level=5)
    ]
    for count, data in codes:
        idx, levels = read(data, count, 0, bands)
        flat = np.zeros(sum(layout))
        flat[idx] = levels * step
        pywt.waverec(np.split(flat, np.cumsum(layout)[:-1]), "bior4.4", mode="periodization")
    t2 = time.perf_counter()
    return x.size / (t1 - t0), x.size / (t2 - t1)


def adapted_sweep(bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...]) -> list[dict]:
    """`sancodec encode --adapt`: the model's recipe fitted to this record (training.adapt),
    then the residual step swept, each step coded as --adapt codes (adapted kernels, or the
    residual layer alone where they do not pay); the rate adds the codebook the .sanc header
    carries."""
    bundle = load_bundle(bundle_dir)
    adapted = adapt_codebook(bundle, x_mv[None, :])
    points = []
    for step in steps:
        step_exp = Quantizer.from_step(step).step_exp
        coded = code_recording(plans_for(bundle, adapted, residual_step_exp=step_exp),
                               x_mv[None, :], adapted)  # fmt: skip
        bits = coded.bits  # the block codes and the codebook the header carries
        x_hat = coded.reconstruction(adapted.scales)[0]
        points.append({"step": float(step), "bps": bits / x_mv.size, "prdn": prdn(x_mv, x_hat),
                       "prd": math.nan, "spikes": coded.with_spikes})  # fmt: skip
    return points


def thinned_sweep(bundle_dir: Path, x_mv: np.ndarray, ratios: tuple[float, ...]) -> list[dict]:
    """Sparsity apart from the amplitude step: at the shipped steps, keep only the largest
    `ratio` of each window's spikes (by |amplitude|); ratio 0 leaves the residual layer alone."""
    m = load_bundle(bundle_dir).manifest
    session = ort.InferenceSession(
        str(bundle_dir / "encoder.onnx"), providers=["CPUExecutionProvider"]
    )
    detect = onnx_detector(session)
    plan = CodingPlan(
        m.codebook, m.block_length, m.context, m.normalization.scale, m.san_step_exp,
        m.residual_step_exp,
    )  # fmt: skip
    points = []
    for ratio in ratios:

        def thinned(window: Any, ratio: float = ratio) -> Spikes:
            s = detect(window)
            keep = np.argsort(-np.abs(s.amplitudes), kind="stable")[
                : round(ratio * s.amplitudes.size)
            ]
            keep.sort()
            return Spikes(s.kernel_ids[keep], s.positions[keep], s.amplitudes[keep])

        r = measure(plan, x_mv, thinned)
        points.append({"ratio": ratio, "bps": r["bits_per_sample"], "prdn": r["prdn_percent"],
                       "spikes": r["spikes_per_1000_samples"]})  # fmt: skip
    return points


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
        "wavelet bior4.4 L5 (our binary coder)": wavelet_sparse_sweep(
            x, WAVELET_STEPS, encode_binary
        ),
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
    methods["ecg (real bytes, binary coder)"] = binary_sweep(
        ROOT / "models" / "ecg" / "1", x_mv, ECG_RESIDUAL_STEPS
    )
    thinning = thinned_sweep(ROOT / "models" / "ecg" / "1", x_mv, THINNING)
    methods["ecg adapted to the record (+kernels in the header)"] = adapted_sweep(
        ROOT / "models" / "ecg" / "1", x_mv, ECG_RESIDUAL_STEPS
    )
    lossless = {
        "FLAC": flac_bps(x),
        "zstd-19 (deltas)": zstd_bps(x, 19, delta=True),
    }
    return {
        "record": record,
        "n": int(x.size),
        "methods": methods,
        "lossless": lossless,
        "shipped": {"ecg": ecg["shipped"], "ecg-lowrate": low["shipped"]},
        "wavelet_speed": {
            "Golomb-Rice": wavelet_sparse_speed(x, 24.0),
            "adaptive binary": wavelet_sparse_speed(x, 24.0, encode_binary, decode_binary),
        },
        "thinning": thinning,
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
    parser.add_argument("--write-docs", action="store_true",
                        help="regenerate the results in docs/benchmarks.md and docs/rate-distortion.md")  # fmt: skip
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
    return report(results, args, t_start)


def report(results: list[dict[str, Any]], args: argparse.Namespace, t_start: float) -> int:
    """Print the tables (the pooled one last) and, with --write-docs, put them in the docs."""
    names = list(results[0]["methods"])
    out = []
    pooled = {n: np.mean([summarize(r["methods"][n]) for r in results], axis=0) for n in names}
    for r in results:
        rows = {n: summarize(r["methods"][n]) for n in names}
        lossless = ", ".join(f"{k} {v:.3f} b/s" for k, v in r["lossless"].items())
        san = []
        for n in ("ecg (real bytes)", "ecg adapted to the record (+kernels in the header)",
                  "ecg-lowrate (real bytes)"):  # fmt: skip
            pts = ", ".join(
                f"{p['step']:g}: {p['bps']:.3f}/{p['prdn']:.1f}{'' if p.get('spikes', True) else '*'}"
                for p in r["methods"][n]
            )
            san.append(f"- {n}, step: b/s / PRDN % (*: no spikes, the residual layer alone): {pts}")
        out.append(f"### Record {r['record']}\n\n{table(rows)}\n\nLossless: {lossless}.\n")
        out.append("\n".join(san) + "\n")
    bd_names = [n for n in names if n.startswith("ecg")]
    anchors = (
        "wavelet bior4.4 L5 (H0)",
        "wavelet bior4.4 L5 (our sparse coder)",
        "wavelet bior4.4 L5 (our binary coder)",
    )
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
    speed_lines = ["| coder | encode samples/s | decode samples/s |", "|---|---|---|"]
    sanc_lines = ["| model (shipped steps) | block codes b/s | .sanc file b/s | of which header (codebook) b/s | framing, CRCs, trailer b/s |",
                  "|---|---|---|---|---|"]  # fmt: skip
    for name in results[0]["shipped"]:
        k = {key: float(np.mean([r["shipped"][name][key] for r in results])) for key in
             results[0]["shipped"][name]}  # fmt: skip
        speed_lines.append(f"| {name} | {k['encode']:,.0f} | {k['decode']:,.0f} |")
        sanc_lines.append(
            f"| {name} | {k['code_bps']:.4f} | {k['file_bps']:.4f} | {k['header_bps']:.4f} | "
            f"{k['file_bps'] - k['code_bps'] - k['header_bps']:.4f} |"
        )
    thin_lines = ["| spikes kept | spikes / 1000 samples | b/s | PRDN % |", "|---|---|---|---|"]
    for i, ratio in enumerate(THINNING):
        row = [np.mean([r["thinning"][i][k] for r in results]) for k in ("spikes", "bps", "prdn")]
        thin_lines.append(f"| {ratio:.0%} | {row[0]:.2f} | {row[1]:.3f} | {row[2]:.1f} |")
    for coder in results[0]["wavelet_speed"]:
        enc, dec = np.mean([r["wavelet_speed"][coder] for r in results], axis=0)
        speed_lines.append(f"| wavelet bior4.4 L5, Δ 24, {coder} | {enc:,.0f} | {dec:,.0f} |")
    kern = results[0]["kernel_bps"]
    print("φ̄ beside Table I (bench/paper_metric.py) ...", flush=True)
    phi_table = paper_metric.report()
    print("ideal adaptive binary code lengths (bench/entropy_estimate.py) ...", flush=True)
    entropy_table = entropy_estimate.report(args.records)
    total = time.perf_counter() - t_start
    stamp = (
        f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{platform.platform()} ({os.cpu_count()} CPUs), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__} ({', '.join(ort.get_available_providers())}), {total:.0f} s; "
        f"records {', '.join(r['record'] for r in results)}."
    )
    pooled_text = "\n".join([
        "### Pooled rate–distortion (mean over the records; – if undefined on any)\n",
        table(pooled), "",
        "Lossless (mean): " + ", ".join(f"{k} {v:.3f} b/s" for k, v in lossless_mean.items()),
    ])  # fmt: skip
    summary = "\n".join([
        stamp, "",
        "### BD-rate (Bjøntegaard, % rate change vs the anchor; negative = SAN cheaper)\n",
        "\n".join(bd_lines), "",
        "### Encode and decode speed (one thread, mean over the records)\n",
        "SAN models at their shipped steps: encode = ONNX Runtime detector (CPU) and both layers "
        "to serialized block bytes; decode = parse and check the bytes, reference decoder. "
        "Wavelet: transform, quantize and sparse-code; decode and invert.\n",
        "\n".join(speed_lines), "",
        "### Sparsity apart from the step: `ecg` with each window's largest spikes only "
        "(shipped steps, mean over the records)\n",
        "\n".join(thin_lines), "",
        "### What a .sanc file adds to the block codes (mean over the records)\n",
        "\n".join(sanc_lines), "",
        f"Kernel charge (fp16): ecg {kern['ecg'][0]:.4f} b/s once per record, "
        f"{kern['ecg'][1]:.3f} b/s per block; ecg-lowrate {kern['ecg-lowrate'][0]:.4f} / "
        f"{kern['ecg-lowrate'][1]:.3f} b/s.", "",
        "### What a better entropy coder would save, on the same wavelet coefficients\n",
        "Protocol in bench/entropy_estimate.py: our Rice code's real bytes, the ideal code length "
        "of an adaptive binary arithmetic coder on the same values, and the pooled sub-band H0.\n",
        entropy_table, "",
        "### The paper's metric: Table I's SAN rows beside a fixed wavelet on the same windows\n",
        "Each cell is m (or k) / CR⁻¹ / L̃ / φ̄ on the test windows; protocol in "
        "bench/paper_metric.py.\n",
        phi_table, "",
        pooled_text,
    ])  # fmt: skip
    per_record = "\n".join([stamp, "", "## Per record", *out])
    if args.write_docs:
        replace_section(DOCS / "benchmarks.md", "rate-distortion", summary)
        replace_section(DOCS / "rate-distortion.md", "per-record", per_record)
        print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'rate-distortion.md'}")
    print(per_record)
    print(summary.replace(pooled_text, ""))
    print(pooled_text)  # the summary table last
    return 0


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between the file's `<!-- begin NAME -->` and `<!-- end NAME -->` markers,
    appending both if the file has none; the rest of the file is left as it is."""
    begin, end = (
        f"<!-- begin {name} (generated: edit the benchmark, not this) -->",
        f"<!-- end {name} -->",
    )
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
    else:
        head, tail = old.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")


if __name__ == "__main__":
    raise SystemExit(main())
