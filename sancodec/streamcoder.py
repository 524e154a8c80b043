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

from sancodec.channelcoder import ChannelCoder
from sancodec.codebook import Codebook
from sancodec.codes import BlockCode
from sancodec.errors import InvalidConfigError, InvalidInputError, ProtocolError
from sancodec.payload import block_message
from sancodec.plan import CodedChannel, CodingPlan, Spikes, Window
from sancodec.v1 import codes_pb2

__all__ = [
    "CodedBlock",
    "CodedChannel",
    "CodingPlan",
    "FitRequest",
    "Spikes",
    "StreamCoder",
    "Window",
    "code_stream",
]

Samples = npt.NDArray[np.float64]
MAX_CHECK_INTERVAL = 16  # checks that keep the kernels come ever rarer, at most this many
# windows of samples apart


@dataclass(frozen=True, eq=False)
class CodedBlock:
    """A block final on every channel of its stream: each channel's part, in channel order, and
    the codebook update it carries (the stream's kernels from this block on), if any."""

    parts: tuple[CodedChannel, ...]
    kernels: tuple[npt.NDArray[np.float32], ...] = ()

    @property
    def start(self) -> int:
        return self.parts[0].start

    @property
    def sample_count(self) -> int:
        return int(self.parts[0].signal.size)

    def code(self) -> BlockCode:
        return BlockCode(self.start, self.sample_count, tuple(p.code for p in self.parts),
                         kernels=self.kernels)  # fmt: skip

    def message(self) -> codes_pb2.EncodedBlock:
        """The block's EncodedBlock from the payloads coded already: its real bytes."""
        return block_message(
            self.start,
            self.sample_count,
            [(p.code.channel, p.payload) for p in self.parts],
            self.kernels,
        )


@dataclass(frozen=True, eq=False)
class FitRequest:
    """A stream's kernels are due for a check (`StreamCoder.fit_due`): the `samples` before block
    `block`, model domain, (channels, n); an update answered for it holds from `block` on."""

    block: int
    codebook: Codebook  # the stream's now
    generation: int  # of that codebook
    samples: Samples


