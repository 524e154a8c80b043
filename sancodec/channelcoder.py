"""One channel of a stream: re-blocked into the model's blocks, its windows handed out for
detection, its spikes taken back, and each block coded once it is final (sancodec.streamcoder
runs one per channel: how a stream is coded is explained there)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from sancodec.beatlock import beat_spikes
from sancodec.blockcoder import BlockCoder, Layer
from sancodec.codebook import Codebook
from sancodec.codes import SanLayer
from sancodec.errors import InvalidInputError, ProtocolError
from sancodec.plan import CodedChannel, CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer
from sancodec.ratecontrol import Steering

__all__ = ["ChannelCoder"]

Samples = npt.NDArray[np.float64]


class _Samples:
    """A channel's samples from sample `start` on: appended in place (amortized: a chunk costs
    its own length, not the buffer's), dropped from the front. Stored samples are never written
    again (a coded block keeps a view of its samples); a full buffer moves to a new one."""

    def __init__(self) -> None:
        self._buf, self._head, self._tail, self.start = np.zeros(0), 0, 0, 0

    def append(self, x: Samples) -> None:
        if self._tail + x.size > self._buf.size:
            live = self._tail - self._head
            grown = np.empty(max(2 * (live + x.size), 1024))
            grown[:live] = self._buf[self._head : self._tail]
            self._buf, self._head, self._tail = grown, 0, live
        self._buf[self._tail : self._tail + x.size] = x
        self._tail += x.size

    def between(self, lo: int, hi: int) -> Samples:
        """Samples lo..hi-1 (absolute; lo still held), up to the last one received."""
        if lo < self.start:
            raise ProtocolError(f"sample {lo} is no longer held (from {self.start} on)")
        return self._buf[
            self._head + lo - self.start : min(self._head + hi - self.start, self._tail)
        ]

    @property
    def end(self) -> int:
        """One past the last sample received."""
        return self.start + self._tail - self._head

    def drop_before(self, sample: int) -> None:
        """Forget samples before `sample` (at most all of them)."""
        drop = min(max(sample - self.start, 0), self._tail - self._head)
        self._head += drop
        self.start += drop


class ChannelCoder:
    def __init__(self, plan: CodingPlan, channel: int = 0) -> None:
        self.plan = plan
        self.channel = channel
        self._samples = _Samples()  # model-domain samples
        self._ended = False
        self._next_window = 0  # index of the next block to hand out
        self.hold: int | None = None  # no window of this block or later is handed out yet
        self.retain_from: int | None = None  # samples from here on are kept (a fit will need them)
        # generation: (block it holds from, codebook); 0 the plan's, then each update's
        self.codebooks: dict[int, tuple[int, Codebook]] = {0: (0, plan.codebook)}
        self._layers: dict[int, Layer] = {}  # accepted, not yet final
        self._next_final = 0
        self._accepted = 0  # index of the next block whose spikes we expect
        self._san = Quantizer(plan.san_step_exp)
        self._blocks = BlockCoder(plan, channel)
        self._steering = None
        if plan.stream_prdn_percent is not None and plan.residual_step_exp is not None:
            self._steering = Steering(plan.stream_prdn_percent, plan.residual_step_exp)

    def push(self, samples: npt.ArrayLike) -> list[Window]:
        """Add physical samples; returns the windows that now have their right context."""
        if self._ended:
            raise ProtocolError("samples after the end of the stream")
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 1 or not np.all(np.isfinite(x)):
            raise InvalidInputError("samples must be a 1-D array of finite values")
        self._samples.append(x / self.plan.scale)
        return self.windows()

    def finish(self) -> list[Window]:
        """The stream ended: windows for the remaining (last, maybe short) blocks. Accept them,
        then `ready()` gives every block still open."""
        self._ended = True
        return self.windows()

    def generation(self, index: int) -> int:
        """Which codebook block `index` is coded with: 0 the plan's, k the k-th update's."""
        return max(g for g, (first, _) in self.codebooks.items() if first <= index)

    def update(self, first: int, codebook: Codebook) -> None:
        """Code block `first` and later ones with this codebook: the next generation."""
        latest = max(self.codebooks)
        self.codebooks[latest + 1] = (first, codebook)
        for g in [g for g in self.codebooks if g + 1 in self.codebooks]:
            if self.codebooks[g + 1][0] <= self._accepted:  # no window in flight names g
                del self.codebooks[g]

    def windows(self) -> list[Window]:
        """The windows that have their right context and are not held."""
        out: list[Window] = []
        n, ctx = self.plan.block_length, self.plan.context
        while True:
            start = self._next_window * n
            if start >= self.received or (not self._ended and start + n + ctx > self.received):
                return out
            if self.hold is not None and self._next_window >= self.hold:
                return out
            count = min(n, self.received - start)
            lo, hi = max(start - ctx, 0), min(start + count + ctx, self.received)
            part = self._samples.between(lo, hi)
            out.append(Window(self._next_window, start, count, lo,
                              (part - part.mean()).astype(np.float32),
                              self.generation(self._next_window)))  # fmt: skip
            self._next_window += 1

    def accept(self, window: Window, spikes: Spikes | None) -> list[CodedChannel]:
        """Take the spikes detected in a window; returns the blocks that are now final. A plan
        whose spikes come from the beats (not `plan.detects`) places them itself: pass
        None, and detect nothing."""
        if window.index != self._accepted:
            raise ProtocolError(
                f"spikes for block {window.index} arrived, expected block {self._accepted}"
            )
        if (spikes is None) == self.plan.detects:
            raise ProtocolError(
                "spikes come from the beats for this plan, not from a detector"
                if spikes is not None
                else "spikes are missing: this plan's come from a detector"
            )
        if spikes is None:
            spikes = beat_spikes(self.plan, window)
        self._accepted += 1
        positions = spikes.positions + window.offset
        mine = (positions >= window.start) & (positions < window.start + window.count)
        layer = SanLayer.from_spikes(
            spikes.kernel_ids[mine], positions[mine], spikes.amplitudes[mine], self._san
        )
        x = self._samples.between(window.start, window.start + window.count)
        codebook = self.codebooks[window.generation][1]
        if layer.spike_count:
            layer, codebook = self._blocks.choose(x, (layer, codebook), window.start)
        self._layers[window.index] = (layer, codebook)
        return self.ready()

    def ready(self) -> list[CodedChannel]:
        """Blocks that can be final now; after `finish` and the last `accept`, all the rest."""
        out = []
        while self._next_final in self._layers and (
            self._next_final + 1 in self._layers
            or (self._all_out and self._next_final + 1 >= self._next_window)
        ):
            out.append(self._finalize(self._next_final))
        return out

    def samples(self, lo: int, hi: int) -> Samples:
        """Model-domain samples [lo, hi) (kept: see `retain_from`)."""
        if lo < self._samples.start or hi > self.received:
            raise ProtocolError(f"samples [{lo}, {hi}) are no longer kept")
        return self._samples.between(lo, hi)

    @property
    def received(self) -> int:
        return self._samples.end

    @property
    def ended(self) -> bool:
        return self._ended

    @property
    def _all_out(self) -> bool:
        """The stream ended and every window of it was handed out."""
        return self._ended and self._next_window * self.plan.block_length >= self.received

    @property
    def done(self) -> bool:
        """Every block of an ended stream is final."""
        return self._all_out and self._next_final == self._next_window

    def _finalize(self, index: int) -> CodedChannel:
        n = self.plan.block_length
        start = index * n
        count = min(n, self.received - start)
        x = self._samples.between(start, start + count)
        neighbours = [self._layers[b] for b in (index - 1, index + 1) if b in self._layers]
        step = self._steering.step_exp if self._steering is not None else None
        coded = self._blocks.code(index, start, x, self._layers[index], neighbours, step)
        if self._steering is not None and coded.code.residual is not None:
            self._steering.step_exp = coded.code.residual.step_exp  # the first block chose its own
            self._steering.observe(x, coded.reconstruction)
        self._layers.pop(index - 1, None)
        self._next_final += 1
        self._trim()
        return coded

    def _trim(self) -> None:
        """Drop samples that neither a later window nor a later final block needs."""
        n = self.plan.block_length
        keep_from = min(self._next_final * n, self._next_window * n - self.plan.context)
        if self.retain_from is not None:
            keep_from = min(keep_from, self.retain_from)
        self._samples.drop_before(keep_from)
