"""The SAN models' operating points for bench/rate_distortion.py: the shipped models over their
steps (real bytes, kernels charged per record and per block, H0 of the same streams), the
adaptive binary coder, the sparsity sweep, `--adapt`, and the shipped point's speed and `.sanc`
overhead. Each takes a record in physical mV."""

from __future__ import annotations

import io
import math
import time
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import numpy as np
import onnxruntime as ort

from bench.baselines import h0_bits
from sancodec.bundle import Bundle, load_bundle
from sancodec.codebook import Codebook, quantize_kernel
from sancodec.codes import BlockCode, EntropyCoder, parse_block
from sancodec.decoder import decode
from sancodec.header import ChannelInfo, StreamHeader
from sancodec.metrics import bits_per_sample, prdn
from sancodec.quantization import Quantizer
from sancodec.sancfile import PREAMBLE_BYTES, SancWriter
from sancodec.streamcoder import CodingPlan, Spikes
from training.adapt import Adapted, adapt_codebook, choose, code_both, plans_for
from training.codec_eval import Detector, code_signal, measure, onnx_detector
from training.train import TrainConfig, build_model

MITDB_HZ = 360.0

__all__ = ["adapted_sweep", "binary_sweep", "san_sweep", "thinned_sweep"]


@lru_cache(maxsize=8)
def _shipped(bundle_dir: Path) -> tuple[Bundle, Detector]:
    """A bundle and its exported encoder on ONNX Runtime (CPU), loaded once per run."""
    bundle = load_bundle(bundle_dir)
    session = ort.InferenceSession(str(bundle.encoder_path), providers=["CPUExecutionProvider"])
    return bundle, onnx_detector(session)


def _plan(bundle: Bundle, san_exp: int, residual_exp: int | None,
          coder: EntropyCoder = EntropyCoder.RICE) -> CodingPlan:  # fmt: skip
    m = bundle.manifest
    return CodingPlan(m.codebook, m.block_length, m.context, m.normalization.scale, san_exp,
                      residual_exp, residual_coder=coder)  # fmt: skip


def _code_h0_bits(coded: list[Any]) -> float:
    """H0 estimate of a SAN code: gaps, kernel ids, levels, offsets; residual gaps and levels."""
    gaps, ids, levels, offsets, r_gaps, r_levels = [], [], [], [], [], []
    for c in coded:
        san = c.code.san
        order = np.argsort(san.positions, kind="stable")
        gaps.append(np.diff(san.positions[order] - c.start, prepend=0))
        ids.append(san.kernel_ids[order])
        levels.append(san.levels[order])
        offsets.append(san.offset_level)
        if c.code.residual is not None:
            r_gaps.append(np.diff(np.asarray(c.code.residual.indices), prepend=-1))
            r_levels.append(np.asarray(c.code.residual.levels))
    streams = [np.concatenate(s) for s in (gaps, ids, levels, r_gaps, r_levels) if s]
    streams.append(np.diff(np.asarray(offsets), prepend=0))
    counts = [c.code.san.spike_count for c in coded]
    streams.append(np.asarray(counts))
    if r_gaps:
        streams.append(np.asarray([g.size for g in r_gaps]))
    return sum(h0_bits(s) for s in streams)


def binary_sweep(bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...]) -> list[dict]:
    """The shipped model with its residual layer through the adaptive binary range coder."""
    bundle, detect = _shipped(bundle_dir)
    points = []
    for step in steps:
        plan = _plan(bundle, bundle.manifest.san_step_exp, Quantizer.from_step(step).step_exp,
                     EntropyCoder.ADAPTIVE_BINARY)  # fmt: skip
        r = measure(plan, x_mv, detect)
        points.append({"step": float(step), "bps": r["bits_per_sample"], "prdn": r["prdn_percent"],
                       "prd": math.nan})  # fmt: skip
    return points


def san_sweep(bundle_dir: Path, x_mv: np.ndarray, which: str, steps: tuple[float, ...]) -> dict:
    """Operating points of one shipped model: real bytes, kernels charged per record/per block."""
    bundle, detect = _shipped(bundle_dir)
    m = bundle.manifest
    n = x_mv.size
    kernel_bits = 16 * m.codebook.weight_count
    blocks = math.ceil(n / m.block_length)
    curves: dict[str, list[dict]] = {"real": [], "per_record": [], "per_block": [], "h0": []}
    for step in steps:
        san_exp, res_exp = m.san_step_exp, m.residual_step_exp
        if which == "residual":
            res_exp = Quantizer.from_step(step).step_exp
        else:
            san_exp = Quantizer.from_step(step).step_exp
        plan = _plan(bundle, san_exp, res_exp)
        r = measure(plan, x_mv, detect)
        h0 = _code_h0_bits(code_signal(plan, x_mv, detect))
        base = {"step": float(step), "prdn": r["prdn_percent"], "prd": math.nan}
        bps = r["bits_per_sample"]
        curves["real"].append({**base, "bps": bps})
        curves["per_record"].append({**base, "bps": bps + kernel_bits / n})
        curves["per_block"].append({**base, "bps": bps + kernel_bits * blocks / n})
        curves["h0"].append({**base, "bps": h0 / n + kernel_bits / n})
    return {
        "curves": curves,
        "shipped": shipped_point(bundle_dir, x_mv),
        "kernel_bps_record": kernel_bits / n,
        "kernel_bps_block": kernel_bits * blocks / n,
    }


