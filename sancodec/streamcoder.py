"""Stream coding: re-block a channel into the model's blocks, and turn detected spikes into codes.

The detector (the encoder ONNX on the server, PyTorch offline) is injected: `ChannelCoder.push`
returns `Window`s (a block with context on both sides), the caller detects spikes in them, as one
batch across many streams if it likes, and hands them back with `accept`. Block b is final once the
spikes of block b+1 are known, because they paint back into b's tail. So a block's code comes one
block later, and its residual covers exactly what the decoder will paint. Codes depend only on the
samples, never on how they arrived. A `StreamCoder` runs every channel of a stream and hands out
blocks final on all of them: the one coding path of the server, the CLI, training and the benchmarks.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sancodec.beatlock import beat_spikes
from sancodec.blockcoder import BlockCoder
from sancodec.codes import BlockCode, SanLayer
from sancodec.errors import InvalidInputError, ProtocolError
from sancodec.payload import block_message
from sancodec.plan import CodedChannel, CodingPlan, Spikes, Window
from sancodec.quantization import Quantizer
from sancodec.ratecontrol import Steering
from sancodec.v1 import codes_pb2

__all__ = [
    "ChannelCoder",
    "CodedBlock",
    "CodedChannel",
    "CodingPlan",
    "Spikes",
    "StreamCoder",
    "Window",
    "code_stream",
]

Samples = npt.NDArray[np.float64]


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
        x = self._x[window.start - self._x_start : window.start + window.count - self._x_start]
        if layer.spike_count and not self._blocks.spikes_pay(x, layer, window.start):
            layer = layer.without_spikes()
        self._layers[window.index] = layer
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
        keep_from = max(
            min(self._next_final * n, self._next_window * n - self.plan.context), self._x_start
        )
        self._x = self._x[keep_from - self._x_start :]
        self._x_start = keep_from


@dataclass(frozen=True, eq=False)
class CodedBlock:
    """A block final on every channel of its stream: each channel's part, in channel order."""

    parts: tuple[CodedChannel, ...]

    @property
    def start(self) -> int:
        return self.parts[0].start

    @property
    def sample_count(self) -> int:
        return int(self.parts[0].signal.size)

    def code(self) -> BlockCode:
        return BlockCode(self.start, self.sample_count, tuple(p.code for p in self.parts))

    def message(self) -> codes_pb2.EncodedBlock:
        """The block's EncodedBlock from the payloads coded already: its real bytes."""
        return block_message(
            self.start, self.sample_count, [(p.code.channel, p.payload) for p in self.parts]
        )


class StreamCoder:
    """Every channel of a stream through its own ChannelCoder (under its own plan); a block comes
    out once it is final on every channel. Detection stays the caller's, so that it can batch it
    across streams: `push` and `finish` give each channel's windows, `to_detect` the ones a
    detector must see (not those of a plan that places its spikes at the beats), and `accept`
    takes their spikes in that order. The server, the CLI, training and the benchmarks all code
    through it (`code_stream` for a whole recording at once)."""

    def __init__(self, plans: Sequence[CodingPlan]) -> None:
        if not plans:
            raise InvalidInputError("a stream has at least one channel")
        self.plans = tuple(plans)
        self.coders = [ChannelCoder(plan, c) for c, plan in enumerate(self.plans)]
        self._final: dict[int, dict[int, CodedChannel]] = {}  # block: channel: its part

    def push(self, samples: npt.ArrayLike) -> list[list[Window]]:
        """Add (channels, n) physical samples; each channel's windows that now have their right
        context."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(self.coders):
            raise InvalidInputError(
                f"samples must be (channels, n) with {len(self.coders)} channels, got {x.shape}"
            )
        return [coder.push(row) for coder, row in zip(self.coders, x, strict=True)]

    def finish(self) -> list[list[Window]]:
        """The stream ended: each channel's remaining windows. Accept them, then `ready()`."""
        return [coder.finish() for coder in self.coders]

    def to_detect(self, windows: list[list[Window]]) -> list[Window]:
        """The windows whose spikes a detector must find, in the order `accept` takes them."""
        return [w for plan, ws in zip(self.plans, windows, strict=True) if plan.detects for w in ws]

    def accept(self, windows: list[list[Window]], spikes: Sequence[Spikes]) -> list[CodedBlock]:
        """Take the spikes of `to_detect(windows)`; returns the blocks now final on every channel."""
        found = iter(spikes)
        for c, (coder, ws) in enumerate(zip(self.coders, windows, strict=True)):
            detects = self.plans[c].detects
            for window in ws:
                self._collect(c, coder.accept(window, next(found, None) if detects else None))
        if next(found, None) is not None:
            raise ProtocolError("more spikes than windows to detect")
        return self._complete()

    def ready(self) -> list[CodedBlock]:
        """Blocks that can be final now; after `finish` and the last `accept`, all the rest."""
        for c, coder in enumerate(self.coders):
            self._collect(c, coder.ready())
        return self._complete()

    @property
    def done(self) -> bool:
        """Every block of an ended stream is final on every channel."""
        return all(coder.done for coder in self.coders) and not self._final

    def _collect(self, channel: int, coded: list[CodedChannel]) -> None:
        for part in coded:
            self._final.setdefault(part.index, {})[channel] = part

    def _complete(self) -> list[CodedBlock]:
        out = []
        for index in sorted(
            i for i, parts in self._final.items() if len(parts) == len(self.coders)
        ):
            parts = self._final.pop(index)
            out.append(CodedBlock(tuple(parts[c] for c in range(len(self.coders)))))
        return out


def code_stream(
    coder: StreamCoder, x: npt.ArrayLike, detect: Callable[[Window], Spikes]
) -> list[CodedBlock]:
    """A whole (channels, n) recording through a fresh StreamCoder, as a server would stream it
    (chunking does not matter), one window at a time through `detect`."""
    windows = [a + b for a, b in zip(coder.push(x), coder.finish(), strict=True)]
    blocks = coder.accept(windows, [detect(w) for w in coder.to_detect(windows)])
    return blocks + coder.ready()
