"""Throughput of the exported encoders and decoder in ONNX Runtime, side by side in one run.

`python bench/encoder_speed.py [--threads 2] [--batch 64] [--length 2048]`
Each activation's encoder runs on the same z-scored MIT-BIH 100 windows; times are the median of
repeated calls. Ratios to the Extrema-Pool encoder (one spike per window of m) make the numbers
comparable across noisy runs.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import tempfile
import time
from pathlib import Path

import onnxruntime as ort
import torch

from recordings import read_recording
from training.data import make_windows
from training.export import decode_with_onnx, encode_with_onnx, export_model
from training.model import SAN

KINDS = ("extrema_pool_indices", "topk_absolutes", "extrema", "relu")


def _median_ms(call: object, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()  # type: ignore[operator]
        times.append(time.perf_counter() - start)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--kernel", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data"
    )
    args = parser.parse_args()
    signal = read_recording(
        args.data / "wfdb" / "mitdb" / "100.hea", sampto=args.batch * args.length
    ).samples[0]
    x = make_windows(signal, args.length).windows[: args.batch, None, :]  # (B, 1, T)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for kind in KINDS:
            model = SAN((args.kernel,), kind)
            model.init_normal(torch.Generator().manual_seed(0))
            export_model(model, Path(tmp) / kind)
            enc = ort.InferenceSession(
                str(Path(tmp) / kind / "encoder.onnx"), options, providers=["CPUExecutionProvider"]
            )
            dec = ort.InferenceSession(
                str(Path(tmp) / kind / "decoder.onnx"), options, providers=["CPUExecutionProvider"]
            )
            positions, amplitudes = encode_with_onnx(enc, x)
            enc_ms = _median_ms(lambda enc=enc: encode_with_onnx(enc, x), args.repeats)
            dec_ms = _median_ms(
                lambda dec=dec, p=positions, a=amplitudes: decode_with_onnx(
                    dec, p, a, x.shape[0], x.shape[2]
                ),
                args.repeats,
            )
            rows.append((kind, enc_ms, dec_ms, len(amplitudes), enc.get_providers()[0]))
    samples = x.shape[0] * x.shape[2]
    base = rows[0][1]
    print(f"{time.strftime('%Y-%m-%d')} {platform.machine()} {platform.processor() or ''}, ORT {ort.__version__}, "
          f"{args.threads} threads, batch {args.batch} x {args.length}, kernel {args.kernel}")  # fmt: skip
    print("| activation | encoder ms | Msamples/s | vs Ext-Pool | decoder ms | spikes | provider |")
    print("|---|---|---|---|---|---|---|")
    for kind, enc_ms, dec_ms, spikes, provider in rows:
        print(
            f"| {kind} | {enc_ms:.2f} | {samples / enc_ms / 1000:.1f} | {enc_ms / base:.2f} | {dec_ms:.2f} | {spikes} | {provider} |"
        )


if __name__ == "__main__":
    main()
