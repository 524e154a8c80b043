"""The probability tables of a codebook: learned in training, shipped in the bundle and the header.

Residual coefficients are coded band by band, coarsest first, each under the row of its band
class and context at the channel's row step (its residual step moved by its row shift, rows of
the step classes around it interpolated: `CodingTables.step_row`). The band class of the approximation is 0 and of detail level j (1 = finest) is
j. Each band is coded in two passes: its even-indexed coefficients, then its odd-indexed ones. An
even coefficient's context comes from already decoded coefficients at its place one level coarser
(`bandcontexts.band_contexts`; the approximation's are all 0), so a whole pass's contexts are known
before it is decoded; an odd coefficient's context is its parent context moved by its two even
neighbours in the same band, decoded in the first pass (`bandcontexts.odd_contexts`). Every other
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
]

CONTEXTS = 5
# a residual step's class: its octave relative to the tables' reference, -4..+3 octaves
STEP_CLASSES = 8
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
