"""A bundle's encoder.onnx with other kernels: its kernel initializers replaced, run in ONNX Runtime.

The exported encoder bakes its kernels in as Conv weights, a size group's kernels stacked
(g, 1, m), or for kernels longer than DIRECT_MAX as polyphase weights (see `polyphase_weights`).
Swapping those initializers for the same forms of new kernels of the same sizes gives the encoder
those kernels would have exported to, activation and all, with no PyTorch. onnx and onnxruntime
are imported inside the functions, so that `import sancodec` stays light.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from sancodec.bundle import Bundle
from sancodec.errors import BundleError, InvalidConfigError
from sancodec.plan import Spikes

__all__ = [
    "DIRECT_MAX",
    "PHASES",
    "BatchDetector",
    "DetectorFactory",
    "encoder_with_kernels",
    "kernel_swapper",
    "onnx_detector",
    "polyphase_weights",
    "spikes_by_row",
]

PHASES = 32  # polyphase width p of long correlations
DIRECT_MAX = 16  # kernels up to this size stay a plain Conv

Kernels = Sequence[npt.NDArray[np.float32]]
BatchDetector = Callable[[npt.NDArray[np.float32]], list[Spikes]]  # (B, 1, T) -> per row
DetectorFactory = Callable[[Kernels], BatchDetector]


def polyphase_weights(w: npt.NDArray[np.float32], p: int = PHASES) -> npt.NDArray[np.float32]:
    """(O, C, m) -> (O p, C p, D): output phase i reads input phase e of frame r + d."""
    out_ch, in_ch, m = w.shape
    taps = -(-(p + m - 1) // p)
    i, e, d = np.ogrid[:p, :p, :taps]
    k = d * p + e - i  # (p, p, D) the tap of w that links them
    inside = (k >= 0) & (k < m)
    picked = np.where(inside, w[:, :, np.clip(k, 0, m - 1)], 0.0)  # (O, C, p, p, D)
    return picked.transpose(0, 2, 1, 3, 4).reshape(out_ch * p, in_ch * p, taps).astype(np.float32)


def _conv_weights(kernels: Kernels, members: list[int]) -> npt.NDArray[np.float32]:
    """A size group's Conv weights as the export builds them: direct (g, 1, m) or polyphase."""
    stacked = np.stack([np.asarray(kernels[i], dtype=np.float32) for i in members])[:, None, :]
    return stacked if stacked.shape[2] <= DIRECT_MAX else polyphase_weights(stacked)


def _size_groups(kernels: Kernels) -> list[list[int]]:
    """Kernel ids grouped by size, groups in order of first appearance (as the export does)."""
    groups: dict[int, list[int]] = {}
    for i, w in enumerate(kernels):
        groups.setdefault(int(w.size), []).append(i)
    return list(groups.values())


def _missing(exc: ModuleNotFoundError) -> InvalidConfigError:
    return InvalidConfigError(
        f"fitting kernels runs the model's encoder in ONNX Runtime, and {exc.name} is not "
        "installed: pip install 'sancodec[client]'"
    )


def encoder_with_kernels(encoder: bytes, old: Kernels, new: Kernels) -> bytes:
    """The serialized encoder with the Conv weights of kernels `old` replaced by `new`'s."""
    try:
        import onnx
        from onnx import numpy_helper
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None

    if [w.size for w in old] != [w.size for w in new]:
        raise InvalidConfigError(
            f"new kernels must have the encoder's sizes {[w.size for w in old]}, "
            f"got {[w.size for w in new]}"
        )
    model = onnx.load_from_string(encoder)
    stored = {t.name: t for t in model.graph.initializer}
    for members in _size_groups(old):
        was = _conv_weights(old, members)
        tolerance = 1e-6 * float(np.max(np.abs(was), initial=1.0))
        found = [
            name
            for name, tensor in stored.items()
            if tuple(tensor.dims) == was.shape
            and np.allclose(numpy_helper.to_array(tensor), was, rtol=0, atol=tolerance)
        ]
        if len(found) != 1:
            raise BundleError(
                f"the encoder holds {len(found)} weights of kernels {members}, expected one"
            )
        tensor = numpy_helper.from_array(_conv_weights(new, members), found[0])
        stored[found[0]].CopyFrom(tensor)
    return bytes(model.SerializeToString())


def spikes_by_row(
    positions: npt.NDArray[np.int64], amplitudes: npt.NDArray[np.float32], rows: int
) -> list[Spikes]:
    """An encoder's outputs for a (rows, 1, T) batch ((N, 3) positions: row, kernel, sample; N
    amplitudes) as each row's spikes."""
    out = []
    for row in range(rows):
        mine = positions[:, 0] == row
        out.append(
            Spikes(
                positions[mine, 1].astype(np.int32),
                positions[mine, 2].astype(np.int64),
                amplitudes[mine].astype(np.float64),
            )
        )
    return out


def onnx_detector(encoder: bytes, threads: int = 0) -> BatchDetector:
    """An encoder in ONNX Runtime on the CPU: (B, 1, T) windows -> each row's spikes."""
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as exc:
        raise _missing(exc) from None

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    session: Any = ort.InferenceSession(encoder, options, providers=["CPUExecutionProvider"])

    def detect(batch: npt.NDArray[np.float32]) -> list[Spikes]:
        signal = np.ascontiguousarray(batch, dtype=np.float32)
        positions, amplitudes = session.run(["positions", "amplitudes"], {"signal": signal})
        return spikes_by_row(positions, amplitudes, signal.shape[0])

    return detect


def kernel_swapper(bundle: Bundle, threads: int = 0) -> DetectorFactory:
    """Kernels -> a detector running the bundle's encoder with those kernels in it."""
    encoder = bundle.encoder_path.read_bytes()
    old = bundle.manifest.codebook.kernels

    def detector_for(kernels: Kernels) -> BatchDetector:
        return onnx_detector(encoder_with_kernels(encoder, old, kernels), threads)

    return detector_for
