"""Kernels fitted to one recording (`sancodec encode --adapt`), and the recording coded with them.

A shipped model's kernels were learned on other people's beats. Here they are fitted to the
recording itself (`sancodec.fitting`: the bundle's encoder, its kernels swapped in ONNX Runtime,
detects; least squares refits the kernels at the spikes found), and the recording is then coded,
offline, with them. Those kernels travel in the `.sanc` header's codebook, as every codebook does,
so every decoder (offline, or the server's, which is sent the header's codebook) decodes the file
unchanged, and the rate of the file counts them. Everything else (blocks, context, quantization,
the residual layer) is the bundle's. No PyTorch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from sancodec.bundle import Bundle
from sancodec.codebook import Codebook
from sancodec.codes import BlockCode
from sancodec.encodergraph import BatchDetector, DetectorFactory, kernel_swapper
from sancodec.errors import InvalidConfigError, InvalidInputError
from sancodec.fitting import fit_kernels, starts
from sancodec.header import ChannelInfo, StreamHeader
from sancodec.metrics import block_flithos
from sancodec.payload import block_bytes
from sancodec.plan import CodedChannel, CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer
from sancodec.sancfile import SancWriter
from sancodec.streamcoder import CodedBlock, StreamCoder, code_stream

__all__ = [
    "AdaptedCode",
    "CodedRecording",
    "adapt_codebook",
    "choose",
    "code_both",
    "code_recording",
    "encode_adapted",
    "plans_for",
    "write_sanc",
]

log = logging.getLogger(__name__)

RATE_TOLERANCE = 0.005  # as the server: a 360 Hz model takes 358.2 to 361.8 Hz
MAX_WINDOW = 2048
ROUNDS = 5  # of detection and least squares from each start (about 0.1 s each on 5 min of ECG)
# A file is coded whole, with no stream latency to keep: its blocks are this many of the model's
# by default. Longer blocks spread each block's side information and give the entropy coder's
# probabilities more values to learn from (make bench: about a fifth fewer bits at 8x on ECG).
BLOCK_FACTOR = 8
MAX_BLOCK_LENGTH = 1 << 20
# a server's Decode answers a block's float32 samples, all channels, in one message (8 MiB by
# default): --adapt's blocks stay well under that
MAX_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True, eq=False)
class Adapted:
    codebook: Codebook
    detect: BatchDetector  # the bundle's encoder with the fitted kernels
    scales: tuple[float, ...]  # physical units per model unit, per channel
    best_round: int  # 0: the bundle's kernels fitted this recording best
    seconds: float


@dataclass(frozen=True, eq=False)
class AdaptedCode:
    header: StreamHeader
    blocks: list[BlockCode]
    flithos: list[float]  # the paper's phi of each non-constant block, all channels together
    adapted: Adapted


def _window(bundle: Bundle) -> int:
    return min(bundle.manifest.block_length, MAX_WINDOW)


def _standardized(
    bundle: Bundle, samples: npt.ArrayLike
) -> tuple[npt.NDArray[np.float64], list[float]]:
    """(channels, n) physical samples, each channel zero-mean and unit-variance, and the stds."""
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    m = bundle.manifest
    window = _window(bundle)
    if x.shape[1] < window:
        raise InvalidInputError(
            f"--adapt needs at least {window} samples per channel ({window / m.sample_rate_hz:.1f} s) "
            f"to fit kernels; the recording has {x.shape[1]}"
        )
    if not np.all(np.isfinite(x)):
        raise InvalidInputError("--adapt needs finite samples (fill missing ones first)")
    stds = [float(np.std(row)) for row in x]
    if not all(s > 0 for s in stds):
        raise InvalidInputError("--adapt cannot fit kernels to a flat channel (zero variance)")
    # each channel its own scale, so that no channel's offset or amplitude leaks into another's
    return (x - x.mean(axis=1, keepdims=True)) / np.array(stds)[:, None], stds


def adapt_codebook(
    bundle: Bundle,
    samples: npt.ArrayLike,
    *,
    rounds: int = ROUNDS,
    block_length: int | None = None,
    detector_for: DetectorFactory | None = None,
) -> Adapted:
    """Fit the bundle's kernels to (channels, n) physical samples, every channel scaled by its own
    standard deviation: `rounds` rounds of detection and least squares (sancodec.fitting)."""
    m = bundle.manifest
    if rounds < 1:
        raise InvalidConfigError(f"--rounds must be at least 1, got {rounds}")
    x, stds = _standardized(bundle, samples)
    started = time.perf_counter()
    detector_for = detector_for or kernel_swapper(bundle)
    fit = fit_kernels(
        list(x), starts(m.codebook.kernels), m.codebook.decoder_mode, detector_for,
        block_length=block_length_for(bundle, block_length, x.shape[0]), context=m.context,
        rounds=rounds,
    )  # fmt: skip
    seconds = time.perf_counter() - started
    log.info("fitted %d kernels in %.1f s (round %d of %d best; squared errors %s)",
             len(fit.kernels), seconds, fit.rounds, rounds, fit.errors)  # fmt: skip
    codebook = Codebook(fit.kernels, m.codebook.decoder_mode, m.codebook.residual,
                        m.codebook.tables)  # fmt: skip
    return Adapted(codebook, detector_for(fit.kernels), tuple(stds), fit.rounds, seconds)


def block_length_for(bundle: Bundle, block_length: int | None = None, channels: int = 1) -> int:
    """--adapt's block length: BLOCK_FACTOR of the model's blocks, or one asked for (at least
    the model's, at most MAX_BLOCK_LENGTH); either way no more than MAX_BLOCK_BYTES of float32
    samples over all channels, so a server can decode the file."""
    m = bundle.manifest
    most = max(m.block_length, min(MAX_BLOCK_LENGTH, MAX_BLOCK_BYTES // (4 * channels)))
    if block_length is None:
        return min(m.block_length * BLOCK_FACTOR, most)
    if not m.block_length <= block_length <= most:
        raise InvalidConfigError(
            f"--block-length must be in [{m.block_length}, {most}] for model "
            f"{m.name}/{m.version} and {channels} channel(s), got {block_length}"
        )
    return block_length


def plans_for(
    bundle: Bundle,
    adapted: Adapted,
    *,
    block_length: int | None = None,
    residual_step_exp: int | None = None,
    max_prdn_percent: float | None = None,
    max_bits_per_sample: float | None = None,
) -> list[CodingPlan]:
    """One plan per channel: the adapted kernels and scale, --adapt's blocks (block_length_for),
    the bundle's steps (or this residual step)."""
    m = bundle.manifest
    blocks = block_length_for(bundle, block_length, len(adapted.scales))
    residual = m.residual_step_exp if residual_step_exp is None else residual_step_exp
    return [
        CodingPlan(
            adapted.codebook,
            blocks,
            m.context,
            scale,
            m.san_step_exp,
            residual,
            max_prdn_percent,
            max_bits_per_sample,
        )
        for scale in adapted.scales
    ]


def _no_spikes(window: Window) -> Spikes:
    empty = np.zeros(0)
    return Spikes(empty.astype(np.int32), empty.astype(np.int64), empty)


@dataclass(frozen=True)
class CodedRecording:
    blocks: list[BlockCode]
    parts: list[tuple[CodedChannel, ...]]  # per block, its channels
    codebook: Codebook  # what the .sanc header carries: the adapted one, or a placeholder
    bits: int  # the block codes and the header's codebook
    squared_error: float  # model domain, all channels
    with_spikes: bool  # the adapted kernels, or the residual layer alone

    def reconstruction(self, scales: tuple[float, ...]) -> npt.NDArray[np.float64]:
        """(channels, n) in physical units."""
        return np.stack([
            np.concatenate([p[c].reconstruction for p in self.parts]) * s
            for c, s in enumerate(scales)
        ])  # fmt: skip


def _coded(coded: list[CodedBlock], codebook: Codebook, with_spikes: bool) -> CodedRecording:
    parts = [b.parts for b in coded]
    blocks = [b.code() for b in coded]
    error = sum(float(np.sum((c.signal - c.reconstruction) ** 2)) for p in parts for c in p)
    bits = 8 * (sum(len(block_bytes(b, codebook)) for b in blocks) + codebook.to_proto().ByteSize())
    return CodedRecording(blocks, parts, codebook, bits, error, with_spikes)


def code_both(plans: list[CodingPlan], x: npt.NDArray[np.float64], adapted: Adapted
              ) -> tuple[CodedRecording, CodedRecording | None]:  # fmt: skip
    """The recording coded with the adapted kernels, and (where there is a residual layer) with
    no spikes at all: the residual layer alone."""

    def detect(window: Window) -> Spikes:
        return adapted.detect(window.samples[None, None, :])[0]

    spikes = _coded(code_stream(StreamCoder(plans), x, detect), adapted.codebook, True)
    if plans[0].residual_step_exp is None:
        return spikes, None
    placeholder = residual_only_codebook(adapted.codebook)
    return spikes, _coded(code_stream(StreamCoder(plans), x, _no_spikes), placeholder, False)


def code_recording(plans: list[CodingPlan], x: npt.NDArray[np.float64], adapted: Adapted
                   ) -> CodedRecording:  # fmt: skip
    """Code the recording both ways (code_both) and keep the better (choose)."""
    return choose(plans[0], *code_both(plans, x, adapted))


def choose(plan: CodingPlan, spikes: CodedRecording, alone: CodedRecording | None
           ) -> CodedRecording:  # fmt: skip
    """The better code: the lower distortion + λ·bits at the residual step Δ (λ = Δ² ln2 / 6, the
    slope of a uniform quantizer's D(R)), the fewer bits under a PRDN target, the lower
    distortion under a budget. Kernels that do not pay for themselves on a recording are then
    not used on it."""
    if alone is None or plan.residual_step_exp is None:
        return spikes
    if plan.max_prdn_percent is not None:
        return min(spikes, alone, key=lambda c: c.bits)
    if plan.max_bits_per_sample is not None:
        return min(spikes, alone, key=lambda c: c.squared_error)
    lam = Quantizer(plan.residual_step_exp).step ** 2 * math.log(2) / 6
    return min(spikes, alone, key=lambda c: c.squared_error + lam * c.bits)


def _check_targets(
    bundle: Bundle, max_prdn_percent: float | None, max_bits_per_sample: float | None
) -> None:
    """Refuse what the server refuses: a target on a model with no residual layer, both targets,
    a target that is not positive."""
    m = bundle.manifest
    if (max_prdn_percent is not None or max_bits_per_sample is not None) and (
        m.residual_step_exp is None
    ):
        raise InvalidConfigError(
            f"model {m.name}/{m.version} has no residual layer: it cannot meet a quality target"
        )
    for target in (max_prdn_percent, max_bits_per_sample):
        if target is not None and not (math.isfinite(target) and target > 0):
            raise InvalidConfigError(f"quality targets must be positive, got {target}")
    if max_prdn_percent is not None and max_bits_per_sample is not None:
        raise InvalidConfigError("ask for a PRDN target or a bit budget, not both")


def residual_only_codebook(codebook: Codebook) -> Codebook:
    """For a code with no spikes: one 1-weight kernel (the format needs a kernel, and no spike
    refers to it) and the model's residual transform, so the header costs a few bytes."""
    return Codebook((np.ones(1, dtype=np.float32),), codebook.decoder_mode, codebook.residual,
                    codebook.tables)  # fmt: skip


def encode_adapted(
    bundle: Bundle,
    samples: npt.ArrayLike,
    sample_rate_hz: float,
    channels: tuple[ChannelInfo, ...],
    *,
    rounds: int = ROUNDS,
    max_prdn_percent: float | None = None,
    max_bits_per_sample: float | None = None,
    metadata: dict[str, str] | None = None,
    block_length: int | None = None,
) -> AdaptedCode:
    """Fit kernels to the recording, then code it with them: the .sanc header and blocks."""
    if rounds < 1:
        raise InvalidConfigError(f"--rounds must be at least 1, got {rounds}")
    m = bundle.manifest
    if not abs(sample_rate_hz - m.sample_rate_hz) <= RATE_TOLERANCE * m.sample_rate_hz:
        raise InvalidConfigError(
            f"model {m.name}/{m.version} codes {m.sample_rate_hz:g} Hz signals; the recording is "
            f"{sample_rate_hz:g} Hz (resample it, or pick a model for that rate)"
        )
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    if len(channels) != x.shape[0]:
        raise InvalidInputError(f"{len(channels)} channel descriptions for {x.shape[0]} channels")
    _check_targets(bundle, max_prdn_percent, max_bits_per_sample)  # before any fitting
    block_length = block_length_for(bundle, block_length, x.shape[0])
    adapted = adapt_codebook(bundle, x, rounds=rounds, block_length=block_length)
    plans = plans_for(bundle, adapted, block_length=block_length, max_prdn_percent=max_prdn_percent,
                      max_bits_per_sample=max_bits_per_sample)  # fmt: skip
    coded = code_recording(plans, x, adapted)
    scores = [block_flithos(parts, coded.codebook.weight_count) for parts in coded.parts]
    phis = [score[2] for score in scores if score is not None]
    infos = tuple(
        ChannelInfo(
            c.name,
            c.units or m.normalization.units,
            0.0,
            scale,
            c.adc_gain,
            c.adc_baseline,
            c.adc_resolution_bits,
        )
        for c, scale in zip(channels, adapted.scales, strict=True)
    )
    if coded.with_spikes:
        note = (f"adapted to this recording from {m.name}/{m.version}: least squares at the "
                f"spikes its encoder detects, round {adapted.best_round} of {rounds} best")  # fmt: skip
    else:
        note = (f"not used: the residual layer alone coded this recording better than kernels "
                f"adapted from {m.name}/{m.version}")  # fmt: skip
    header = StreamHeader(
        bundle.ref, coded.codebook, sample_rate_hz, block_length, infos,
        metadata={**(metadata or {}), "kernels": note},
    )  # fmt: skip
    return AdaptedCode(header, coded.blocks, phis, adapted)


def write_sanc(code: AdaptedCode, path: Path) -> None:
    with SancWriter(path, code.header) as writer:
        for block in code.blocks:
            writer.write(block)