class StreamCoder:
    """Every channel of a stream through its own ChannelCoder (under its own plan); a block comes
    out once it is final on every channel. Detection stays the caller's, so that it can batch it
    across streams: `push` and `finish` give each channel's windows, `to_detect` the ones a
    detector must see (not those of a plan that places its spikes at the beats), and `accept`
    takes their spikes in that order. The server, the CLI, training and the benchmarks all code
    through it (`code_stream` for a whole recording at once).

    With `adapt_after` (samples per channel, whole blocks) the stream fits its own kernels
    (sancodec.kernelupdates): once it holds that many samples, and again at checkpoints after,
    `fit_due` asks the caller to check the kernels on the last `adapt_after` samples, and no
    window of a later block is handed out until `update` answers (new kernels, or None). Where
    the checks fall depends on sample positions only, so codes never depend on chunking. The
    block where new kernels start carries them (`CodedBlock.kernels`)."""

    def __init__(self, plans: Sequence[CodingPlan], adapt_after: int = 0) -> None:
        if not plans:
            raise InvalidInputError("a stream has at least one channel")
        self.plans = tuple(plans)
        self.coders = [ChannelCoder(plan, c) for c, plan in enumerate(self.plans)]
        self._final: dict[int, dict[int, CodedChannel]] = {}  # block: channel: its part
        n = self.plans[0].block_length
        if adapt_after < 0 or adapt_after % n:
            raise InvalidConfigError(
                f"kernels adapt after whole blocks of {n} samples, not after {adapt_after}"
            )
        if adapt_after and not all(p.detects and p.residual_step_exp is not None for p in plans):
            raise InvalidConfigError("kernels adapt only where a detector finds the spikes and a "
                                     "residual layer codes what they miss")  # fmt: skip
        if adapt_after and any(p.max_bits_per_sample is not None for p in plans):
            raise InvalidConfigError("kernels do not adapt under a bit budget: an update's bytes "
                                     "would not fit the block that carries it")  # fmt: skip
        self._window_blocks = adapt_after // n  # the samples a check looks at, in blocks
        self._interval = self._window_blocks  # blocks to the next check
        self._checkpoint: int | None = None  # the block the next check holds windows at
        self._request: FitRequest | None = None  # made, not yet answered
        self._given = False
        self._updates: dict[int, tuple[npt.NDArray[np.float32], ...]] = {}  # block: its kernels
        if adapt_after:
            self._hold(self._window_blocks)

    def _hold(self, checkpoint: int | None) -> None:
        self._checkpoint = checkpoint
        n = self.plans[0].block_length
        for coder in self.coders:
            coder.hold = checkpoint
            coder.retain_from = (
                None if checkpoint is None else (checkpoint - self._window_blocks) * n
            )

    def push(self, samples: npt.ArrayLike) -> list[list[Window]]:
        """Add (channels, n) physical samples; each channel's windows that now have their right
        context."""
        x = np.asarray(samples, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] != len(self.coders):
            raise InvalidInputError(
                f"samples must be (channels, n) with {len(self.coders)} channels, got {x.shape}"
            )
        out = [coder.push(row) for coder, row in zip(self.coders, x, strict=True)]
        self._check_due()
        return out

    def finish(self) -> list[list[Window]]:
        """The stream ended: each channel's remaining windows (up to a check still due). Accept
        them, answer any `fit_due`, then `ready()`."""
        out = [coder.finish() for coder in self.coders]
        self._check_due()
        return [ws + coder.windows() for ws, coder in zip(out, self.coders, strict=True)]

    def _check_due(self) -> None:
        c = self._checkpoint
        if c is None or self._request is not None:
            return
        n, first = self.plans[0].block_length, self.coders[0]
        if first.received > c * n:  # block c has a sample: it will be coded, with what comes
            lo = (c - self._window_blocks) * n
            x = np.stack([coder.samples(lo, c * n) for coder in self.coders])
            g = first.generation(c)
            self._request = FitRequest(c, first.codebooks[g][1], g, x)
        elif first.ended:  # the stream ended before block c: no more checks
            self._hold(None)

    def fit_due(self) -> FitRequest | None:
        """A check of the kernels that `update` must answer before later windows come; each
        request is given once."""
        if self._request is None or self._given:
            return None
        self._given = True
        return self._request

    def update(
        self, kernels: Sequence[npt.NDArray[np.float32]] | None
    ) -> list[list[Window]]:  # fmt: skip
        """Answer the check due: new kernels from its block on, or None (keep them). Returns the
        windows this lets out."""
        request = self._request
        if request is None or not self._given:
            raise ProtocolError("no check of the kernels is due")
        self._request, self._given = None, False
        if kernels is not None:
            codebook = request.codebook.updated(tuple(kernels))
            for coder in self.coders:
                coder.update(request.block, codebook)
            self._updates[request.block] = codebook.kernels
            self._interval = self._window_blocks
        else:
            self._interval = min(2 * self._interval, MAX_CHECK_INTERVAL * self._window_blocks)
        self._hold(request.block + self._interval)
        self._check_due()
        return [coder.windows() for coder in self.coders]

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
            out.append(CodedBlock(tuple(parts[c] for c in range(len(self.coders))),
                                  self._updates.pop(index, ())))  # fmt: skip
        return out


def code_stream(
    coder: StreamCoder,
    x: npt.ArrayLike,
    detect: Callable[[Window], Spikes],
    refit: Callable[[FitRequest], Sequence[npt.NDArray[np.float32]] | None] | None = None,
) -> list[CodedBlock]:
    """A whole (channels, n) recording through a fresh StreamCoder, as a server would stream it
    (chunking does not matter), one window at a time through `detect` (which sees each window's
    generation), each check of the kernels through `refit`."""
    windows = [a + b for a, b in zip(coder.push(x), coder.finish(), strict=True)]
    blocks: list[CodedBlock] = []
    while True:
        blocks += coder.accept(windows, [detect(w) for w in coder.to_detect(windows)])
        request = coder.fit_due()
        if request is None:
            return blocks + coder.ready()
        if refit is None:
            raise ProtocolError("this stream adapts its kernels: pass code_stream a refit")
        windows = coder.update(refit(request))
