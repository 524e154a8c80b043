"""The probability tables of a codebook: learned in training, shipped in the bundle and the header.

Residual coefficients are coded band by band, coarsest first, each under the row of its band
class and context at the channel's row step (its residual step moved by its row shift, rows of
the step classes around it interpolated: `CodingTables.step_row`). The band class of the approximation is 0 and of detail level j (1 = finest) is
j. Each band is coded in two passes: its even-indexed coefficients, then its odd-indexed ones. An
even coefficient's context comes from already decoded coefficients at its place one level coarser
(`contexts`; the approximation's are all 0), so a whole pass's contexts are known before it is
decoded; an odd coefficient's context is its parent context moved by its two even neighbours in
the same band, decoded in the first pass (`odd_contexts`). Every other
value of a channel code (steps, offset, spike counts, positions and levels, escapes) is an
integer under one of the named class tables (`FIELDS`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from sancodec.entropy import CLASSES, ClassTable, SymbolRow, row_costs
from sancodec.errors import CorruptCodeError, InvalidInputError
from sancodec.v1 import codes_pb2

__all__ = [
    "CONTEXTS",
    "FIELDS",
    "STEP_CLASSES",
    "CodingTables",
    "band_class",
    "context_class",
    "contexts",
    "odd_contexts",
]

CONTEXTS = 5
# a residual step's class: its octave relative to the tables' reference, -4..+3 octaves
STEP_CLASSES = 8
# parent magnitude m (2|p| + |p_left| + |p_right|, in steps) -> context: 0 | 1-2 | 3-5 | 6-11 | 12+
_BOUNDS = np.array([1, 3, 6, 12])
FIELDS = (
    "layers",  # 1 when the channel has a residual layer
    "offset",  # zigzag(offset level), in SAN steps
    "san_step",  # zigzag(SAN step exp - the tables' reference)
    "residual_step",  # zigzag(residual step exp - the tables' reference)
    "row_shift",  # zigzag(s), s in -1..1: the residual's rows are those of step exp + 4 s
    "spike_count",  # spikes of each kernel
    "spike_first",  # a kernel's first spike, from the block's first sample
    "spike_interval",  # its second spike, from its first
    "spike_interval_delta",  # zigzag(each later interval - the interval before it)
    "spike_level",  # zigzag(its first level)
    "spike_level_delta",  # zigzag(each later level - the level before it)
    "escape",  # |v| - K - 1 (K = entropy.MAGNITUDES) of a residual coefficient beyond the rows' symbols
)
MAX_BAND_CLASSES = 17
MAX_ROWS = STEP_CLASSES * MAX_BAND_CLASSES * CONTEXTS
# a fallback class table: small values likelier, every class possible
_FALLBACK = ClassTable(0, tuple(max(1, 40 - 2 * c) for c in range(CLASSES)))
_FALLBACK_ROW = SymbolRow(45875, 32768)  # P(0) = 0.7, decay 0.5


_CLASS = np.searchsorted(_BOUNDS, np.arange(_BOUNDS[-1] + 1), side="right")


def context_class(magnitude: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """A magnitude's class by the parent bounds (0 | 1-2 | 3-5 | 6-11 | 12+): a table lookup."""
    return np.asarray(_CLASS[np.minimum(magnitude, _BOUNDS[-1])], dtype=np.int64)


