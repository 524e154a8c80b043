"""Rate-distortion benchmark: the served codec, the archive path and their peers on the same
samples, in the same run, with real bytes: `make bench`, or
`PYTHONPATH=. python -m bench.rate_distortion [--records 100 105 ...] [--write-docs]`.

Protocol (docs/rate-distortion.md):
- data: channel 0 (MLII), samples [108000, 216000) of each MIT-BIH record the shipped models
  never saw (5 minutes), cut to whole 2048-sample blocks so that every method codes exactly the
  same samples; ADC counts minus the ADC zero for the peers, physical mV (counts / 200) for ours;
- served: the `ecg` bundle as the server codes it (its plan, its encoder in ONNX Runtime, its
  blocks, kernels fitted to the stream from its fifth block on), over residual steps; the real
  bytes of every EncodedBlock, codebook updates included; and with the model's kernels
  throughout (`--fixed-kernels`);
- residual alone: the same, with no spikes; archive: `sancodec encode --adapt`, the whole .sanc;
- wavelet (bior4.4, L5, periodization, uniform Δ): the H0 estimate of compression.md §2c;
- bioleptic: its option grid's lower convex hull, real bytes; FLAC: lossless, real bytes.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

from bench.baselines import flac_bps, load_mitdb_adc, sweep, wavelet_coder
from bench.peers import bioleptic_speed, bioleptic_sweep
from bench.rd_report import (
    ARCHIVE,
    BIOLEPTIC,
    FIXED,
    LOWRATE,
    RESIDUAL,
    SERVED,
    SHORT_BLOCKS,
    WAVELET,
    plot,
    report,
)
from bench.san_sweeps import adapted_sweep, coder_speed, served_sweep

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "wfdb" / "mitdb"
OUT_DIR = ROOT / "docs" / "rate-distortion"
ECG, ECG_LOWRATE = ROOT / "models" / "ecg" / "1", ROOT / "models" / "ecg-lowrate" / "1"
UNSEEN = ("100", "105", "200", "210", "233", "234")
SPAN = (108000, 216000)
BLOCK = 2048
COUNTS_PER_MV = 200.0
WAVELET_STEPS = (1, 1.5, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512)
# residual steps in model units (the SAN step stays the manifest's)
ECG_RESIDUAL_STEPS = (0.05, 0.07, 0.1, 0.15, 0.2, 0.3, 0.45, 0.6, 0.9, 1.2, 1.8, 2.5, 3.5, 5.0, 8.0)
ADAPT_STEPS = (0.15, 0.3, 0.6, 1.2, 2.5, 5.0)
LOWRATE_SAN_STEPS = (0.1, 0.2, 0.5, 1.0, 2.0)


def run_record(record: str) -> dict[str, Any]:
    x = load_mitdb_adc(DATA / record)[SPAN[0] : SPAN[1]]
    x = x[: (x.size // BLOCK) * BLOCK]
    x_mv = x / COUNTS_PER_MV
    t0 = time.perf_counter()
    methods: dict[str, list[dict]] = {
        SERVED: served_sweep(ECG, x_mv, ECG_RESIDUAL_STEPS),
        FIXED: served_sweep(ECG, x_mv, ECG_RESIDUAL_STEPS, adapt=False),
        SHORT_BLOCKS: served_sweep(ECG, x_mv, ECG_RESIDUAL_STEPS, block_length=2048, adapt=False),
        RESIDUAL: served_sweep(ECG, x_mv, ECG_RESIDUAL_STEPS, spikes=False),
        ARCHIVE: adapted_sweep(ECG, x_mv, ADAPT_STEPS),
        LOWRATE: served_sweep(ECG_LOWRATE, x_mv, LOWRATE_SAN_STEPS, which="san"),
        WAVELET: sweep(x, wavelet_coder, WAVELET_STEPS),
        BIOLEPTIC: bioleptic_sweep(x.astype(float)),
    }
    middle = min(methods[BIOLEPTIC], key=lambda p: abs(p["prdn"] - 9.0))
    return {
        "record": record,
        "start": SPAN[0],
        "n": int(x.size),
        "methods": methods,
        "lossless": {"FLAC": flac_bps(x)},
        "speed": {
            "ecg": coder_speed(ECG, x_mv),
            BIOLEPTIC: dict(
                zip(
                    ("encode", "decode"),
                    bioleptic_speed(x.astype(float), middle["option"]),
                    strict=True,
                )
            ),
        },
        "seconds": time.perf_counter() - t0,
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
        r = run_record(record)
        results.append(r)
        print(f"record {record}: {r['seconds']:.1f} s", flush=True)
    plot(results, OUT_DIR / "all.png")
    return report(results, args.write_docs, t_start)


if __name__ == "__main__":
    raise SystemExit(main())
