"""Code whole recordings with a trained model through `sancodec.streamcoder`, and measure them.

The rate is the size of the real serialized blocks; the detector is the PyTorch model or the
exported encoder in ONNX Runtime, so a bundle's manifest reports what the server will produce.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt
import onnxruntime as ort
import torch

from sancodec import BlockCode, block_bytes, metrics
from sancodec.streamcoder import (
    CodedChannel,
    CodingPlan,
    Spikes,
    StreamCoder,
    Window,
    code_stream,
)
from training.export import encode_with_onnx
from training.model import SAN

__all__ = ["code_signal", "measure", "memoized", "onnx_detector", "torch_detector"]

Detector = Callable[[Window], Spikes]


def torch_detector(model: SAN) -> Detector:
    model = model.eval()

    @torch.no_grad()
    def detect(window: Window) -> Spikes:
        x = torch.from_numpy(window.samples).view(1, 1, -1)  # (1, 1, T)
        alpha = model.activate(model.similarity(x))[0]  # (q, T)
        kernels, positions = torch.nonzero(alpha, as_tuple=True)
        amplitudes = alpha[kernels, positions].double().numpy()
        return Spikes(
            kernels.numpy().astype(np.int32), positions.numpy().astype(np.int64), amplitudes
        )

    return detect


def onnx_detector(session: ort.InferenceSession) -> Detector:
    """The exported encoder as the detector: what the server runs, one window at a time."""

    def detect(window: Window) -> Spikes:
        positions, amplitudes = encode_with_onnx(session, window.samples[None, None, :])
        return Spikes(
            positions[:, 1].astype(np.int32), positions[:, 2], amplitudes.astype(np.float64)
        )

    return detect


def memoized(detect: Detector) -> Detector:
    """The detector, each window of one signal detected once: detection does not depend on the
    steps, so sweeps over them reuse it (windows keyed by index and length)."""
    found: dict[tuple[int, int], Spikes] = {}

    def cached(window: Window) -> Spikes:
        key = (window.index, window.samples.size)
        if key not in found:
            found[key] = detect(window)
        return found[key]

    return cached


def code_signal(plan: CodingPlan, x: npt.ArrayLike, detect: Detector) -> list[CodedChannel]:
    """One channel, start to end, as a server would stream it (`sancodec.streamcoder.code_stream`:
    chunking does not matter); each block's part."""
    blocks = code_stream(StreamCoder([plan]), np.asarray(x, dtype=np.float64)[None, :], detect)
    return [b.parts[0] for b in blocks]


def measure(
    plan: CodingPlan, x: npt.ArrayLike, detect: Detector, adc_bits: int = 11
) -> dict[str, Any]:
    """PRDN over the recording, bits per sample from the real block bytes (kernels not charged:
    they ship with the model), and the paper's per-block metrics on mean-removed blocks (a
    constant block, where L~ is undefined, is left out of them and counted)."""
    signal = np.asarray(x, dtype=np.float64)
    coded = code_signal(plan, signal, detect)
    blocks = [BlockCode(c.start, c.signal.size, (c.code,)) for c in coded]
    code_bytes = sum(len(block_bytes(b, plan.codebook)) for b in blocks)
    x_hat = np.concatenate([c.reconstruction for c in coded]) * plan.scale
    scores = [metrics.block_flithos((c,), plan.codebook.weight_count) for c in coded]
    per_block = [score for score in scores if score is not None]
    flat = len(scores) - len(per_block)
    table = np.array(per_block)
    n = signal.size
    return {
        "samples": n,
        "prdn_percent": metrics.prdn(signal, x_hat),
        "bits_per_sample": metrics.bits_per_sample(code_bytes, n),
        "compression_ratio_adc": metrics.compression_ratio(
            metrics.raw_bytes(n, adc_bits), code_bytes
        ),
        "inverse_compression_ratio": float(table[:, 0].mean()),
        "normalized_loss": float(table[:, 1].mean()),
        "flithos": float(table[:, 2].mean()),
        "spikes_per_1000_samples": 1000 * sum(c.code.san.spike_count for c in coded) / n,
        "blocks": len(coded),
        "constant_blocks_left_out_of_flithos": flat,
    }