def shipped_point(bundle_dir: Path, x_mv: np.ndarray) -> dict[str, float]:
    """At the model's shipped steps: samples/s of encoding (detector, both layers, serialized
    block bytes) and of decoding (parse and check the bytes, reference decoder), one after the
    other on one thread; and the bits per sample of the block codes alone and of the same blocks
    in a real .sanc file (signature, header with the codebook, per-block framing and CRC, trailer)."""
    bundle, detect = _shipped(bundle_dir)
    m = bundle.manifest
    plan = _plan(bundle, m.san_step_exp, m.residual_step_exp)
    t0 = time.perf_counter()
    coded = code_signal(plan, x_mv, detect)
    blocks = [BlockCode(c.start, c.signal.size, (c.code,)) for c in coded]
    data = [b.to_bytes() for b in blocks]
    t1 = time.perf_counter()
    decoded = decode([parse_block(b) for b in data], plan.codebook, 1)
    t2 = time.perf_counter()
    assert decoded.shape == (1, x_mv.size)
    header = StreamHeader(
        bundle.ref, m.codebook,
        MITDB_HZ, m.block_length, (ChannelInfo("MLII", "mV", 0.0, m.normalization.scale),),
    )  # fmt: skip
    file = io.BytesIO()
    with SancWriter(file, header) as writer:
        for block in blocks:
            writer.write(block)
    header_bytes = PREAMBLE_BYTES + len(header.to_proto().SerializeToString(deterministic=True))
    n = x_mv.size
    return {
        "encode": n / (t1 - t0),
        "decode": n / (t2 - t1),
        "code_bps": bits_per_sample(sum(len(d) for d in data), n),
        "file_bps": bits_per_sample(len(file.getvalue()), n),
        "header_bps": bits_per_sample(header_bytes, n),
    }


def adapted_sweep(bundle_dir: Path, x_mv: np.ndarray, steps: tuple[float, ...], *,
                  which: Literal["residual", "san"] = "residual", refit: bool = True
                  ) -> dict[str, list[dict]]:  # fmt: skip
    """`sancodec encode --adapt`: the model's recipe fitted to this record (training.adapt),
    then the residual step (or, `which="san"`, the SAN step) swept, each step coded as --adapt
    codes it (packed, in --adapt's blocks, with the adapted kernels or the residual layer alone
    where they do not pay); the rate adds the codebook the .sanc header carries. Curves:
    "chosen" (what --adapt writes), "spikes" (always with the kernels) and, where the model has a
    residual layer, "alone" (the residual layer alone: the wavelet through the same coder, in the
    same blocks). With refit=False the shipped kernels stand in for fitted ones (quantized as
    --adapt quantizes its own): the same coder and blocks, kernels learned on other people."""
    if which not in ("residual", "san"):
        raise ValueError(f"which must be residual or san, got {which!r}")
    bundle, _ = _shipped(bundle_dir)
    adapted = adapt_codebook(bundle, x_mv[None, :]) if refit else _unfitted(bundle, x_mv)
    curves: dict[str, list[dict]] = {"chosen": [], "spikes": [], "alone": []}
    for step in steps:
        step_exp = Quantizer.from_step(step).step_exp
        if which == "residual":
            plans = plans_for(bundle, adapted, residual_step_exp=step_exp)
        else:
            plans = [replace(p, san_step_exp=step_exp) for p in plans_for(bundle, adapted)]
        spikes, alone = code_both(plans, x_mv[None, :], adapted)
        for name, coded in (("chosen", choose(plans[0], spikes, alone)), ("spikes", spikes),
                            ("alone", alone)):  # fmt: skip
            if coded is None:
                continue
            x_hat = coded.reconstruction(adapted.scales)[0]
            curves[name].append({"step": float(step), "bps": coded.bits / x_mv.size,
                                 "prdn": prdn(x_mv, x_hat), "prd": math.nan,
                                 "spikes": coded.with_spikes,
                                 "fit_s": adapted.seconds if refit else None})  # fmt: skip
    return curves


def _unfitted(bundle: Bundle, x_mv: np.ndarray) -> Adapted:
    """The bundle's own kernels in place of fitted ones, scaled as adapt_codebook scales."""
    m = bundle.manifest
    model = build_model(TrainConfig(**m.training["config"]))
    model.init_from([quantize_kernel(k) for k in m.codebook.kernels])
    codebook = Codebook(model.codebook().kernels, model.decoder_mode, m.codebook.residual)
    return Adapted(model.eval(), codebook, (float(np.std(x_mv)),), 0, 0.0)


def thinned_sweep(bundle_dir: Path, x_mv: np.ndarray, ratios: tuple[float, ...]) -> list[dict]:
    """Sparsity apart from the amplitude step: at the shipped steps, keep only the largest
    `ratio` of each window's spikes (by |amplitude|); ratio 0 leaves the residual layer alone."""
    bundle, detect = _shipped(bundle_dir)
    plan = _plan(bundle, bundle.manifest.san_step_exp, bundle.manifest.residual_step_exp)
    points = []
    for ratio in ratios:

        def thinned(window: Any, ratio: float = ratio) -> Spikes:
            s = detect(window)
            keep = np.argsort(-np.abs(s.amplitudes), kind="stable")[
                : round(ratio * s.amplitudes.size)
            ]
            keep.sort()
            return Spikes(s.kernel_ids[keep], s.positions[keep], s.amplitudes[keep])

        r = measure(plan, x_mv, thinned)
        points.append({"ratio": ratio, "bps": r["bits_per_sample"], "prdn": r["prdn_percent"],
                       "spikes": r["spikes_per_1000_samples"]})  # fmt: skip
    return points
