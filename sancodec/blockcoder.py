"""One channel's final block: its offset, its residual at the step rate control picks, its payload."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook
from sancodec.codes import ChannelCode, ResidualLayer, SanLayer
from sancodec.coefficients import ResidualEstimate, quantize_residual, rd_lambda
from sancodec.decoder import paint_spikes
from sancodec.payload import encode_channel, spike_bits
from sancodec.plan import CodedChannel, CodingPlan
from sancodec.quantization import Quantizer
from sancodec.ratecontrol import (
    STEP_SEARCH,
    coarsest_meeting_prdn,
    finest_within_bits,
    residual_cost,
)
from sancodec.residual import band_sizes, transform_for

__all__ = ["BlockCoder"]

Samples = npt.NDArray[np.float64]
Layer = tuple[SanLayer, Codebook]  # a block's spikes and the codebook they paint (a stream's
# kernels may change from block to block: codebook updates)
SAFETY_BITS = 40  # a residual's step and the range coder's last word, beyond the estimate


@dataclass(frozen=True, eq=False)
class _Alternative:
    """A block coded with its own spikes (or none) and no neighbour's, at the plan's step: its
    block offset, base, residual estimate and distortion + λ·bits."""

    offset_level: int
    base: Samples
    estimate: ResidualEstimate
    cost: float


def _offset(x: Samples, painted: Samples, san_step_exp: int) -> tuple[int, Samples]:
    """The block offset's level (what centres the samples the spikes leave) and the block's
    base: the painted spikes plus the offset."""
    quantizer = Quantizer(san_step_exp)
    offset_level = int(quantizer.quantize([np.mean(x - painted)])[0])
    return offset_level, painted + offset_level * quantizer.step


def _varint_bytes(value: int) -> int:
    return max(1, (max(value, 1).bit_length() + 6) // 7)


class BlockCoder:
    """Codes final blocks of one channel under a plan (the streaming and blocking are the
    ChannelCoder's)."""

    def __init__(self, plan: CodingPlan, channel: int) -> None:
        self.plan, self.channel = plan, channel
        self._tables = plan.codebook.tables
        self._transform = transform_for(plan.codebook.residual) if plan.codebook.residual else None
        self._chosen: dict[int, _Alternative] = {}  # by block start: `choose`'s, for `code`

    def _sizes(self, count: int) -> tuple[int, ...]:
        spec = self.plan.codebook.residual
        return band_sizes(spec, count) if spec is not None else ()

    def _payload(self, code: ChannelCode, start: int, count: int, codebook: Codebook,
                 estimate: ResidualEstimate | None = None) -> bytes:  # fmt: skip
        """`estimate`: the residual layer's, made already (`quantize_residual`'s)."""
        return encode_channel(code, self._tables, len(codebook.kernels), start, self._sizes(count),
                              estimate=estimate)  # fmt: skip

    def _paint(self, layers: list[Layer], start: int, count: int) -> Samples:
        painted = np.zeros(count)
        for layer, codebook in layers:
            paint_spikes(painted, start, codebook, layer.kernel_ids, layer.positions,
                         layer.amplitudes())  # fmt: skip
        return painted

    def spikes_gain(self, x: Samples, layer: Layer, start: int) -> float:
        """How much a block's own spikes lower distortion + λ·bits: they pay where it is positive
        (with no residual layer, or no layer choice, always: infinity)."""
        return self._weigh(x, layer, start)[0]

    def choose(self, x: Samples, layer: Layer, start: int) -> Layer:
        """The block's layer: its spikes where they pay, else none. The alternative chosen is
        kept for the block's final code, which codes exactly it where it would code the same
        afresh: no neighbour's spikes paint into the block, and the block is coded at the plan's
        residual step (no bit budget, PRDN cap or steered step other than it)."""
        gain, alternatives = self._weigh(x, layer, start)
        keep = gain > 0
        if alternatives:
            self._chosen[start] = alternatives[keep]
        return layer if keep else (layer[0].without_spikes(), layer[1])

    def _weigh(
        self, x: Samples, layer: Layer, start: int
    ) -> tuple[float, tuple[_Alternative, ...]]:
        """The spikes' gain, and the block without and with them (none without a choice)."""
        if self._transform is None or not self.plan.choose_layers:
            return math.inf, ()
        san, codebook = layer
        bits = spike_bits(san, self._tables, len(codebook.kernels), start)
        without = self._alternative(x, np.zeros(x.size), san.step_exp)
        with_spikes = self._alternative(x, self._paint([layer], start, x.size), san.step_exp)
        step = Quantizer(self._step_exp).step
        return without.cost - (with_spikes.cost + rd_lambda(step) * bits), (without, with_spikes)

    @property
    def _step_exp(self) -> int:
        """The plan's residual step (a plan with a transform has one: CodingPlan checks)."""
        assert self.plan.residual_step_exp is not None
        return self.plan.residual_step_exp

    def _alternative(self, x: Samples, painted: Samples, san_step_exp: int) -> _Alternative:
        assert self._transform is not None
        offset_level, base = _offset(x, painted, san_step_exp)
        estimate, cost = residual_cost(x - base, self._transform, self._step_exp, self._tables,
                                       self._sizes(x.size))  # fmt: skip
        return _Alternative(offset_level, base, estimate, cost)

    def code(self, index: int, start: int, x: Samples, layer: Layer,
             neighbours: list[Layer], step_exp: int | None) -> CodedChannel:  # fmt: skip
        """The block's code: what its neighbours' spikes paint into it is part of its base."""
        plan, chosen = self.plan, self._chosen.pop(start, None)
        if plan.max_bits_per_sample is not None:
            return self._within_budget(index, start, x, layer, neighbours)
        step = step_exp if step_exp is not None else plan.residual_step_exp
        # a PRDN cap: each block's own step; a stream target: the first block's, then steered
        cap = (
            plan.max_prdn_percent
            if index > 0
            else plan.max_prdn_percent or plan.stream_prdn_percent
        )
        if (chosen is not None and cap is None and step == plan.residual_step_exp
                and not self._paint(neighbours, start, x.size).any()):  # fmt: skip
            return self._code_chosen(index, start, x, layer, chosen)
        san, base = self._with_offset(x, layer, neighbours, start)
        codebook, missed = layer[1], ""
        if self._transform is None or plan.residual_step_exp is None:
            code = ChannelCode(self.channel, san)
            payload = self._payload(code, start, x.size, codebook)
            return CodedChannel(index, start, code, payload, x, base)
        assert step is not None  # the plan's step, or one steered from it
        coefficients = self._transform.forward(x - base)
        if cap is not None:
            step = coarsest_meeting_prdn(coefficients, x, base, self._transform, self._tables,
                                         self._sizes(x.size), plan.residual_step_exp, cap)  # fmt: skip
        residual, estimate, reconstruction = self._residual(coefficients, base, step)
        if cap is not None and step == plan.residual_step_exp - STEP_SEARCH:
            missed = f"PRDN {cap:g}% may be missed at the finest step"
        code = ChannelCode(self.channel, san, residual)
        payload = self._payload(code, start, x.size, codebook, estimate)
        return CodedChannel(index, start, code, payload, x, reconstruction, missed)

    def _code_chosen(self, index: int, start: int, x: Samples, layer: Layer,
                     chosen: _Alternative) -> CodedChannel:  # fmt: skip
        """The block as `choose` weighed it (no neighbour paints into it): the same base and
        levels as coding it afresh would give, without transforming and estimating it again."""
        assert self._transform is not None
        own, codebook = layer
        san = SanLayer(own.step_exp, own.kernel_ids, own.positions, own.levels, chosen.offset_level)
        residual = ResidualLayer.from_levels(chosen.estimate.step_exp, chosen.estimate.levels)
        code = ChannelCode(self.channel, san, residual)
        payload = self._payload(code, start, x.size, codebook, chosen.estimate)
        reconstruction = chosen.base + self._transform.decode_layer(residual, x.size)
        return CodedChannel(index, start, code, payload, x, reconstruction)

    def _with_offset(self, x: Samples, own: Layer, neighbours: list[Layer],
                     start: int) -> tuple[SanLayer, Samples]:  # fmt: skip
        layer = own[0]
        offset_level, base = _offset(x, self._paint([*neighbours, own], start, x.size),
                                     layer.step_exp)  # fmt: skip
        san = SanLayer(
            layer.step_exp, layer.kernel_ids, layer.positions, layer.levels, offset_level
        )
        return san, base

    def _residual(self, coefficients: Samples, base: Samples,
                  step_exp: int) -> tuple[ResidualLayer, ResidualEstimate, Samples]:  # fmt: skip
        """The residual layer of a block's transformed residual at a step, its estimate (for
        the payload) and the block's reconstruction with it."""
        assert self._transform is not None
        estimate = quantize_residual(coefficients, self._sizes(base.size), self._tables, step_exp)
        layer = ResidualLayer.from_levels(step_exp, estimate.levels)
        return layer, estimate, base + self._transform.decode_layer(layer, base.size)

    def _allowance(self, start: int, count: int) -> int:
        """The most payload bytes this channel may use so that its block keeps the budget."""
        plan = self.plan
        assert plan.max_bits_per_sample is not None
        block = int(plan.max_bits_per_sample * count * plan.channels // 8)
        framing = (1 + _varint_bytes(start) if start else 0) + 1 + _varint_bytes(count)
        share = (block - framing) // plan.channels
        # the channel message: its tag and length, its number, the payload's tag and length
        overhead = (
            1 + _varint_bytes(share) + (1 + _varint_bytes(self.channel) if self.channel else 0)
        )
        return share - overhead - 1 - _varint_bytes(share)

    def _within_budget(self, index: int, start: int, x: Samples, layer: Layer,
                       neighbours: list[Layer]) -> CodedChannel:  # fmt: skip
        allowed = self._allowance(start, x.size)
        codebook = layer[1]
        san, base = self._with_offset(x, layer, neighbours, start)
        if len(self._payload(ChannelCode(self.channel, san), start, x.size, codebook)) > allowed:
            san, base = self._with_offset(x, (layer[0].without_spikes(), codebook), neighbours,
                                          start)  # fmt: skip
        code, reconstruction = ChannelCode(self.channel, san), base
        payload = self._payload(code, start, x.size, codebook)
        if self._transform is not None and self.plan.residual_step_exp is not None:
            coefficients = self._transform.forward(x - base)
            sizes = self._sizes(x.size)
            spare = 8 * (allowed - len(payload)) - SAFETY_BITS
            for _ in range(2):  # the estimate, then at most one correction
                step = finest_within_bits(coefficients, sizes, self._tables,
                                          self.plan.residual_step_exp, spare)  # fmt: skip
                if step is None:
                    break
                residual, estimate, recon = self._residual(coefficients, base, step)
                trial = ChannelCode(self.channel, san, residual)
                coded = self._payload(trial, start, x.size, codebook, estimate)
                if len(coded) <= allowed:
                    code, reconstruction, payload = trial, recon, coded
                    break
                spare -= 8 * (len(coded) - allowed) + SAFETY_BITS
        missed = ""
        if len(payload) > allowed:
            missed = (f"bit budget {self.plan.max_bits_per_sample:g} b/s cannot be met: "
                      f"{len(payload)} payload bytes with no residual, {allowed} allowed")  # fmt: skip
        return CodedChannel(index, start, code, payload, x, reconstruction, missed)
