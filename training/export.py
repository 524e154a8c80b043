"""Export a SAN to ONNX: an encoder from signals to sparse spikes and a decoder that paints them."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import TensorProto, helper

from sancodec import DecoderMode
from training.activations import Activation, SparseActivation, sparsity_parameter
from training.model import SAN
from training.onnx_extrema import GraphBuilder, correlate, extrema_mask
from training.sparsity import KSparse

__all__ = [
    "build_decoder",
    "build_encoder",
    "decode_with_onnx",
    "encode_with_onnx",
    "export_decoder",
    "export_encoder",
    "export_model",
]

MIN_OPSET = 18  # ReduceMax/Pad/Slice forms and ScatterND(reduction="add") used below


@dataclass(frozen=True)
class _Group:
    """Kernels sharing a size and an activation, run through one Conv (and one Loop)."""

    size: int
    activation: Activation
    border_tolerance: int
    members: tuple[int, ...]


def _groups(model: SAN, by_activation: bool) -> list[_Group]:
    """Kernels grouped by size (and activation), each group in kernel order."""
    keys: dict[tuple[int, Activation, int], list[int]] = {}
    for i, (m, act) in enumerate(zip(model.kernel_sizes, model.activations, strict=True)):
        if not isinstance(act, SparseActivation) or act.kernel_size != m:
            raise TypeError(f"kernel {i}: expected a SparseActivation of size {m}, got {act}")
        if by_activation:
            key = (m, act.activation, act.border_tolerance)
        else:
            key = (m, Activation.IDENTITY, 0)
        keys.setdefault(key, []).append(i)
    return [_Group(m, a, bt, tuple(ids)) for (m, a, bt), ids in keys.items()]


def _kernels(model: SAN, members: Sequence[int]) -> npt.NDArray[np.float32]:
    ws = [model.weights[i].detach().cpu().numpy().astype(np.float32) for i in members]
    return np.stack(ws)  # (g, m)


def _in_kernel_order(g: GraphBuilder, parts: list[str], groups: list[_Group]) -> str:
    """Concatenate per-group maps (B, g, T) and restore kernel order: (B, q, T)."""
    stacked = parts[0] if len(parts) == 1 else g.op("Concat", *parts, axis=1)
    order = [i for grp in groups for i in grp.members]
    if order == sorted(order):
        return stacked
    inverse = np.argsort(order)
    return g.op("Gather", stacked, g.const(inverse, np.int64), axis=1)


def _keep_top(g: GraphBuilder, s: str, score: str, k: str) -> str:
    """Keep s at the k largest scores of every row (last axis), zero elsewhere: (B, K, T)."""
    _, idx = g.ops("TopK", score, k, outputs=2, axis=-1, largest=1, sorted=0)  # (B, K, k)
    values = g.op("GatherElements", s, idx, axis=-1)  # (B, K, k)
    zeros = g.op("ConstantOfShape", g.op("Shape", s))  # (B, K, T)
    return g.op("ScatterElements", zeros, idx, values, axis=-1)


def _pool_indices(g: GraphBuilder, s: str, length: str, m: int) -> str:
    """Keep s at the first argmax of |s| in each whole window of m samples: (B, K, T)."""
    m_ = g.i64(m)
    whole = g.op("Sub", length, g.op("Mod", length, m_))  # (1,) m * floor(T / m)
    head = g.op("Slice", s, g.i64(0), whole, g.i64(2))  # (B, K, m * W)
    windows = g.op("Reshape", head, g.i64(0, 0, -1, m))  # (B, K, W, m)
    idx = g.op("ArgMax", g.op("Abs", windows), axis=3, keepdims=1)  # (B, K, W, 1)
    values = g.op("GatherElements", windows, idx, axis=3)  # (B, K, W, 1)
    zeros = g.op("ConstantOfShape", g.op("Shape", windows))  # (B, K, W, m)
    kept = g.op("ScatterElements", zeros, idx, values, axis=3)  # (B, K, W, m)
    flat = g.op("Reshape", kept, g.i64(0, 0, -1))  # (B, K, m * W)
    tail = g.op("Sub", length, whole)  # (1,) the T mod m samples no window covers
    pads = g.op("Concat", g.i64(0, 0, 0, 0, 0), tail, axis=0)  # (6,)
    return g.op("Pad", flat, pads)  # (B, K, T)


def _activate(g: GraphBuilder, s: str, length: str, grp: _Group) -> str:
    """The group's sparse activation of its similarity maps (B, g, T), as in activations.py."""
    act, m = grp.activation, grp.size
    zero = g.const(0.0, np.float32)
    if act is Activation.IDENTITY:
        return s
    if act is Activation.RELU:
        return g.op("Where", g.op("Greater", s, zero), s, zero)
    if act is Activation.TOPK_ABSOLUTES:
        k = g.op("Div", length, g.i64(m))  # (1,) floor(T / m), from the run-time length
        return _keep_top(g, s, g.op("Abs", s), k)
    if act is Activation.EXTREMA_POOL_INDICES:
        return _pool_indices(g, s, length, m)
    med = sparsity_parameter(act, m, 0, grp.border_tolerance)
    return g.op("Where", extrema_mask(g, s, med), s, zero)


