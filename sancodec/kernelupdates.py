"""A stream's own kernels, fitted inside the coder that streams it: the checks a StreamCoder asks
for (`FitRequest`), answered with codebook updates.

A check looks at the stream's last samples (the model's `adapt_after_samples`). Kernels fitted
to the stream are kept while their spikes pay (lower distortion + λ·bits than the residual layer
alone, the per-block choice of the coder) in at least half of those blocks. Otherwise, and
always while the stream has the model's kernels (learned on other people), they are refitted
(sancodec.fitting: detection with the bundle's encoder in ONNX Runtime, least squares at the
spikes found) from a few starts. The new kernels are sent where they save more distortion +
λ·bits over those samples than the kernels in use, by more than their update costs (λ times its
bits): the same trade as the per-block layer choice. Everything here depends on the samples
alone, so the updates, like the codes, do not depend on how the stream was chunked.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.blockcoder import BlockCoder
from sancodec.codebook import Codebook, kernels_to_proto
from sancodec.codes import SanLayer
from sancodec.coefficients import rd_lambda
from sancodec.encodergraph import BatchDetector, DetectorFactory
from sancodec.errors import ProtocolError
from sancodec.fitting import Target, fit_kernels, place_spikes, starts
from sancodec.plan import CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer
from sancodec.streamcoder import FitRequest
from sancodec.v1 import codes_pb2

__all__ = ["FIT_ROUNDS", "FIT_STARTS", "Adapter", "rd_gain", "update_bits"]

FIT_STARTS = 3  # the kernels in use, and recentred on their centre and 1/16 of their size later
FIT_ROUNDS = 2  # of detection and least squares from each start (about 0.05 s per start on
# 16384 samples of ECG, one thread)

Kernels = tuple[npt.NDArray[np.float32], ...]


def rd_gain(plan: CodingPlan, codebook: Codebook, detect: BatchDetector,
            x: npt.NDArray[np.float64]) -> tuple[int, float]:  # fmt: skip
    """What the spikes `detect` finds do for the whole blocks of (channels, n) model-domain
    samples, each block decided on its own as the stream coder decides it (detected in its
    window, `fitting.place_spikes`; here the first block has no left context, the last no
    right): in how many blocks they pay, and how much they lower distortion + λ·bits in all
    (the blocks where they do not pay go without them)."""
    n = plan.block_length
    rows = [row[: row.size - row.size % n] for row in x]
    target = Target.of(rows, n, max(w.size for w in codebook.kernels) + 1)
    placed = place_spikes(rows, target, detect, n, plan.context)
    coder, quantizer = BlockCoder(plan, 0), Quantizer(plan.san_step_exp)
    paying, gain = 0, 0.0
    for row, base in zip(rows, target.bases, strict=True):
        for start in range(0, row.size, n):
            lo, hi = np.searchsorted(placed.positions, (base + start, base + start + n))
            layer = SanLayer.from_spikes(placed.kernel_ids[lo:hi], placed.positions[lo:hi] - base,
                                         placed.amplitudes[lo:hi], quantizer)  # fmt: skip
            if layer.spike_count:
                g = coder.spikes_gain(row[start : start + n], (layer, codebook), start)
                paying += g > 0
                gain += max(g, 0.0)
    return paying, gain


def update_bits(kernels: Kernels) -> int:
    """What a codebook update of these kernels adds to its block's message, in bits."""
    return 8 * codes_pb2.EncodedBlock(kernels=kernels_to_proto(kernels)).ByteSize()


@dataclass(eq=False)
class Adapter:
    """One stream's detectors by generation (0: the plan's kernels) and its answers to the
    stream coder's checks. `detector_for` builds a detector for kernels (`kernel_swapper`);
    `detect`, where given, is generation 0's (a server's shared, batched encoder)."""

    plan: CodingPlan
    detector_for: DetectorFactory
    detect: BatchDetector | None = None

    def __post_init__(self) -> None:
        self._detectors: dict[int, BatchDetector] = {}
        if self.detect is not None:
            self._detectors[0] = self.detect

    def detector(self, generation: int) -> BatchDetector:
        if generation == 0 and 0 not in self._detectors:  # no shared encoder was given
            self._detectors[0] = self.detector_for(self.plan.codebook.kernels)
        if generation not in self._detectors:
            raise ProtocolError(f"no detector for kernel generation {generation}: it is gone")
        return self._detectors[generation]

    def spikes(self, window: Window) -> Spikes:
        """One window's spikes, under its own generation's kernels."""
        return self.detector(window.generation)(window.samples[None, None, :])[0]

    def refit(self, request: FitRequest) -> Kernels | None:
        """The answer to a check: new kernels, or None to keep those in use. Kernels that still
        pay in half the blocks are kept without a fit; new ones are sent only where what they
        save over the check's samples (distortion + λ·bits, against the kernels in use) is more
        than what their update costs (λ times its bits). Their detector is kept for the windows
        of the next generation (only the two latest generations' are kept)."""
        now = request.codebook
        half = -(-request.samples.size // (2 * self.plan.block_length))
        paying, gain = rd_gain(self.plan, now, self.detector(request.generation), request.samples)
        if request.generation > 0 and paying >= half:
            return None
        fit = fit_kernels(
            list(request.samples), starts(now.kernels)[:FIT_STARTS], now.decoder_mode,
            self.detector_for, block_length=self.plan.block_length, context=self.plan.context,
            rounds=FIT_ROUNDS,
        )  # fmt: skip
        if all(np.array_equal(a, b) for a, b in zip(fit.kernels, now.kernels, strict=True)):
            return None
        detect = self.detector_for(fit.kernels)
        fitted = now.updated(fit.kernels)
        assert self.plan.residual_step_exp is not None  # a stream adapts with a residual layer
        cost = rd_lambda(Quantizer(self.plan.residual_step_exp).step) * update_bits(fitted.kernels)
        if rd_gain(self.plan, fitted, detect, request.samples)[1] - gain <= cost:
            return None
        self._detectors = {g: d for g, d in self._detectors.items()
                           if g >= request.generation}  # fmt: skip
        self._detectors[request.generation + 1] = detect
        return fitted.kernels
