"""What a stream coder works with: the plan of a stream, detection windows, spikes, coded blocks."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.bundle import SPIKE_SOURCES, Manifest
from sancodec.codebook import Codebook
from sancodec.codes import ChannelCode
from sancodec.errors import InvalidConfigError

__all__ = ["CodedChannel", "CodingPlan", "Spikes", "Window"]

Samples = npt.NDArray[np.float64]


@dataclass(frozen=True)
class CodingPlan:
    """How a stream is coded: the model's codebook and blocks, and the quantization to use."""

    codebook: Codebook
    block_length: int
    context: int
    scale: float  # physical units per model unit
    san_step_exp: int
    residual_step_exp: int | None = None  # None: SAN layer only
    max_prdn_percent: float | None = None  # rate control, per block (needs a residual layer)
    max_bits_per_sample: float | None = None  # per block, over all `channels`
    stream_prdn_percent: float | None = None  # one steered step for the whole stream
    channels: int = 1  # of the stream: a bit budget is shared among them
    choose_layers: bool = True  # a block keeps its spikes only where they pay (needs a residual)
    spikes: str = "encoder"  # where spikes come from: the detector given, or "beats" (beatlock)
    sample_rate_hz: float = 0.0  # of the model; "beats" needs it

    def __post_init__(self) -> None:
        if self.block_length < 1 or self.context < 0 or not self.scale > 0:
            raise InvalidConfigError("block length, context and scale must be positive")
        if max(self.codebook.reach) > self.block_length:
            raise InvalidConfigError("kernels reach beyond one block: use longer blocks")
        if (self.residual_step_exp is None) != (self.codebook.residual is None):
            raise InvalidConfigError("a residual step needs a residual transform, and back")
        targets = (self.max_prdn_percent, self.max_bits_per_sample, self.stream_prdn_percent)
        if sum(t is not None for t in targets) > 1:
            raise InvalidConfigError(
                "ask for one quality target: a PRDN cap, a bit budget or a stream PRDN"
            )
        for target in targets:
            if target is not None and not target > 0:
                raise InvalidConfigError(f"quality targets must be positive, got {target}")
        if self.channels < 1:
            raise InvalidConfigError(f"a stream has at least one channel, got {self.channels}")
        if self.spikes not in SPIKE_SOURCES:
            raise InvalidConfigError(f"spikes must be one of {', '.join(SPIKE_SOURCES)}")
        if not self.detects and not self.sample_rate_hz > 0:
            raise InvalidConfigError("spikes at the beats need the model's sample rate")

    @property
    def detects(self) -> bool:
        """Whether a detector (the encoder) finds this plan's spikes; if not, the stream coder
        places them at the beats itself (sancodec.beatlock)."""
        return self.spikes != "beats"

    @classmethod
    def from_manifest(
        cls,
        m: Manifest,
        *,
        channels: int = 1,
        max_prdn_percent: float | None = None,
        max_bits_per_sample: float | None = None,
        stream_prdn_percent: float | None = None,
    ) -> CodingPlan:
        """The bundle's plan: its codebook, blocks, scale and steps, and the stream's target."""
        if m.residual_step_exp is None and (
            max_prdn_percent is not None
            or max_bits_per_sample is not None
            or stream_prdn_percent is not None
        ):
            raise InvalidConfigError(
                f"model {m.name}/{m.version} has no residual layer: it cannot meet a quality target"
            )
        return cls(
            m.codebook, m.block_length, m.context, m.normalization.scale, m.san_step_exp,
            m.residual_step_exp, max_prdn_percent, max_bits_per_sample, stream_prdn_percent, channels,
            spikes=m.spikes, sample_rate_hz=m.sample_rate_hz,
        )  # fmt: skip


@dataclass(frozen=True, eq=False)
class Window:
    """Model-domain samples around block `index`, mean removed; samples[0] is at `offset`."""

    index: int
    start: int
    count: int
    offset: int
    samples: npt.NDArray[np.float32]
    generation: int = 0  # the kernels that detect it: 0 the plan's, k the stream's k-th update


@dataclass(frozen=True, eq=False)
class Spikes:
    """Detected spikes, positions relative to the window's first sample."""

    kernel_ids: npt.NDArray[np.int32]
    positions: npt.NDArray[np.int64]
    amplitudes: npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class CodedChannel:
    """A final block of one channel: its code, its payload bytes, what it decodes to (model
    domain), and why it missed its quality target (empty when it met it)."""

    index: int
    start: int
    code: ChannelCode
    payload: bytes
    signal: Samples
    reconstruction: Samples
    missed: str = ""
