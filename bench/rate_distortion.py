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
import time
from pathlib import Path
from typing import Any

import numpy as np
import pywt

from bench.baselines import dct_coder, flac_bps, load_mitdb_adc, sweep, wavelet_coder, zstd_bps
from bench.rd_report import ADAPTED, ADAPTED_SAN, PACKED_WAVELET, UNFITTED, plot, report
from bench.san_sweeps import adapted_sweep, binary_sweep, san_sweep, thinned_sweep
from sancodec.binary_stream import decode_binary, encode_binary
from sancodec.metrics import bits_per_sample
from sancodec.sparse_stream import decode_sparse, dyadic_bands, encode_sparse

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wfdb" / "mitdb"
OUT_DIR = ROOT / "docs" / "rate-distortion"
ECG, ECG_LOWRATE = ROOT / "models" / "ecg" / "1", ROOT / "models" / "ecg-lowrate" / "1"
UNSEEN = ("100", "105", "200", "210", "233", "234")
SPAN = (108000, 216000)
BLOCK = 2048
COUNTS_PER_MV = 200.0
WAVELET_STEPS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
DCT_STEPS = WAVELET_STEPS
# residual steps in model units; the SAN step stays the manifest's
ECG_RESIDUAL_STEPS = (0.05, 0.1, 0.15, 0.3, 0.6, 1.0, 2.0, 4.0, 8.0)
LOWRATE_SAN_STEPS = (0.05, 0.1, 0.2, 0.5, 1.0, 2.0)
ADAPT_STEPS = (*ECG_RESIDUAL_STEPS, 16.0)  # kernels fitted to the record reach PRDN 30% later
ADAPT_SAN_STEPS = (0.1, 0.2, 0.35, 0.5, 0.7, 1.0, 1.4, 2.0)
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
    ecg = san_sweep(ECG, x_mv, "residual", ECG_RESIDUAL_STEPS)
    low = san_sweep(ECG_LOWRATE, x_mv, "san", LOWRATE_SAN_STEPS)
    for name, res in (("ecg", ecg), ("ecg-lowrate", low)):
        c = res["curves"]
        methods[f"{name} (real bytes)"] = c["real"]
        methods[f"{name} (+kernels/record)"] = c["per_record"]
        methods[f"{name} (+kernels/block)"] = c["per_block"]
        methods[f"{name} (H0 +kernels/record)"] = c["h0"]
    methods["ecg (real bytes, binary coder)"] = binary_sweep(ECG, x_mv, ECG_RESIDUAL_STEPS)
    thinning = thinned_sweep(ECG, x_mv, THINNING)
    adapted = adapted_sweep(ECG, x_mv, ADAPT_STEPS)
    methods[ADAPTED] = adapted["chosen"]
    methods[PACKED_WAVELET] = adapted["alone"]
    methods[UNFITTED] = adapted_sweep(ECG, x_mv, ADAPT_STEPS, refit=False)["spikes"]
    methods[ADAPTED_SAN] = adapted_sweep(ECG_LOWRATE, x_mv, ADAPT_SAN_STEPS, which="san")["chosen"]
    lossless = {
        "FLAC": flac_bps(x),
        "zstd-19 (deltas)": zstd_bps(x, 19, delta=True),
    }
    return {
        "record": record,
        "start": SPAN[0],
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
    return report(results, args.write_docs, t_start)


if __name__ == "__main__":
    raise SystemExit(main())
