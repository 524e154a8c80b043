"""Stream coding: re-block a channel into the model's blocks, and turn detected spikes into codes.

The detector (the encoder ONNX on the server, PyTorch offline) is injected: `ChannelCoder.push`
returns `Window`s (a block with context on both sides), the caller detects spikes in them, as one
batch across many streams if it likes, and hands them back with `accept`. Block b is final once the
spikes of block b+1 are known, because they paint back into b's tail. So a block's code comes one
block later, and its residual covers exactly what the decoder will paint. Codes depend only on the
samples, never on how they arrived.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook
from sancodec.codes import ChannelCode, EntropyCoder, ResidualLayer, SanLayer
from sancodec.decoder import paint_spikes
from sancodec.errors import InvalidConfigError, InvalidInputError, ProtocolError
from sancodec.metrics import bits_per_sample, prdn
from sancodec.quantization import Quantizer
from sancodec.residual import encode_residual, transform_for

__all__ = ["ChannelCoder", "CodedChannel", "CodingPlan", "Spikes", "Window"]

Samples = npt.NDArray[np.float64]
STEP_SEARCH = 96  # rate control looks this many 1/8-octave steps around the default


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
    max_bits_per_sample: float | None = None
    residual_coder: EntropyCoder = EntropyCoder.RICE  # Rice: fast; adaptive binary: smaller

    def __post_init__(self) -> None:
        if self.block_length < 1 or self.context < 0 or not self.scale > 0:
            raise InvalidConfigError("block length, context and scale must be positive")
        if max(self.codebook.reach) > self.block_length:
            raise InvalidConfigError("kernels reach beyond one block: use longer blocks")
        if (self.residual_step_exp is None) != (self.codebook.residual is None):
            raise InvalidConfigError("a residual step needs a residual transform, and back")
        if self.max_prdn_percent is not None and self.max_bits_per_sample is not None:
            raise InvalidConfigError("ask for a PRDN target or a bit budget, not both")
        for target in (self.max_prdn_percent, self.max_bits_per_sample):
            if target is not None and not target > 0:
                raise InvalidConfigError(f"quality targets must be positive, got {target}")


@dataclass(frozen=True, eq=False)
class Window:
    """Model-domain samples around block `index`, mean removed; samples[0] is at `offset`."""

    index: int
    start: int
    count: int
    offset: int
    samples: npt.NDArray[np.float32]


@dataclass(frozen=True, eq=False)
class Spikes:
    """Detected spikes, positions relative to the window's first sample."""

    kernel_ids: npt.NDArray[np.int32]
    positions: npt.NDArray[np.int64]
    amplitudes: npt.NDArray[np.float64]


@dataclass(frozen=True, eq=False)
class CodedChannel:
    """A final block of one channel: its code and what it decodes to (model domain)."""

    index: int
    start: int
    code: ChannelCode
    signal: Samples
    reconstruction: Samples


