from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from sancodec.bundle import Manifest, load_bundle, sha256_file
from sancodec.errors import BundleError, InvalidInputError
from sancodec.tables import CodingTables

SCHEMA = json.loads(
    (Path(__file__).resolve().parents[2] / "sancodec" / "schemas" / "model.v1.json").read_text()
)


def _manifest(**overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "schema_version": 1, "name": "ecg", "version": "1", "description": "test", "modality": "ecg",
        "activation": {"name": "extrema", "params": {"border_tolerance": 3}},
        "decoder_mode": "adjoint", "kernels": [np.hanning(9).tolist(), [0.5, -0.5]],
        "sample_rate_hz": 360.0, "block_length": 2048, "context": 256,
        "normalization": {"scale": 0.2, "units": "mV", "per_block_mean": True},
        "quantization": {"san_step_exp": -24, "residual_step_exp": -30},
        "residual": {"wavelet": "bior4.4", "level": 5},
        "tables": CodingTables(-24, -30).to_dict(),
        "files": {"encoder.onnx": {"sha256": "0" * 64}, "decoder.onnx": {"sha256": "0" * 64}},
        "training": {"seed": 0}, "test_metrics": {"prdn_percent": 9.5},
    }  # fmt: skip
    data.update(overrides)
    return data


def _bundle(root: Path, data: dict[str, Any]) -> Path:
    directory = root / data["name"] / data["version"]
    directory.mkdir(parents=True)
    for name in ("encoder.onnx", "decoder.onnx"):
        (directory / name).write_bytes(name.encode() * 10)
        data["files"][name]["sha256"] = sha256_file(directory / name)
    (directory / "model.json").write_text(json.dumps(data))
    return directory


def test_manifest_round_trip_agrees_with_the_schema() -> None:
    data = _manifest()
    jsonschema.validate(data, SCHEMA)
    manifest = Manifest.from_dict(data)
    assert manifest.codebook.residual is not None
    assert manifest.codebook.weight_count == 11
    again = manifest.to_dict()
    jsonschema.validate(again, SCHEMA)
    assert Manifest.from_dict(again).to_dict() == again


@pytest.mark.parametrize(
    "overrides",
    [
        {"name": "ECG!"},
        {"activation": {"name": "softmax", "params": {}}},
        {"block_length": 0},
        {"files": {"encoder.onnx": {"sha256": "0" * 64}}},
        {"schema_version": 2},
        {"normalization": {"scale": -1}},
    ],
)
def test_code_and_schema_refuse_the_same_manifests(overrides: dict[str, Any]) -> None:
    data = _manifest(**overrides)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(data, SCHEMA)
    with pytest.raises(InvalidInputError):
        Manifest.from_dict(data)


def test_code_checks_the_cross_field_rule_the_schema_cannot_state() -> None:
    with pytest.raises(InvalidInputError, match="residual step needs a residual transform"):
        Manifest.from_dict(_manifest(residual=None))


def test_load_verifies_hashes_and_location(tmp_path: Path) -> None:
    directory = _bundle(tmp_path, _manifest())
    bundle = load_bundle(directory)
    assert bundle.ref.name == "ecg"
    assert len(bundle.manifest_sha256) == 64
    (directory / "decoder.onnx").write_bytes(b"tampered")
    with pytest.raises(BundleError, match=r"decoder\.onnx: sha256 .* does not match"):
        load_bundle(directory)


def test_broken_bundles_are_named(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match=r"no model\.json"):
        load_bundle(tmp_path)
    directory = _bundle(tmp_path, _manifest(version="2"))
    (directory / "encoder.onnx").unlink()
    with pytest.raises(BundleError, match=r"encoder\.onnx is missing"):
        load_bundle(directory)
    (directory / "model.json").write_text("{not json")
    with pytest.raises(BundleError, match="not valid JSON"):
        load_bundle(directory)
    moved = _bundle(tmp_path / "elsewhere", _manifest())
    moved.rename(moved.parent / "7")
    with pytest.raises(BundleError, match="<name>/<version>"):
        load_bundle(moved.parent / "7")
