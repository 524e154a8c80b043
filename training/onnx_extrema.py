"""ONNX graph pieces of the SAN export: a graph builder, a fast "same" correlation, exact Extrema."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

import numpy as np
import numpy.typing as npt
import onnx
from onnx import GraphProto, TensorProto, helper, numpy_helper

from sancodec.encodergraph import DIRECT_MAX, PHASES, polyphase_weights

__all__ = ["GraphBuilder", "correlate", "extrema_candidates", "extrema_mask"]

INT64_MAX = np.iinfo(np.int64).max


class GraphBuilder:
    """Collects nodes; value names are unique across a graph and all of its subgraphs."""

    def __init__(self, parent: GraphBuilder | None = None) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._root: GraphBuilder = parent._root if parent is not None else self
        self._counter: Iterator[int] = parent._counter if parent is not None else itertools.count()
        self._consts: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def fresh(self, hint: str) -> str:
        return f"{hint}_{next(self._counter)}"

    def ops(self, op_type: str, *inputs: str, outputs: int, **attrs: Any) -> list[str]:
        names = [self.fresh(op_type.lower()) for _ in range(outputs)]
        node = helper.make_node(op_type, list(inputs), names, name=self.fresh(op_type), **attrs)
        self.nodes.append(node)
        return names

    def op(self, op_type: str, *inputs: str, out: str | None = None, **attrs: Any) -> str:
        name = out if out is not None else self.fresh(op_type.lower())
        node = helper.make_node(op_type, list(inputs), [name], name=self.fresh(op_type), **attrs)
        self.nodes.append(node)
        return name

    def const(self, value: npt.ArrayLike, dtype: npt.DTypeLike) -> str:
        """An initializer of the root graph (subgraphs see it through the outer scope)."""
        array = np.array(value, dtype=dtype, order="C")
        key = (array.dtype.str, array.shape, array.tobytes())
        root = self._root
        if key not in root._consts:
            name = self.fresh("c")
            root.initializers.append(numpy_helper.from_array(array, name))
            root._consts[key] = name
        return root._consts[key]

    def i64(self, *values: int) -> str:
        return self.const(list(values), np.int64)

    def subgraph(self) -> GraphBuilder:
        return GraphBuilder(parent=self)


def correlate(g: GraphBuilder, x: str, w: npt.NDArray[np.float32], left: int) -> str:
    """s[b, o, t] = sum_c,j w[o, c, j] x[b, c, t + j - left], zero outside: (B, C, T) -> (B, O, T)."""
    m = w.shape[2]
    if m <= DIRECT_MAX:
        return g.op("Conv", x, g.const(w, np.float32), pads=[left, m - 1 - left], kernel_shape=[m])
    return _polyphase(g, x, w, left, PHASES)


def _polyphase(g: GraphBuilder, x: str, w: npt.NDArray[np.float32], left: int, p: int) -> str:
    """The correlation on frames of p samples: a GEMM-friendly Conv instead of a long GEMV.

    ORT's Conv with one channel and a long kernel runs im2col plus a matrix-vector product;
    on frames it is a matrix product over p phases (m = 256 on 64 x 2048 samples, 2 threads:
    2.5 ms -> 0.6 ms) at the cost of about p - 1 zero taps per output.
    """
    out_ch, in_ch, m = w.shape
    taps = -(-(p + m - 1) // p)
    length = g.op("Shape", x, start=2, end=3)  # (1,) T
    frames = g.op("Div", g.op("Add", length, g.i64(p - 1)), g.i64(p))  # (1,) R = ceil(T / p)
    span = g.op("Mul", g.op("Add", frames, g.i64(taps - 1)), g.i64(p))  # (1,) (R + D - 1) p
    right = g.op("Sub", span, g.op("Add", length, g.i64(left)))  # (1,)
    padded = g.op("Pad", x, g.op("Concat", g.i64(0, 0, left, 0, 0), right, axis=0))
    framed = g.op("Reshape", padded, g.i64(0, in_ch, -1, p))  # (B, C, R + D - 1, p)
    phases = g.op("Transpose", framed, perm=[0, 1, 3, 2])  # (B, C, p, R + D - 1)
    stacked = g.op("Reshape", phases, g.i64(0, in_ch * p, -1))  # (B, C p, R + D - 1)
    weights = g.const(polyphase_weights(w, p), np.float32)  # (O p, C p, D)
    s = g.op("Conv", stacked, weights, kernel_shape=[taps])  # (B, O p, R)
    s = g.op("Transpose", g.op("Reshape", s, g.i64(0, out_ch, p, -1)), perm=[0, 1, 3, 2])
    s = g.op("Reshape", s, g.i64(0, out_ch, -1))  # (B, O, R p)
    return g.op("Slice", s, g.i64(0), length, g.i64(2))  # (B, O, T)


def extrema_candidates(g: GraphBuilder, s: str) -> str:
    """Bool mask (B, K, T) of positive peaks and non-positive valleys, as in activations.py."""
    # edge padding makes R[T-1] = L[0] = s - s = 0 without a zero-length difference tensor
    edged = g.op("Pad", s, g.i64(0, 0, 1, 0, 0, 1), mode="edge")  # (B, K, T + 2)
    after = g.op("Slice", edged, g.i64(2), g.i64(INT64_MAX), g.i64(2))  # (B, K, T) s[t+1]
    before = g.op("Slice", edged, g.i64(0), g.i64(-2), g.i64(2))  # (B, K, T) s[t-1]
    zero = g.const(0.0, np.float32)
    rises_after = g.op("Greater", g.op("Sub", after, s), zero)  # R > 0
    rises_before = g.op("Greater", g.op("Sub", s, before), zero)  # L > 0
    positive = g.op("Greater", s, zero)
    valley = g.op("And", g.op("And", rises_after, g.op("Not", rises_before)), g.op("Not", positive))
    peak = g.op("And", g.op("And", g.op("Not", rises_after), rises_before), positive)
    return g.op("Or", peak, valley)  # (B, K, T)


def _any(g: GraphBuilder, mask: str) -> str:
    """Scalar bool: is any element of mask set (ReduceMax takes no bool before opset 20)."""
    most = g.op("ReduceMax", g.op("Cast", mask, to=TensorProto.FLOAT), keepdims=0)  # ()
    return g.op("Greater", most, g.const(0.0, np.float32))


def _dilate(g: GraphBuilder, mask: str, length: str, med: int) -> str:
    """Bool (B, K, T): is any mask element within ±med, by a running count (O(T) for any med)."""
    counts = g.op("Cast", mask, to=TensorProto.INT32)  # (B, K, T)
    padded = g.op("Pad", counts, g.i64(0, 0, med + 1, 0, 0, med))  # (B, K, T + 2 med + 1)
    running = g.op("CumSum", padded, g.const(2, np.int32))  # (B, K, T + 2 med + 1)
    upto = g.op("Slice", running, g.i64(2 * med + 1), g.i64(INT64_MAX), g.i64(2))  # (B, K, T)
    before = g.op("Slice", running, g.i64(0), length, g.i64(2))  # (B, K, T)
    return g.op("Greater", g.op("Sub", upto, before), g.const(0, np.int32))


def _round_body(g: GraphBuilder, magnitude: str, length: str, med: int) -> GraphProto:
    """One round: keep every undecided candidate that beats its undecided ±med neighbours.

    Priority is |s| descending, ties to the lower index: strict against the left window and
    non-strict against the right one. Kept candidates then block everything within ±med.
    """
    undecided, kept = g.fresh("undecided_in"), g.fresh("kept_in")
    v = g.op("Where", undecided, magnitude, g.const(-1.0, np.float32))  # (B, K, T)
    pads = g.i64(0, 0, med, 0, 0, med)
    padded = g.op("Pad", v, pads, g.const(-1.0, np.float32))  # (B, K, T + 2 med)
    # one 1-D MaxPool serves both sides; a 2-D (1, k) pool is O(T k) on ORT CPU
    window = g.op("MaxPool", padded, kernel_shape=[med], strides=[1])  # (B, K, T + med + 1)
    left = g.op("Slice", window, g.i64(0), length, g.i64(2))  # (B, K, T) max v[t-med .. t-1]
    right = g.op("Slice", window, g.i64(med + 1), g.i64(INT64_MAX), g.i64(2))  # v[t+1 .. t+med]
    wins = g.op("And", g.op("Greater", v, left), g.op("GreaterOrEqual", v, right))
    keep_now = g.op("And", undecided, wins)  # (B, K, T)
    kept_out = g.op("Or", kept, keep_now)
    free = g.op("Not", _dilate(g, keep_now, length, med))  # (B, K, T)
    undecided_out = g.op("And", undecided, free)
    go_on = _any(g, undecided_out)
    step, go_in = g.fresh("iteration"), g.fresh("cond_in")
    mask_type = [None, None, None]
    inputs = [
        helper.make_tensor_value_info(step, TensorProto.INT64, []),
        helper.make_tensor_value_info(go_in, TensorProto.BOOL, []),
        helper.make_tensor_value_info(undecided, TensorProto.BOOL, mask_type),
        helper.make_tensor_value_info(kept, TensorProto.BOOL, mask_type),
    ]
    outputs = [
        helper.make_tensor_value_info(go_on, TensorProto.BOOL, []),
        helper.make_tensor_value_info(undecided_out, TensorProto.BOOL, mask_type),
        helper.make_tensor_value_info(kept_out, TensorProto.BOOL, mask_type),
    ]
    return helper.make_graph(g.nodes, g.fresh("extrema_round"), inputs, outputs)


def extrema_mask(g: GraphBuilder, s: str, med: int) -> str:
    """Bool mask (B, K, T) of the Extrema kept with radius med, exactly the sequential greedy.

    The Loop runs until no candidate is undecided: a few rounds on real signals, at most
    ceil(T / (med + 1)) on adversarial ones (long runs of exact ties).
    """
    if med < 1:
        raise ValueError(f"med must be >= 1, got {med}")
    candidates = extrema_candidates(g, s)  # (B, K, T)
    length = g.op("Shape", s, start=2, end=3)  # (1,) T
    none = helper.make_tensor("false", TensorProto.BOOL, [1], [False])
    nothing = g.op("ConstantOfShape", g.op("Shape", s), value=none)  # (B, K, T) all False
    body = _round_body(g.subgraph(), g.op("Abs", s), length, med)
    started = _any(g, candidates)
    _, kept = g.ops("Loop", "", started, candidates, nothing, outputs=2, body=body)
    return kept  # (B, K, T)