def _ksparse(g: GraphBuilder, s: str, length: str, sparsifier: KSparse) -> str:
    """KSparse in eval mode: top-k per (example, kernel) row of the stacked maps (B, q, T)."""
    if sparsifier.k is not None:
        k = g.op("Min", g.i64(sparsifier.k), length)  # (1,)
    else:
        assert sparsifier.ratio is not None
        # floor(ratio * T) in double precision, as Python computes it in k_for
        scaled = g.op(
            "Mul",
            g.op("Cast", length, to=TensorProto.DOUBLE),
            g.const([sparsifier.ratio], np.float64),
        )
        k = g.op("Cast", g.op("Floor", scaled), to=TensorProto.INT64)  # (1,)
        k = g.op("Min", g.op("Max", k, g.i64(1)), length)
    score = g.op("Abs", s) if sparsifier.by_magnitude else s
    return _keep_top(g, s, score, k)


def _encoder_graph(g: GraphBuilder, model: SAN, x: str) -> str:
    """All of the encoder up to the dense activation map alpha: (B, 1, T) -> (B, q, T)."""
    sparsifier = model.sparsifier
    if sparsifier is not None and not isinstance(sparsifier, KSparse):
        raise TypeError(f"cannot export sparsifier {type(sparsifier).__name__}; only KSparse")
    groups = _groups(model, by_activation=sparsifier is None)
    length = g.op("Shape", x, start=2, end=3)  # (1,) T
    parts = []
    for grp in groups:
        w = _kernels(model, grp.members)[:, None, :]  # (g, 1, m)
        s = correlate(g, x, w, (grp.size - 1) // 2)  # (B, g, T)
        parts.append(s if sparsifier is not None else _activate(g, s, length, grp))
    alpha = _in_kernel_order(g, parts, groups)  # (B, q, T)
    if isinstance(sparsifier, KSparse):
        alpha = _ksparse(g, alpha, length, sparsifier)
    return alpha


def _finish(
    g: GraphBuilder,
    name: str,
    inputs: list[onnx.ValueInfoProto],
    outputs: list[onnx.ValueInfoProto],
    opset: int,
) -> onnx.ModelProto:
    if opset < MIN_OPSET:
        raise ValueError(f"opset must be >= {MIN_OPSET}, got {opset}")
    graph = helper.make_graph(g.nodes, name, inputs, outputs, g.initializers)
    opsets = [helper.make_opsetid("", opset)]
    # the lowest IR version for the opset, so that older runtimes can still load the model
    model = helper.make_model(graph, opset_imports=opsets, producer_name="sancodec.training")
    model.ir_version = helper.find_min_ir_version_for(opsets)
    onnx.checker.check_model(model, full_check=True)
    return model


def _save(model: onnx.ModelProto, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(model.SerializeToString())


def build_encoder(model: SAN, opset: int = 20) -> onnx.ModelProto:
    """The encoder: signal (B, 1, T) -> positions (N, 3) = (batch, kernel, t), amplitudes (N,)."""
    g = GraphBuilder()
    alpha = _encoder_graph(g, model, "signal")  # (B, q, T)
    nonzero = g.op("Not", g.op("Equal", alpha, g.const(0.0, np.float32)))  # (B, q, T)
    # NonZero lists indices in row-major order: by batch, then kernel, then t
    positions = g.op("Transpose", g.op("NonZero", nonzero), perm=[1, 0], out="positions")
    g.op("GatherND", alpha, positions, out="amplitudes")  # (N,)
    inputs = [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", 1, "length"])]
    outputs = [
        helper.make_tensor_value_info("positions", TensorProto.INT64, ["spikes", 3]),
        helper.make_tensor_value_info("amplitudes", TensorProto.FLOAT, ["spikes"]),
    ]
    encoder = _finish(g, "san_encoder", inputs, outputs, opset)
    dims = encoder.graph.input[0].type.tensor_type.shape.dim
    if [d.dim_param for d in dims] != ["batch", "", "length"]:
        raise RuntimeError(f"the encoder's batch and length must be symbolic, got {dims}")
    return encoder


def _painted(model: SAN, members: Sequence[int]) -> tuple[npt.NDArray[np.float32], int]:
    """Correlation weights (1, g, m) and left pad that paint each kernel as the mode says."""
    w = _kernels(model, members)  # (g, m)
    m = w.shape[1]
    centre = (m - 1) // 2
    if model.decoder_mode is DecoderMode.CORRELATION:
        return w[None], centre
    # the adjoint (ConvTranspose) of the encoder's correlation correlates with the flipped kernel
    return np.ascontiguousarray(w[None, :, ::-1]), m - 1 - centre


def build_decoder(model: SAN, opset: int = 20) -> onnx.ModelProto:
    """The decoder: (positions, amplitudes, batch_size, length) -> signal (B, 1, T)."""
    g = GraphBuilder()
    q = len(model.kernel_sizes)
    size = g.op("Reshape", "batch_size", g.i64(1))  # (1,)
    length = g.op("Reshape", "length", g.i64(1))  # (1,)
    shape = g.op("Concat", size, g.i64(q), length, axis=0)  # (3,)
    zeros = g.op("ConstantOfShape", shape)  # (B, q, T)
    # "add" so that repeated positions sum, as overlapping spikes do in paint_spikes
    dense = g.op("ScatterND", zeros, "positions", "amplitudes", reduction="add")  # (B, q, T)
    parts = []
    for grp in _groups(model, by_activation=False):
        part = dense
        if len(grp.members) < q:
            part = g.op("Gather", dense, g.i64(*grp.members), axis=1)  # (B, g, T)
        w, left = _painted(model, grp.members)  # (1, g, m)
        parts.append(correlate(g, part, w, left))  # (B, 1, T)
    g.op("Sum", *parts, out="signal")  # (B, 1, T)
    inputs = [
        helper.make_tensor_value_info("positions", TensorProto.INT64, ["spikes", 3]),
        helper.make_tensor_value_info("amplitudes", TensorProto.FLOAT, ["spikes"]),
        helper.make_tensor_value_info("batch_size", TensorProto.INT64, []),
        helper.make_tensor_value_info("length", TensorProto.INT64, []),
    ]
    outputs = [helper.make_tensor_value_info("signal", TensorProto.FLOAT, ["batch", 1, "length"])]
    return _finish(g, "san_decoder", inputs, outputs, opset)


def export_encoder(model: SAN, path: Path, opset: int = 20) -> None:
    """Write the encoder ONNX (see build_encoder); KSparse is exported in its eval behaviour."""
    _save(build_encoder(model, opset), path)


def export_decoder(model: SAN, path: Path, opset: int = 20) -> None:
    """Write the decoder ONNX (see build_decoder)."""
    _save(build_decoder(model, opset), path)


def export_model(model: SAN, directory: Path, opset: int = 20) -> dict[str, str]:
    """Write encoder.onnx and decoder.onnx into directory; returns their sha256 hex digests."""
    directory = Path(directory)
    export_encoder(model, directory / "encoder.onnx", opset)
    export_decoder(model, directory / "decoder.onnx", opset)
    names = ("encoder.onnx", "decoder.onnx")
    return {name: hashlib.sha256((directory / name).read_bytes()).hexdigest() for name in names}


def encode_with_onnx(
    session: Any, x: npt.ArrayLike
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float32]]:
    """Run an encoder session on signals (B, 1, T): (positions (N, 3), amplitudes (N,))."""
    signal = np.ascontiguousarray(x, dtype=np.float32)
    if signal.ndim != 3 or signal.shape[1] != 1:
        raise ValueError(f"expected signals of shape (B, 1, T), got {signal.shape}")
    positions, amplitudes = session.run(["positions", "amplitudes"], {"signal": signal})
    return positions, amplitudes


def decode_with_onnx(
    session: Any,
    positions: npt.ArrayLike,
    amplitudes: npt.ArrayLike,
    batch_size: int,
    length: int,
) -> npt.NDArray[np.float32]:
    """Run a decoder session: spikes -> signals (batch_size, 1, length)."""
    feeds = {
        "positions": np.ascontiguousarray(positions, dtype=np.int64).reshape(-1, 3),
        "amplitudes": np.ascontiguousarray(amplitudes, dtype=np.float32).reshape(-1),
        "batch_size": np.array(batch_size, dtype=np.int64),
        "length": np.array(length, dtype=np.int64),
    }
    (signal,) = session.run(["signal"], feeds)
    return signal  # type: ignore[no-any-return]
