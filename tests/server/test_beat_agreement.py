"""sancodec_block_beat_agreement_ratio from a real server: near 1 for the shipped `ecg` on MIT-BIH,
far lower for the same model at a very coarse step, absent for a model that is not ECG."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import grpc
import numpy as np
import pytest
import wfdb
from server_harness import BASE, REPO, RunningServer, encode_requests

from sancodec.bundle import load_bundle
from sancodec.channelcoder import ChannelCoder
from sancodec.plan import CodingPlan
from sancodec.v1 import codec_pb2_grpc

COARSE_STEP_EXP = 40  # 2^(40/8) = 32 model units (12 mV): spikes and residual round to nothing


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The shipped ecg, ecg-rhythm and eeg, and `ecg-coarse`: ecg's bundle with both steps at 2^5."""
    models = tmp_path_factory.mktemp("models")
    for name in ("ecg", "ecg-rhythm", "eeg"):
        shutil.copytree(REPO / "models" / name, models / name)
    coarse = models / "ecg-coarse" / "1"
    shutil.copytree(REPO / "models" / "ecg" / "1", coarse)
    manifest = json.loads((coarse / "model.json").read_text())
    manifest["name"] = "ecg-coarse"
    manifest["quantization"] = {"san_step_exp": COARSE_STEP_EXP, "residual_step_exp": COARSE_STEP_EXP}  # fmt: skip
    (coarse / "model.json").write_text(json.dumps(manifest))
    running = RunningServer(replace(BASE, models=models))
    yield running
    running.stop()


@pytest.fixture(scope="module")
def ecg(shared_data: Path) -> np.ndarray:
    """MIT-BIH 105 (never seen by the shipped models), MLII, 60 s in mV: (1, 21600)."""
    path = shared_data / "wfdb" / "mitdb" / "105"
    return wfdb.rdrecord(str(path), sampto=21600, channels=[0]).p_signal.T.copy()


def _agreement(server: RunningServer, signal: np.ndarray, model: str, rate: float) -> tuple[float | None, float | None]:  # fmt: skip
    """(blocks observed, mean agreement) of one stream through `model`."""
    registry = server.telemetry.registry
    labels = {"model": model, "version": "1"}

    def sample(suffix: str) -> float:
        return registry.get_sample_value(f"sancodec_block_beat_agreement_ratio{suffix}", labels) or 0.0  # fmt: skip

    count, total = sample("_count"), sample("_sum")
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        responses = list(stub.Encode(encode_requests(signal, 4096, model=model, sample_rate_hz=rate)))  # fmt: skip
    assert responses[-1].summary.sample_count == signal.shape[1]
    if registry.get_sample_value("sancodec_block_beat_agreement_ratio_count", labels) is None:
        return None, None
    blocks = sample("_count") - count
    return blocks, (sample("_sum") - total) / blocks


def test_the_shipped_model_keeps_the_beats(server: RunningServer, ecg: np.ndarray) -> None:
    blocks, mean = _agreement(server, ecg, "ecg", 360.0)
    assert blocks == 6  # every 4096-sample block of 60 s holds beats
    assert mean is not None
    assert mean > 0.98


def test_agreement_falls_at_a_very_coarse_step(server: RunningServer, ecg: np.ndarray) -> None:
    blocks, mean = _agreement(server, ecg, "ecg-coarse", 360.0)
    assert blocks == 6
    assert mean is not None
    assert mean < 0.5, mean


def test_a_model_that_is_not_ecg_is_not_measured(server: RunningServer, ecg: np.ndarray) -> None:
    """The same heartbeats, handed to the EEG model at its rate: no beat figure for eeg."""
    blocks, mean = _agreement(server, ecg, "eeg", 173.61)
    assert blocks is None
    assert mean is None
    labels = {"model": "eeg", "version": "1"}
    assert server.telemetry.registry.get_sample_value("sancodec_blocks_total", labels) == 22


def test_the_rhythm_model_codes_its_spikes_at_the_beats_as_offline(server: RunningServer, ecg: np.ndarray) -> None:  # fmt: skip
    """ecg-rhythm places its spikes itself (no encoder call): the server's codes are the offline
    stream coder's, and the beats stay."""
    plan = CodingPlan.from_manifest(load_bundle(REPO / "models" / "ecg-rhythm" / "1").manifest)
    coder = ChannelCoder(plan)
    windows = coder.push(ecg[0]) + coder.finish()
    offline = [c.payload for w in windows for c in coder.accept(w, None)] + [
        c.payload for c in coder.ready()
    ]
    with grpc.insecure_channel(server.address) as channel:
        stub = codec_pb2_grpc.CodecServiceStub(channel)
        responses = list(stub.Encode(encode_requests(ecg, 997, model="ecg-rhythm")))
    served = [r.block.channels[0].payload for r in responses if r.HasField("block")]
    assert served == offline
    blocks, mean = _agreement(server, ecg, "ecg-rhythm", 360.0)
    assert blocks == 2  # 60 s: a 16384-sample block and the rest
    assert mean is not None
    assert mean > 0.98
