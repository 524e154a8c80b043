"""The shipped bundles verify, and a bundle survives export, verify, load, encode and decode."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import jsonschema
import numpy as np
import onnxruntime as ort
import pytest

from sancodec import BlockCode, Codebook, decode
from sancodec.bundle import load_bundle
from sancodec.errors import BundleError
from sancodec.streamcoder import CodingPlan
from training.codec_eval import code_signal, onnx_detector
from training.export import decode_with_onnx
from training.shipped import RECIPES, Source, build

REPO = Path(__file__).resolve().parents[2]
SCHEMA = json.loads((REPO / "sancodec" / "schemas" / "model.v1.json").read_text())


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda r: r.name)
def test_shipped_bundles_verify_and_were_tested_on_unseen_records(recipe) -> None:  # type: ignore[no-untyped-def]
    bundle = load_bundle(REPO / "models" / recipe.name / recipe.version)
    data = json.loads((bundle.directory / "model.json").read_text())
    jsonschema.validate(data, SCHEMA)
    training = set(data["training"]["data"]["train"]) | set(data["training"]["data"]["val"])
    tested = set(recipe.source.test)
    assert training.isdisjoint(tested)
    assert set(data["test_metrics"]["per_record"]) == {Path(p).stem for p in tested}
    assert data["test_metrics"]["mean"]["bits_per_sample"] > 0


def test_bundle_round_trip(tmp_path: Path, shared_data: Path) -> None:
    base = RECIPES[0]
    recipe = replace(
        base, name="tiny", config=replace(base.config, epochs=1, restarts=1),
        source=Source(train=("wfdb/mitdb/101.hea",), val=("wfdb/mitdb/103.hea",), test=("wfdb/mitdb/100.hea",),
                      train_span=(0, 20480), test_span=(20480, 26624)),
    )  # fmt: skip
    manifest = build(recipe, shared_data, tmp_path, "test")
    bundle = load_bundle(tmp_path / "tiny" / "1")
    assert json.loads(json.dumps(bundle.manifest.to_dict())) == json.loads(json.dumps(manifest))
    assert manifest["test_metrics"]["per_record"]["100"]["prdn_percent"] < 20

    encoder = ort.InferenceSession(str(bundle.encoder_path), providers=["CPUExecutionProvider"])
    decoder = ort.InferenceSession(str(bundle.decoder_path), providers=["CPUExecutionProvider"])
    m = bundle.manifest
    san_only = Codebook(
        m.codebook.kernels, m.codebook.decoder_mode
    )  # the ONNX decoder paints spikes
    plan = CodingPlan(san_only, m.block_length, m.context, m.normalization.scale, m.san_step_exp)
    x = np.random.default_rng(0).normal(size=5000) * 0.1 + np.sin(np.arange(5000) / 20)
    coded = code_signal(plan, x, onnx_detector(encoder))
    blocks = [BlockCode(c.start, c.signal.size, (c.code,)) for c in coded]
    reference = decode(blocks, san_only, 1)[0]
    spikes = [
        (0, int(k), int(p), a)
        for c in coded
        for k, p, a in zip(
            c.code.san.kernel_ids, c.code.san.positions, c.code.san.amplitudes(), strict=True
        )
    ]
    positions = np.array([s[:3] for s in spikes], dtype=np.int64).reshape(-1, 3)
    amplitudes = np.array([s[3] for s in spikes], dtype=np.float32)
    painted = decode_with_onnx(decoder, positions, amplitudes, 1, x.size)[0, 0]
    offsets = np.concatenate([np.full(c.signal.size, c.code.san.offset) for c in coded])
    assert np.allclose(painted + offsets, reference, atol=1e-4 * np.abs(reference).max())


def test_a_tampered_bundle_is_refused(tmp_path: Path) -> None:
    source = REPO / "models" / "ecg" / "1"
    target = tmp_path / "ecg" / "1"
    target.mkdir(parents=True)
    for f in source.iterdir():
        (target / f.name).write_bytes(f.read_bytes())
    data = bytearray((target / "encoder.onnx").read_bytes())
    data[len(data) // 2] ^= 1
    (target / "encoder.onnx").write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"encoder\.onnx: sha256"):
        load_bundle(target)


def test_recipes_train_with_the_robust_recipe() -> None:
    assert {recipe.config.init for recipe in RECIPES} == {"mixed"}
    assert all(recipe.config.restarts >= 2 for recipe in RECIPES)
