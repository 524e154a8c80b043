"""Our operating points for bench/rate_distortion.py, each on a record in physical mV:
- the served streaming path: the shipped bundle's plan (CodingPlan.from_manifest), its encoder in
  ONNX Runtime, the server's blocks, the real bytes of every EncodedBlock; kernels fitted to the
  stream as the server fits them (sancodec.kernelupdates), their updates' bytes included, or the
  model's own kernels throughout (`adapt=False`, as `--fixed-kernels` asks);
- the residual layer alone: the same coder and blocks with no spikes;
- the archive path: `sancodec encode --adapt` (kernels fitted to the record), the real bytes of
  the whole .sanc file, header with kernels and tables included;
- the speed of coding after detection, each way, on one thread."""

from __future__ import annotations

import dataclasses
import io
import math
import time
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from sancodec.adaptation import encode_adapted
from sancodec.bundle import Bundle, load_bundle
from sancodec.channelcoder import ChannelCoder
from sancodec.decoder import decode
from sancodec.encodergraph import kernel_swapper
from sancodec.header import ChannelInfo
from sancodec.kernelupdates import Adapter
from sancodec.metrics import prdn
from sancodec.payload import block_message, parse_block
from sancodec.plan import CodedChannel, CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer
from sancodec.sancfile import SancWriter
from sancodec.streamcoder import StreamCoder, code_stream
from training.codec_eval import Detector, code_signal, memoized, onnx_detector

__all__ = ["adapted_sweep", "coder_speed", "served_stream", "served_sweep"]

MITDB_HZ = 360.0


@lru_cache(maxsize=8)
def _shipped(bundle_dir: Path) -> tuple[Bundle, Detector]:
    """A bundle and its exported encoder on ONNX Runtime (CPU, one thread), loaded once."""
    bundle = load_bundle(bundle_dir)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(
        str(bundle.encoder_path), options, providers=["CPUExecutionProvider"]
    )
    return bundle, onnx_detector(session)


def _no_spikes(window: Window) -> Spikes:
    empty = np.zeros(0)
    return Spikes(empty.astype(np.int32), empty.astype(np.int64), empty)


def _block_bytes(coded: list[CodedChannel]) -> int:
    return sum(block_message(c.start, c.signal.size, [(0, c.payload)]).ByteSize() for c in coded)


def served_stream(bundle: Bundle, plan: CodingPlan, x_mv: np.ndarray, detect: Detector,
                  adapt: bool = True) -> tuple[list[CodedChannel], int]:  # fmt: skip
    """A record coded as an unloaded server codes a stream of it under `plan`: with kernels
    fitted to it where the model adapts (ModelInfo.adapt_after_samples) and `adapt`, as the
    server fits them, every window then detected through the stream's `Adapter` (the bundle's
    encoder in ONNX Runtime, one thread); otherwise with the plan's kernels, through `detect`.
    Its blocks and the bytes of every block message, codebook updates included."""
    if not (adapt and bundle.manifest.adapt_after_samples):
        coded = code_signal(plan, x_mv, detect)
        return coded, _block_bytes(coded)
    adapter = Adapter(plan, kernel_swapper(bundle, threads=1))
    coder = StreamCoder([plan], bundle.manifest.adapt_after_samples)
    blocks = code_stream(coder, x_mv[None, :], adapter.spikes, adapter.refit)
    return [b.parts[0] for b in blocks], sum(b.message().ByteSize() for b in blocks)


def served_sweep(bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...],
                 *, spikes: bool = True, which: str = "residual", block_length: int | None = None,
                 adapt: bool = True) -> list[dict[str, Any]]:  # fmt: skip
    """Points of the served path (or, spikes=False, the residual layer alone) over residual
    steps (which="san": SAN steps), in model units; in the bundle's blocks, or `block_length`;
    with the stream's own kernels where the model adapts (unless not `adapt`: its own kernels)."""
    bundle, detect = _shipped(bundle_dir)
    plan = CodingPlan.from_manifest(bundle.manifest)
    if block_length is not None:
        plan = dataclasses.replace(plan, block_length=block_length)
    detector = memoized(detect) if spikes else _no_spikes
    points = []
    for step in steps:
        exp = Quantizer.from_step(step).step_exp
        trial = dataclasses.replace(plan, **{f"{which}_step_exp": exp})
        coded, size = served_stream(bundle, trial, x_mv, detector, adapt=spikes and adapt)
        x_hat = np.concatenate([c.reconstruction for c in coded]) * plan.scale
        points.append({"step": float(step), "bps": 8 * size / x_mv.size,
                       "payload_bps": 8 * sum(len(c.payload) for c in coded) / x_mv.size,
                       "prdn": prdn(x_mv, x_hat), "prd": math.nan,
                       "spikes": sum(c.code.san.spike_count for c in coded)})  # fmt: skip
    return points


def adapted_sweep(
    bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...]
) -> list[dict[str, Any]]:
    """`sancodec encode --adapt` over residual steps: the whole .sanc file's bytes."""
    bundle, _ = _shipped(bundle_dir)
    channel = (ChannelInfo("MLII", "mV"),)
    points = []
    for step in steps:
        m = dataclasses.replace(
            bundle.manifest, residual_step_exp=Quantizer.from_step(step).step_exp
        )
        code = encode_adapted(
            dataclasses.replace(bundle, manifest=m), x_mv[None, :], MITDB_HZ, channel
        )
        file = io.BytesIO()
        with SancWriter(file, code.header) as writer:
            for block in code.blocks:
                writer.write(block)
        x_hat = code.header.to_physical(decode(code.blocks, code.header.codebook, 1))[0]
        points.append({"step": float(step), "bps": 8 * len(file.getvalue()) / x_mv.size,
                       "prdn": prdn(x_mv, x_hat), "prd": math.nan,
                       "fit_s": code.adapted.seconds,
                       "spikes": sum(b.spike_count for b in code.blocks)})  # fmt: skip
    return points


def coder_speed(bundle_dir: Path, x_mv: np.ndarray, repeats: int = 5) -> dict[str, float]:
    """Samples/s on one thread at the shipped steps, best of `repeats` (as bioleptic's are):
    detection (the encoder in ONNX Runtime, every window of the record); coding after detection
    (layers, rate control, payloads and block messages); decoding the block bytes (parse,
    range-decode, paint and invert)."""
    bundle, detect = _shipped(bundle_dir)
    plan = CodingPlan.from_manifest(bundle.manifest)
    coder = ChannelCoder(plan)
    windows = coder.push(x_mv) + coder.finish()
    best = {"detect": math.inf, "encode": math.inf, "decode": math.inf}
    for _ in range(repeats):
        t0 = time.perf_counter()
        found = {w.index: detect(w) for w in windows}
        t1 = time.perf_counter()
        coded = code_signal(plan, x_mv, lambda w, found=found: found[w.index])
        data = [block_message(c.start, c.signal.size, [(0, c.payload)]).SerializeToString()
                for c in coded]  # fmt: skip
        t2 = time.perf_counter()
        blocks = [parse_block(d, plan.codebook) for d in data]
        decode(blocks, plan.codebook, 1)
        t3 = time.perf_counter()
        for name, seconds in (("detect", t1 - t0), ("encode", t2 - t1), ("decode", t3 - t2)):
            best[name] = min(best[name], seconds)
    return {name: x_mv.size / seconds for name, seconds in best.items()}
