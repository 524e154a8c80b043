"""The exported ONNX encoder and decoder against the PyTorch SAN and the NumPy reference decoder."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
import torch
from torch import nn

from sancodec import DecoderMode
from sancodec.decoder import paint_spikes
from training.activations import extrema_greedy_reference
from training.data import make_windows
from training.export import (
    build_encoder,
    decode_with_onnx,
    encode_with_onnx,
    export_decoder,
    export_encoder,
    export_model,
)
from training.model import SAN
from training.sparsity import KSparse

SINGLE = (256,)
MIXED = (5, 33, 16, 33)  # direct and polyphase correlations, a shared size out of kernel order
KINDS = ["identity", "relu", "topk_absolutes", "extrema_pool_indices", "extrema", "ksparse"]
SHAPES = [(1, 1), (3, 7), (8, 1000), (3, 2048), (1, 5000)]  # (B, T), all in one session
PROVIDERS = ["CPUExecutionProvider"]

Array = npt.NDArray[np.float32]


@dataclass(frozen=True)
class Exported:
    model: SAN
    encoder: ort.InferenceSession
    decoder: ort.InferenceSession


def _model(kind: str, sizes: tuple[int, ...], mode: DecoderMode, seed: int = 1) -> SAN:
    if kind == "ksparse":
        model = SAN(sizes, "identity", mode, sparsifier=KSparse(ratio=0.013))
    elif kind == "ksparse_fixed":
        model = SAN(sizes, "identity", mode, sparsifier=KSparse(k=9, by_magnitude=False))
    else:
        model = SAN(sizes, kind, mode)
    model.init_normal(torch.Generator().manual_seed(seed))
    return model.eval()


def _session(path: Path) -> ort.InferenceSession:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1  # a fixed summation order, and the machine is shared
    session = ort.InferenceSession(str(path), options, providers=PROVIDERS)
    assert session.get_providers() == PROVIDERS
    return session


@pytest.fixture(scope="module")
def exported(
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, tuple[int, ...], DecoderMode], Exported]:
    """Export each configuration once per module."""
    root = tmp_path_factory.mktemp("onnx")
    cache: dict[tuple[str, tuple[int, ...], DecoderMode], Exported] = {}

    def get(kind: str, sizes: tuple[int, ...], mode: DecoderMode) -> Exported:
        key = (kind, sizes, mode)
        if key not in cache:
            model = _model(kind, sizes, mode)
            directory = root / f"{kind}-{'-'.join(map(str, sizes))}-{mode.value}"
            export_encoder(model, directory / "encoder.onnx")
            export_decoder(model, directory / "decoder.onnx")
            enc, dec = (_session(directory / name) for name in ("encoder.onnx", "decoder.onnx"))
            cache[key] = Exported(model, enc, dec)
        return cache[key]

    return get


def _torch(model: SAN, x: Array) -> tuple[Array, Array]:
    with torch.no_grad():
        x_hat, alpha = model(torch.from_numpy(x))
    return x_hat.numpy(), alpha.numpy()  # (B, 1, T), (B, q, T)


def _assert_encoder_matches(ex: Exported, x: Array) -> None:
    positions, amplitudes = encode_with_onnx(ex.encoder, x)
    _, alpha = _torch(ex.model, x)
    expected = np.argwhere(alpha != 0)  # (N, 3) row-major, like NonZero
    assert positions.dtype == np.int64
    assert amplitudes.dtype == np.float32
    np.testing.assert_array_equal(positions, expected, err_msg=f"shape {x.shape}")
    # two float32 m-term dot products differ by ~1e-6 of the map's scale, which is what a
    # near-zero identity/ReLU amplitude sees for m = 256
    scale = max(1.0, float(np.abs(alpha).max(initial=0.0)))
    np.testing.assert_allclose(amplitudes, alpha[tuple(expected.T)], rtol=1e-5, atol=1e-6 * scale)


def _random_signal(rng: np.random.Generator, batch: int, length: int) -> Array:
    return (rng.standard_normal((batch, 1, length)) * rng.uniform(0.5, 3.0)).astype(np.float32)


@pytest.mark.parametrize("sizes", [SINGLE, MIXED])
@pytest.mark.parametrize("kind", KINDS)
def test_encoder_matches_torch_on_random_signals(
    exported: Callable[..., Exported], kind: str, sizes: tuple[int, ...]
) -> None:
    ex = exported(kind, sizes, DecoderMode.ADJOINT)
    rng = np.random.default_rng(7)
    for batch, length in SHAPES:
        _assert_encoder_matches(ex, _random_signal(rng, batch, length))


@pytest.mark.parametrize("sizes", [SINGLE, MIXED])
@pytest.mark.parametrize("kind", KINDS)
def test_encoder_matches_torch_on_ecg_windows(
    exported: Callable[..., Exported], mitdb100: np.ndarray, kind: str, sizes: tuple[int, ...]
) -> None:
    ex = exported(kind, sizes, DecoderMode.ADJOINT)
    _assert_encoder_matches(ex, make_windows(mitdb100, 1000).windows[:8, None, :])
    _assert_encoder_matches(ex, make_windows(mitdb100, 2048).windows[:3, None, :])
    _assert_encoder_matches(ex, make_windows(mitdb100[:5000], 5000).windows[:, None, :])


def test_fixed_k_sparse_by_value_matches_torch(exported: Callable[..., Exported]) -> None:
    ex = exported("ksparse_fixed", MIXED, DecoderMode.ADJOINT)
    rng = np.random.default_rng(3)
    for batch, length in SHAPES:
        _assert_encoder_matches(ex, _random_signal(rng, batch, length))


def test_topk_count_follows_the_run_time_length(exported: Callable[..., Exported]) -> None:
    ex = exported("topk_absolutes", MIXED, DecoderMode.ADJOINT)
    rng = np.random.default_rng(5)
    for length in (2048, 700, 32):  # one session: k must not be frozen at export
        positions, _ = encode_with_onnx(ex.encoder, _random_signal(rng, 2, length))
        counts = np.zeros((2, len(MIXED)), dtype=np.int64)
        np.add.at(counts, (positions[:, 0], positions[:, 1]), 1)
        expected = [length // m for m in MIXED]
        assert (counts == np.array(expected)[None, :]).all(), (length, counts)


def _tie_signals(rng: np.random.Generator, length: int) -> Array:
    """Integer signals full of exact ties in |s|: alternations, plateaus, small integers."""
    alternating = np.where(np.arange(length) % 2 == 0, 1.0, -1.0)
    plateaus = np.repeat(rng.integers(-3, 4, length), 3)[:length]
    small = rng.integers(-2, 3, length)
    rows = [alternating, plateaus, small, np.abs(small), np.zeros(length)]
    return np.stack(rows).astype(np.float32)[:, None, :]  # (5, 1, T)


@pytest.mark.parametrize("size", [1, 9, 40])
def test_extrema_ties_follow_the_greedy(tmp_path: Path, size: int) -> None:
    # a centred one-hot kernel makes s == x exactly, so the greedy can run on x itself
    model = SAN((size,), "extrema")
    model.init_from([np.eye(size, dtype=np.float32)[(size - 1) // 2]])
    export_encoder(model.eval(), tmp_path / "encoder.onnx")
    session = _session(tmp_path / "encoder.onnx")
    med = max(size - 3, 1)
    rng = np.random.default_rng(size)
    for length in (1, 2, 37, 600):
        x = _tie_signals(rng, length)
        positions, amplitudes = encode_with_onnx(session, x)
        greedy = np.stack([extrema_greedy_reference(row, med) for row in x[:, 0]])[:, None]
        np.testing.assert_array_equal(positions, np.argwhere(greedy != 0))
        np.testing.assert_array_equal(amplitudes, greedy[greedy != 0])
        np.testing.assert_array_equal(positions, np.argwhere(_torch(model, x)[1] != 0))


def _paint_reference(
    model: SAN, positions: np.ndarray, amplitudes: np.ndarray, shape: tuple[int, int]
) -> np.ndarray:
    batch, length = shape
    out = np.zeros((batch, 1, length))
    for b in range(batch):
        mine = positions[:, 0] == b
        kernel_ids = positions[mine, 1].astype(np.int32)
        paint_spikes(
            out[b, 0],
            0,
            model.codebook(),
            kernel_ids,
            positions[mine, 2],
            amplitudes[mine].astype(np.float64),
        )
    return out  # (B, 1, T)


def _assert_close_to_scale(actual: np.ndarray, expected: np.ndarray) -> None:
    scale = float(np.abs(expected).max(initial=0.0))
    assert np.abs(actual - expected).max(initial=0.0) <= 1e-5 * scale + 1e-7


@pytest.mark.parametrize("sizes", [SINGLE, MIXED])
@pytest.mark.parametrize("mode", list(DecoderMode))
def test_decoder_matches_torch_and_the_reference(
    exported: Callable[..., Exported], mode: DecoderMode, sizes: tuple[int, ...]
) -> None:
    ex = exported("topk_absolutes", sizes, mode)
    rng = np.random.default_rng(11)
    for batch, length in SHAPES:
        x = _random_signal(rng, batch, length)
        x_hat, alpha = _torch(ex.model, x)
        positions = np.argwhere(alpha != 0)
        amplitudes = alpha[tuple(positions.T)]
        decoded = decode_with_onnx(ex.decoder, positions, amplitudes, batch, length)
        assert decoded.shape == (batch, 1, length)
        assert decoded.dtype == np.float32
        _assert_close_to_scale(decoded, x_hat)
        _assert_close_to_scale(
            decoded, _paint_reference(ex.model, positions, amplitudes, (batch, length))
        )
        round_trip = decode_with_onnx(ex.decoder, *encode_with_onnx(ex.encoder, x), batch, length)
        _assert_close_to_scale(round_trip, x_hat)


@pytest.mark.parametrize("mode", list(DecoderMode))
def test_decoder_sums_repeated_spikes_and_clips_borders(
    exported: Callable[..., Exported], mode: DecoderMode
) -> None:
    ex = exported("extrema", MIXED, mode)
    positions = np.array([[0, 1, 0], [0, 1, 0], [1, 0, 29], [1, 3, 15], [1, 2, 1], [0, 3, 29]])
    amplitudes = np.array([1.5, -0.5, 2.0, 1.0, -3.0, 0.25], dtype=np.float32)
    decoded = decode_with_onnx(ex.decoder, positions, amplitudes, 2, 30)
    _assert_close_to_scale(decoded, _paint_reference(ex.model, positions, amplitudes, (2, 30)))
    empty = decode_with_onnx(ex.decoder, np.zeros((0, 3)), np.zeros(0), 3, 17)
    np.testing.assert_array_equal(empty, np.zeros((3, 1, 17), dtype=np.float32))


def test_export_model_writes_both_files_with_their_sha256(tmp_path: Path) -> None:
    model = _model("extrema", MIXED, DecoderMode.CORRELATION)
    digests = export_model(model, tmp_path / "bundle")
    assert set(digests) == {"encoder.onnx", "decoder.onnx"}
    for name, digest in digests.items():
        data = (tmp_path / "bundle" / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == digest
        onnx.checker.check_model(onnx.load_from_string(data), full_check=True)
    encoder = onnx.load(tmp_path / "bundle" / "encoder.onnx")
    (signal,) = encoder.graph.input
    dims = signal.type.tensor_type.shape.dim
    assert [d.dim_param for d in dims] == ["batch", "", "length"]
    assert dims[1].dim_value == 1
    assert [o.name for o in encoder.graph.output] == ["positions", "amplitudes"]
    decoder = onnx.load(tmp_path / "bundle" / "decoder.onnx")
    names = [i.name for i in decoder.graph.input]
    assert names == ["positions", "amplitudes", "batch_size", "length"]
    assert export_model(model, tmp_path / "again") == digests  # deterministic bytes


def test_export_refuses_what_it_cannot_represent() -> None:
    with pytest.raises(TypeError, match="sparsifier"):
        build_encoder(SAN((5,), "identity", sparsifier=nn.Identity()))
    with pytest.raises(ValueError, match="opset"):
        build_encoder(SAN((5,), "extrema"), opset=17)
