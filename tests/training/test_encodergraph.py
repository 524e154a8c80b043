"""The bundle's encoder with kernels swapped (sancodec.encodergraph, no torch) detects exactly what
an encoder exported from PyTorch with those kernels does, on real ECG."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from recordings import read_recording
from sancodec.bundle import find_bundle
from sancodec.codebook import quantize_kernel
from sancodec.encodergraph import encoder_with_kernels, onnx_detector
from training.export import build_encoder
from training.model import SAN

REPO = Path(__file__).resolve().parents[2]


def _windows(path: Path, length: int, count: int) -> npt.NDArray[np.float32]:
    x = read_recording(path, sampto=length * count).samples[0]
    windows = ((x - x.mean()) / x.std()).reshape(count, 1, length)  # (B, 1, T)
    return (windows - windows.mean(axis=2, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("name", ["ecg", "eeg"])
def test_swapped_kernels_detect_as_a_torch_export_does(shared_data: Path, name: str) -> None:
    bundle = find_bundle(REPO / "models", name)
    m = bundle.manifest
    rng = np.random.default_rng(0)
    # other kernels of the same sizes, on the format's grid, as fitting produces them
    new = tuple(
        quantize_kernel(np.roll(w, 5) + 0.05 * rng.normal(size=w.size)) for w in m.codebook.kernels
    )
    model = SAN([w.size for w in new], m.activation, m.codebook.decoder_mode,
                border_tolerance=int(m.activation_params["border_tolerance"]))  # fmt: skip
    model.init_from(new)
    exported = onnx_detector(build_encoder(model).SerializeToString())
    swapped = onnx_detector(
        encoder_with_kernels(bundle.encoder_path.read_bytes(), m.codebook.kernels, new)
    )
    batch = _windows(shared_data / "wfdb" / "mitdb" / "105.hea", m.block_length + 2 * m.context, 4)
    found = 0
    for a, b in zip(exported(batch), swapped(batch), strict=True):
        np.testing.assert_array_equal(a.kernel_ids, b.kernel_ids)
        np.testing.assert_array_equal(a.positions, b.positions)
        np.testing.assert_array_equal(a.amplitudes, b.amplitudes)
        found += a.positions.size
    assert found > 20
    before = onnx_detector(bundle.encoder_path.read_bytes())(batch)
    assert any(
        a.positions.size != b.positions.size or np.any(a.positions != b.positions)
        for a, b in zip(before, swapped(batch), strict=True)
    )  # the swap did change what is detected