class ChannelCoder:
    def __init__(self, plan: CodingPlan, channel: int = 0) -> None:
        self.plan = plan
        self.channel = channel
        self._x = np.zeros(0)  # model-domain samples from sample self._x_start on
        self._x_start = 0
        self._received = 0
        self._ended = False
        self._next_window = 0  # index of the next block to hand out
        self._layers: dict[int, SanLayer] = {}  # accepted, not yet final
        self._next_final = 0
        self._accepted = 0  # index of the next block whose spikes we expect
        self._san = Quantizer(plan.san_step_exp)
        self._transform = transform_for(plan.codebook.residual) if plan.codebook.residual else None

    def push(self, samples: npt.ArrayLike) -> list[Window]:
        """Add physical samples; returns the windows that now have their right context."""
        if self._ended:
            raise ProtocolError("samples after the end of the stream")
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise InvalidInputError("samples must be a 1-D array of finite values")
        self._x = np.concatenate([self._x, x / self.plan.scale])
        self._received += x.size
        return self._windows()

    def finish(self) -> list[Window]:
        """The stream ended: windows for the remaining (last, maybe short) blocks. Accept them,
        then `ready()` gives every block still open."""
        self._ended = True
        return self._windows()

    def _windows(self) -> list[Window]:
        out: list[Window] = []
        n, ctx = self.plan.block_length, self.plan.context
        while True:
            start = self._next_window * n
            if start >= self._received or (not self._ended and start + n + ctx > self._received):
                return out
            count = min(n, self._received - start)
            lo, hi = max(start - ctx, 0), min(start + count + ctx, self._received)
            part = self._x[lo - self._x_start : hi - self._x_start]
            out.append(
                Window(self._next_window, start, count, lo, (part - part.mean()).astype(np.float32))
            )
            self._next_window += 1

    def accept(self, window: Window, spikes: Spikes) -> list[CodedChannel]:
        """Take the spikes detected in a window; returns the blocks that are now final."""
        if window.index != self._accepted:
            raise ProtocolError(
                f"spikes for block {window.index} arrived, expected block {self._accepted}"
            )
        self._accepted += 1
        positions = spikes.positions + window.offset
        mine = (positions >= window.start) & (positions < window.start + window.count)
        self._layers[window.index] = SanLayer.from_spikes(
            spikes.kernel_ids[mine], positions[mine], spikes.amplitudes[mine], self._san
        )
        return self.ready()

    def ready(self) -> list[CodedChannel]:
        """Blocks that can be final now; after `finish` and the last `accept`, all the rest."""
        out = []
        while self._next_final in self._layers and (
            self._next_final + 1 in self._layers
            or (self._ended and self._next_final + 1 >= self._next_window)
        ):
            out.append(self._finalize(self._next_final))
        return out

    @property
    def done(self) -> bool:
        """Every block of an ended stream is final."""
        return self._ended and self._next_final == self._next_window

    def _finalize(self, index: int) -> CodedChannel:
        n = self.plan.block_length
        start = index * n
        count = min(n, self._received - start)
        x = self._x[start - self._x_start : start + count - self._x_start]
        painted = np.zeros(count)
        for b in (index - 1, index, index + 1):
            if b in self._layers:
                layer = self._layers[b]
                paint_spikes(
                    painted,
                    start,
                    self.plan.codebook,
                    layer.kernel_ids,
                    layer.positions,
                    layer.amplitudes(),
                )
        san = self._layers[index]
        offset_level = int(self._san.quantize([np.mean(x - painted)])[0])
        san = SanLayer(san.step_exp, san.kernel_ids, san.positions, san.levels, offset_level)
        base = painted + san.offset
        residual, reconstruction = self._code_residual(x, base, san, start)
        self._layers.pop(index - 1, None)
        self._next_final += 1
        self._trim()
        return CodedChannel(
            index, start, ChannelCode(self.channel, san, residual), x, reconstruction
        )

    def _code_residual(
        self, x: Samples, base: Samples, san: SanLayer, start: int
    ) -> tuple[ResidualLayer | None, Samples]:
        if self._transform is None or self.plan.residual_step_exp is None:
            return None, base
        default = self.plan.residual_step_exp
        if self.plan.max_prdn_percent is None and self.plan.max_bits_per_sample is None:
            return self._residual_at(default, x, base)
        # PRDN target: the coarsest step that meets it; bit budget: the finest step that fits
        coarsest = self.plan.max_prdn_percent is not None
        lo, hi = default - STEP_SEARCH, default + STEP_SEARCH
        while lo < hi:
            mid = (lo + hi + 1) // 2 if coarsest else (lo + hi) // 2
            layer, reconstruction = self._residual_at(mid, x, base)
            ok = self._meets_target(x, reconstruction, ChannelCode(self.channel, san, layer), start)
            if coarsest:
                lo, hi = (mid, hi) if ok else (lo, mid - 1)
            else:
                lo, hi = (lo, mid) if ok else (mid + 1, hi)
        return self._residual_at(lo, x, base)

    def _residual_at(
        self, step_exp: int, x: Samples, base: Samples
    ) -> tuple[ResidualLayer, Samples]:
        assert self._transform is not None
        layer = encode_residual(
            x - base, self._transform, Quantizer(step_exp), self.plan.residual_coder
        )
        return layer, base + self._transform.decode_layer(layer, x.size)

    def _meets_target(
        self, x: Samples, reconstruction: Samples, code: ChannelCode, start: int
    ) -> bool:
        if self.plan.max_prdn_percent is not None:
            return prdn(x, reconstruction) <= self.plan.max_prdn_percent
        assert self.plan.max_bits_per_sample is not None
        return (
            bits_per_sample(code.to_proto(start, x.size).ByteSize(), x.size)
            <= self.plan.max_bits_per_sample
        )

    def _trim(self) -> None:
        """Drop samples that neither a later window nor a later final block needs."""
        n = self.plan.block_length
        keep_from = max(
            min(self._next_final * n, self._next_window * n - self.plan.context), self._x_start
        )
        self._x = self._x[keep_from - self._x_start :]
        self._x_start = keep_from