def contexts(
    parent: npt.NDArray[np.int64], size: int, parent_is_approximation: bool
) -> npt.NDArray[np.int64]:
    """Context of each of `size` detail coefficients from the levels of the band one coarser."""
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    if parent.size == 0:
        return np.zeros(size, dtype=np.int64)
    if parent_is_approximation:  # the local slope of the approximation predicts detail
        padded = np.concatenate([parent[:1], parent, parent[-1:]])
        magnitude = np.abs(padded[2:] - padded[:-2])
    else:
        a = np.abs(parent)
        padded = np.concatenate([a[:1], a, a[-1:]])
        magnitude = 2 * a + padded[:-2] + padded[2:]
    index = np.minimum(np.arange(size) * parent.size // size, parent.size - 1)
    return context_class(magnitude[index])


def odd_contexts(evens: npt.NDArray[np.int64], parent_contexts: npt.NDArray[np.int64] | None,
                 size: int) -> npt.NDArray[np.int64]:  # fmt: skip
    """Contexts of a band's `size` odd-indexed coefficients from its even-indexed levels.

    Odd coefficient j lies between evens j and j + 1 (the last even twice at the band's end);
    n = |even j| + |even j+1|. In the approximation (`parent_contexts` None) the context is n's
    class by the parent bounds (0 | 1-2 | 3-5 | 6-11 | 12+); in a detail band it is the odd
    coefficient's own parent context, one lower when n is 0 and one higher when n is 3 or more.
    """
    if size == 0:
        return np.zeros(0, dtype=np.int64)
    a = np.abs(evens)
    n = (a + np.concatenate([a[1:], a[-1:]]))[:size]
    if parent_contexts is None:
        return context_class(n)
    c = np.asarray(parent_contexts, dtype=np.int64)
    return np.where(
        n == 0, np.maximum(c - 1, 0), np.where(n >= 3, np.minimum(c + 1, CONTEXTS - 1), c)
    )


def band_class(i: int, band_count: int) -> int:
    """The table class of band i of a residual's `band_count` bands, coarsest first: the
    approximation is 0, detail level j (1 the finest) is j."""
    return 0 if i == 0 else band_count - i


@lru_cache(maxsize=65536)
def _mix(a: SymbolRow, b: SymbolRow, w: int) -> SymbolRow:
    return SymbolRow(
        (a.zero * (8 - w) + b.zero * w + 4) // 8, (a.decay * (8 - w) + b.decay * w + 4) // 8
    )


@dataclass(frozen=True, eq=False)
class CodingTables:
    """rows[step class][band class][context] for residual coefficients (each step class holds the
    same number of band classes); a ClassTable for each of FIELDS."""

    san_step_exp: int = 0
    residual_step_exp: int = 0
    rows: tuple[tuple[tuple[SymbolRow, ...], ...], ...] = ()
    fields: Mapping[str, ClassTable] = field(default_factory=dict)
    # (row step, band class) -> the rows by context: the blending is done once per pair
    _step_rows: dict[tuple[int, int], tuple[SymbolRow, ...]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )
    # (row step, band count) -> band_costs
    _costs: dict[tuple[int, int], npt.NDArray[np.float64]] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        if self.rows and len(self.rows) != STEP_CLASSES:
            raise InvalidInputError(f"residual rows need {STEP_CLASSES} step classes")
        bands = {len(s) for s in self.rows}
        if len(bands) > 1 or max(bands, default=0) > MAX_BAND_CLASSES:
            raise InvalidInputError(f"every step class needs the same 1..{MAX_BAND_CLASSES} bands")
        if any(len(r) != CONTEXTS for s in self.rows for r in s):
            raise InvalidInputError(f"every band needs {CONTEXTS} context rows")
        unknown = set(self.fields) - set(FIELDS)
        if unknown:
            raise InvalidInputError(f"unknown table fields {sorted(unknown)}")
        object.__setattr__(self, "rows", tuple(tuple(tuple(r) for r in s) for s in self.rows))
        object.__setattr__(self, "fields", MappingProxyType(dict(self.fields)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CodingTables):
            return NotImplemented
        return (self.san_step_exp, self.residual_step_exp, self.rows, dict(self.fields)) == (
            other.san_step_exp, other.residual_step_exp, other.rows, dict(other.fields)
        )  # fmt: skip

    __hash__ = None  # type: ignore[assignment]

    def table(self, name: str) -> ClassTable:
        return self.fields.get(name, _FALLBACK)

    @property
    def band_classes(self) -> int:
        return len(self.rows[0]) if self.rows else 0

    def step_class(self, step_exp: int) -> int:
        return min(max((step_exp - self.residual_step_exp + 32) // 8, 0), STEP_CLASSES - 1)

    def step_rows(self, step_exp: int, band_class: int) -> tuple[SymbolRow, ...]:
        """step_row of every context."""
        key = (step_exp, band_class)
        if key not in self._step_rows:
            rows = tuple(self.step_row(step_exp, band_class, c) for c in range(CONTEXTS))
            self._step_rows[key] = rows
        return self._step_rows[key]

    def band_costs(self, step_exp: int, band_count: int) -> npt.NDArray[np.float64]:
        """Ideal bits of every symbol of every row of a residual's `band_count` bands at
        `step_exp`, (bands, CONTEXTS, symbols): the bands coarsest first (the approximation,
        class 0, then detail levels band_count - 1 down to 1): the rate estimates' table."""
        key = (step_exp, band_count)
        if key not in self._costs:
            self._costs[key] = np.stack([
                np.stack([row_costs(r) for r in self.step_rows(step_exp, band_class(i, band_count))])
                for i in range(band_count)
            ])  # fmt: skip
        return self._costs[key]

    def step_row(self, step_exp: int, band_class: int, context: int) -> SymbolRow:
        """The row a residual at `step_exp` codes with: step class c's row stands for the middle
        of its octave, d = step_exp - residual_step_exp + 28 = 8c + w (0 <= w < 8), and the row is
        rows c and c + 1 interpolated, zero = (zero_c (8 - w) + zero_c+1 w + 4) // 8 and decay
        alike (integers); below class 0's middle and above the last class's, that class's row."""
        if band_class >= self.band_classes:
            return _FALLBACK_ROW
        d = step_exp - self.residual_step_exp + 28
        c, w = d // 8, d % 8
        if c < 0 or c >= STEP_CLASSES - 1:
            return self.rows[min(max(c, 0), STEP_CLASSES - 1)][band_class][context]
        return _mix(self.rows[c][band_class][context], self.rows[c + 1][band_class][context], w)

    def to_proto(self) -> codes_pb2.CodingTables:
        rows = [r for s in self.rows for band in s for r in band]
        pairs = np.array([[r.zero, r.decay] for r in rows], dtype="<u2").reshape(-1, 2)
        return codes_pb2.CodingTables(
            san_step_exp=self.san_step_exp,
            residual_step_exp=self.residual_step_exp,
            band_classes=self.band_classes,
            rows=pairs.tobytes(),
            fields=[
                codes_pb2.FieldTable(name=n, first=t.first, weights=bytes(t.weights))
                for n, t in self.fields.items()
            ],
        )

    @classmethod
    def from_proto(cls, m: codes_pb2.CodingTables) -> CodingTables:
        per_class = CONTEXTS * m.band_classes
        if m.band_classes > MAX_BAND_CLASSES or len(m.rows) != 4 * STEP_CLASSES * per_class:
            raise CorruptCodeError(
                f"coding tables: {len(m.rows)} row bytes for {m.band_classes} band classes"
            )
        pairs = np.frombuffer(m.rows, dtype="<u2").reshape(-1, 2)
        try:
            flat = [SymbolRow(int(z), int(d)) for z, d in pairs]
            fields = {f.name: ClassTable(f.first, tuple(f.weights)) for f in m.fields}
            rows = tuple(
                tuple(tuple(flat[i + j : i + j + CONTEXTS]) for j in range(0, per_class, CONTEXTS))
                for i in range(0, len(flat), max(per_class, 1))
            )
            return cls(m.san_step_exp, m.residual_step_exp, rows if m.band_classes else (), fields)
        except InvalidInputError as exc:
            raise CorruptCodeError(f"coding tables: {exc}") from None

    def to_dict(self) -> dict[str, Any]:
        return {
            "san_step_exp": self.san_step_exp,
            "residual_step_exp": self.residual_step_exp,
            "rows": [[[[r.zero, r.decay] for r in band] for band in s] for s in self.rows],
            "fields": {
                n: {"first": t.first, "weights": list(t.weights)} for n, t in self.fields.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> CodingTables:
        return cls(
            int(data["san_step_exp"]),
            int(data["residual_step_exp"]),
            tuple(
                tuple(tuple(SymbolRow(int(z), int(d)) for z, d in band) for band in s)
                for s in data["rows"]
            ),
            {
                n: ClassTable(int(t["first"]), tuple(t["weights"]))
                for n, t in data["fields"].items()
            },
        )
