"""Learn a codebook's probability tables from training recordings, as kernels are learned.

The training recordings are coded through the stream coder (the detector the bundle will ship,
the bundle's blocks) at residual steps spanning the codec's operating range; every value the
coder writes is counted under its field or its band and context (`payload.encode_channel`'s
`seen`), and each table is fitted to its counts: a class table's half-bit weights from its
smoothed class frequencies, a row's zero probability and geometric decay by maximum likelihood.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sancodec.codebook import Codebook
from sancodec.entropy import CLASSES, MAGNITUDES, ClassTable, SymbolRow, bit_lengths, zigzag
from sancodec.payload import encode_channel
from sancodec.plan import CodingPlan
from sancodec.ratecontrol import STEP_SEARCH
from sancodec.residual import band_sizes
from sancodec.tables import CONTEXTS, FIELDS, STEP_CLASSES, CodingTables
from training.codec_eval import Detector, code_signal, memoized

__all__ = ["STEP_OFFSETS", "fit_tables", "learn_tables"]

log = logging.getLogger(__name__)

Ints = npt.NDArray[np.int64]
# residual steps the tables learn from, in 1/8 octaves around the bundle's own: every step class
STEP_OFFSETS = tuple(range(-30, 32, 4))
SMOOTHING = 0.05  # counts added to every class
FLOOR_LOG2 = -20.0  # the half-bit weights count up from a probability of 2^-20
MARGIN = 2  # classes kept beyond those seen
# the training sweep covers the step classes, the rate control a wider span (STEP_SEARCH): its
# steps keep this share of the residual step's table, so a step beyond the sweep costs bits, not 20
PRIOR_SHARE = 0.1


def _class_table(values: Ints, prior: Ints | None = None) -> ClassTable:
    """Smoothed class frequencies; with `prior`, values every one of which stays likely: they
    take PRIOR_SHARE of the mass, spread evenly over them."""
    counts = np.bincount(bit_lengths(values), minlength=CLASSES)[:CLASSES].astype(np.float64)
    if prior is not None and prior.size and values.size:
        spread = np.bincount(bit_lengths(prior), minlength=CLASSES)[:CLASSES].astype(np.float64)
        counts = counts + spread * (PRIOR_SHARE / (1.0 - PRIOR_SHARE)) * values.size / prior.size
    seen = np.flatnonzero(counts)
    if seen.size == 0:
        return ClassTable(0, (1,))
    first, last = max(int(seen[0]) - MARGIN, 0), min(int(seen[-1]) + MARGIN, CLASSES - 1)
    p = (counts + SMOOTHING) / (counts.sum() + SMOOTHING * CLASSES)
    weights = np.clip(np.rint(2 * (np.log2(p) - FLOOR_LOG2)), 0, 63).astype(int)
    return ClassTable(first, tuple(int(w) for w in weights[first : last + 1]))


def _row(magnitudes: Ints) -> SymbolRow:
    """Maximum likelihood P(0) and decay of |v| >= 1 (escapes counted at K + 1)."""
    n = magnitudes.size
    zeros = int(np.sum(magnitudes == 0))
    p0 = (zeros + 0.5) / (n + 1.0)
    nonzero = np.minimum(magnitudes[magnitudes > 0], MAGNITUDES + 1)
    mean = float(nonzero.mean()) if nonzero.size else 1.0
    decay = (mean - 1.0 + 0.25) / (mean + 0.25)  # geometric on 1, 2, ...: r = (m - 1) / m
    return SymbolRow(int(np.clip(round(p0 * 65536), 1, 65535)),
                     int(np.clip(round(decay * 65536), 1, 65535)))  # fmt: skip


def fit_tables(seen: dict[str, list[Ints]], band_classes: int, san_step_exp: int,
               residual_step_exp: int) -> CodingTables:  # fmt: skip
    """Tables fitted to collected values (encode_channel's `seen`)."""
    empty = np.zeros(0, dtype=np.int64)

    def values(name: str) -> Ints:
        return np.concatenate([empty, *seen.get(name, [])])

    steps = zigzag(np.arange(-STEP_SEARCH, STEP_SEARCH + 1))
    fields = {
        name: _class_table(values(name), steps if name == "residual_step" else None)
        for name in FIELDS
        if name in seen
    }
    rows = (
        tuple(
            tuple(
                tuple(_row(values(f"band {s} {b} {c}")) for c in range(CONTEXTS))
                for b in range(band_classes)
            )
            for s in range(STEP_CLASSES)
        )
        if band_classes
        else ()
    )
    return CodingTables(san_step_exp, residual_step_exp, rows, fields)


def _collect(plan: CodingPlan, signal: npt.NDArray[np.float64], detect: Detector,
             seen: dict[str, list[Ints]]) -> None:  # fmt: skip
    spec, kernels = plan.codebook.residual, len(plan.codebook.kernels)
    for block in code_signal(plan, signal, detect):
        sizes = band_sizes(spec, block.signal.size) if spec is not None else ()
        encode_channel(block.code, plan.codebook.tables, kernels, block.start, sizes, seen)


def learn_tables(
    plan: CodingPlan, signals: Sequence[npt.NDArray[np.float64]], detect: Detector
) -> Codebook:
    """The plan's codebook with tables learned on physical `signals` (training recordings)."""
    residual = plan.codebook.residual
    reference = plan.residual_step_exp if plan.residual_step_exp is not None else 0
    band_classes = residual.level + 1 if residual is not None else 0
    offsets = STEP_OFFSETS if plan.residual_step_exp is not None else (0,)
    detectors = [memoized(detect) for _ in signals]  # detection does not depend on the step

    def sweep(codebook: Codebook) -> dict[str, list[Ints]]:
        seen: dict[str, list[Ints]] = {}
        for offset in offsets:
            step = None if plan.residual_step_exp is None else reference + offset
            trial = dataclasses.replace(plan, codebook=codebook, residual_step_exp=step)
            for signal, detector in zip(signals, detectors, strict=True):
                _collect(trial, signal, detector, seen)
        return seen

    tables = fit_tables(sweep(plan.codebook), band_classes, plan.san_step_exp, reference)
    if band_classes:
        # the encoder's levels and row shifts depend on the rows it codes with (rate-distortion
        # quantization): a second sweep under the first fit, and the tables fitted again to it
        c = plan.codebook
        tables = fit_tables(sweep(Codebook(c.kernels, c.decoder_mode, c.residual, tables)),
                            band_classes, plan.san_step_exp, reference)  # fmt: skip
    bits = sum(len(t.weights) for t in tables.fields.values())
    log.info("learned tables: %d band classes, %d field classes, from %d samples x %d steps",
             band_classes, bits, sum(s.size for s in signals), len(offsets))  # fmt: skip
    c = plan.codebook
    return Codebook(c.kernels, c.decoder_mode, c.residual, tables)
