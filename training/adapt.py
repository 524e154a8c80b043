"""Kernels fitted to one recording (`sancodec encode --adapt`).

A shipped model's kernels were learned on other people's beats. Here the bundle's own training
recipe (its manifest's `training.config`, one restart) runs on the recording itself, and the
recording is then coded, offline, with the kernels it produced. Those kernels travel in the
`.sanc` header's codebook, as every codebook does, so every decoder (offline, or the server's,
which is sent the header's codebook) decodes the file unchanged, and the rate of the file counts
them. Everything else (blocks, context, quantization, the residual layer) is the bundle's.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import torch

from sancodec.bundle import Bundle
from sancodec.codebook import Codebook, quantize_kernel
from sancodec.codes import BlockCode
from sancodec.errors import InvalidConfigError, InvalidInputError
from sancodec.header import ChannelInfo, StreamHeader
from sancodec.payload import block_bytes
from sancodec.quantization import Quantizer
from sancodec.sancfile import SancWriter
from sancodec.streamcoder import ChannelCoder, CodedChannel, CodingPlan, Spikes, Window
from training.codec_eval import Detector, block_flithos, torch_detector
from training.data import record_splits
from training.model import SAN
from training.train import TrainConfig, fit

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
# A file is coded whole, with no stream latency to keep: its blocks are this many of the model's
# by default. Longer blocks spread each block's side information and give the entropy coder's
# probabilities more values to learn from (make bench: about a fifth fewer bits at 8x on ECG).
BLOCK_FACTOR = 8
MAX_BLOCK_LENGTH = 1 << 20
# a server's Decode answers a block's float32 samples, all channels, in one message (8 MiB by
# default): --adapt's blocks stay well under that
MAX_BLOCK_BYTES = 4 << 20


@dataclass(frozen=True)
class Adapted:
    model: SAN
    codebook: Codebook
    scales: tuple[float, ...]  # physical units per model unit, per channel
    best_epoch: int
    seconds: float


@dataclass(frozen=True)
class AdaptedCode:
    header: StreamHeader
    blocks: list[BlockCode]
    flithos: list[float]  # the paper's phi of each non-constant block, all channels together
    adapted: Adapted


def _window(bundle: Bundle) -> int:
    return min(bundle.manifest.block_length, MAX_WINDOW)


def adapt_codebook(
    bundle: Bundle, samples: npt.ArrayLike, *, epochs: int | None = None, seed: int = 0
) -> Adapted:
    """Run the bundle's training recipe (one restart) on (channels, n) physical samples, every
    channel scaled by its own standard deviation; the windows train and pick the epoch."""
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
    # each channel zero-mean and unit-variance, so the pooled scale below is 1 and no channel's
    # offset or amplitude leaks into another's scale
    signals = {
        f"ch{c}": (row - row.mean()) / s for c, (row, s) in enumerate(zip(x, stds, strict=True))
    }
    names = list(signals)
    splits = record_splits(
        signals, {"train": names, "val": names, "test": names}, window, normalization="global"
    )
    pooled = float(splits["train"].stds[0])  # 1 up to rounding: channels are already scaled
    recipe = m.training.get("config")
    if not isinstance(recipe, Mapping):
        raise InvalidConfigError(f"model {m.name}/{m.version} names no training recipe to adapt")
    try:
        config = TrainConfig(**dict(recipe))
    except (TypeError, ValueError) as exc:
        raise InvalidConfigError(
            f"model {m.name}/{m.version}: its training recipe is unusable: {exc}"
        ) from None
    config = dataclasses.replace(
        config, restarts=1, seed=seed, device="cpu", epochs=epochs or config.epochs
    )
    started = time.perf_counter()
    result = fit(config, splits["train"], splits["val"])
    model = result.model.eval()
    with torch.no_grad():  # the header carries quantized kernels: detect and paint with them
        for w in model.weights:
            w.copy_(torch.from_numpy(quantize_kernel(w.numpy())))
    seconds = time.perf_counter() - started
    log.info("adapted %d kernels in %.1f s (best epoch %d)", len(config.kernel_sizes), seconds,
             result.best_epoch)  # fmt: skip
    codebook = Codebook(model.codebook().kernels, model.decoder_mode, m.codebook.residual,
                        m.codebook.tables)  # fmt: skip
    return Adapted(model, codebook, tuple(s * pooled for s in stds), result.best_epoch, seconds)


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


def code_channels(plans: list[CodingPlan], x: npt.NDArray[np.float64], detect: Detector
                  ) -> list[list[CodedChannel]]:  # fmt: skip
    """Every channel through its own ChannelCoder: (channels, blocks) coded blocks."""
    out = []
    for c, (plan, row) in enumerate(zip(plans, x, strict=True)):
        coder = ChannelCoder(plan, c)
        windows = coder.push(row) + coder.finish()
        coded = [block for w in windows for block in coder.accept(w, detect(w))]
        out.append(coded + coder.ready())
    return out


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


def _coded(
    coded: list[list[CodedChannel]], codebook: Codebook, with_spikes: bool
) -> CodedRecording:
    parts = list(zip(*coded, strict=True))
    blocks = [BlockCode(p[0].start, p[0].signal.size, tuple(c.code for c in p)) for p in parts]
    error = sum(float(np.sum((c.signal - c.reconstruction) ** 2)) for p in parts for c in p)
    bits = 8 * (sum(len(block_bytes(b, codebook)) for b in blocks) + codebook.to_proto().ByteSize())
    return CodedRecording(blocks, parts, codebook, bits, error, with_spikes)


def code_both(plans: list[CodingPlan], x: npt.NDArray[np.float64], adapted: Adapted
              ) -> tuple[CodedRecording, CodedRecording | None]:  # fmt: skip
    """The recording coded with the adapted kernels, and (where there is a residual layer) with
    no spikes at all: the residual layer alone."""
    spikes = _coded(code_channels(plans, x, torch_detector(adapted.model)), adapted.codebook, True)
    if plans[0].residual_step_exp is None:
        return spikes, None
    placeholder = residual_only_codebook(adapted.codebook)
    return spikes, _coded(code_channels(plans, x, _no_spikes), placeholder, False)


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
    epochs: int | None = None,
    max_prdn_percent: float | None = None,
    max_bits_per_sample: float | None = None,
    metadata: dict[str, str] | None = None,
    block_length: int | None = None,
) -> AdaptedCode:
    """Fit kernels to the recording, then code it with them: the .sanc header and blocks."""
    m = bundle.manifest
    if not abs(sample_rate_hz - m.sample_rate_hz) <= RATE_TOLERANCE * m.sample_rate_hz:
        raise InvalidConfigError(
            f"model {m.name}/{m.version} codes {m.sample_rate_hz:g} Hz signals; the recording is "
            f"{sample_rate_hz:g} Hz (resample it, or pick a model for that rate)"
        )
    x = np.atleast_2d(np.asarray(samples, dtype=np.float64))
    if len(channels) != x.shape[0]:
        raise InvalidInputError(f"{len(channels)} channel descriptions for {x.shape[0]} channels")
    _check_targets(bundle, max_prdn_percent, max_bits_per_sample)  # before minutes of training
    block_length = block_length_for(bundle, block_length, x.shape[0])
    adapted = adapt_codebook(bundle, x, epochs=epochs)
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
        note = (f"adapted to this recording from {m.name}/{m.version}: its recipe, one restart, "
                f"best epoch {adapted.best_epoch}")  # fmt: skip
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
