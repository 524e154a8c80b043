"""`sancodec encode --adapt`: kernels fitted to the recording, carried in the .sanc header."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
from cli_runner import CliRun

from client.cli import main
from sancodec import read_sanc
from sancodec.bundle import find_bundle

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo" / "mitdb100_excerpt.hea"
MODELS = REPO / "models"


def test_adapted_kernels_code_better_and_decode_anywhere(
    tmp_path: Path, address: str, run: CliRun
) -> None:
    shipped, adapted = tmp_path / "shipped.sanc", tmp_path / "adapted.sanc"
    code, out, _ = run("--json", "encode", str(DEMO), "-o", str(shipped), "--server", address,
                       "--fixed-kernels")  # fmt: skip
    assert code == 0
    base = json.loads(out)
    code, out, err = run(
        "--json",
        "encode",
        str(DEMO),
        "-o",
        str(adapted),
        "--adapt",
        "--models",
        str(MODELS),
    )
    assert code == 0, err
    mine = json.loads(out)
    assert mine["model"] == base["model"] == "ecg/1"
    # a file is coded whole, in blocks of 8 of the model's
    assert read_sanc(adapted).header.block_length == 8 * 4096
    assert mine["blocks"] == -(-base["blocks"] // 8)
    assert 0 < mine["flithos_mean"] < base["flithos_mean"]
    for b, m in zip(base["channels"], mine["channels"], strict=True):
        # same steps, kernels of this very recording: a much closer fit for about the same bits
        assert m["prdn_percent"] < 0.8 * b["prdn_percent"]
        assert m["bits_per_sample"] < 1.25 * b["bits_per_sample"]
    header = read_sanc(adapted).header
    kernels = find_bundle(MODELS, "ecg").manifest.codebook.kernels
    assert [k.size for k in header.codebook.kernels] == [k.size for k in kernels]
    assert not np.allclose(header.codebook.kernels[0], kernels[0])
    assert "adapted to this recording" in header.metadata["kernels"]
    # kernels quantized to 8 bits of their peak: a few bits a weight in the header
    assert all(k.ByteSize() < k.size for k in header.codebook.to_proto().kernels)
    # the server decodes it with the header's kernels, exactly as the offline decoder does
    offline, served = tmp_path / "offline.npy", tmp_path / "served.npy"
    assert run("decode", str(adapted), "-o", str(offline))[0] == 0
    assert run("decode", str(adapted), "-o", str(served), "--server", address)[0] == 0
    np.testing.assert_allclose(np.load(served), np.load(offline), atol=1e-4)


def test_adapt_refuses_what_it_cannot_fit(tmp_path: Path, run: CliRun) -> None:
    out = str(tmp_path / "x.sanc")
    models = ("--models", str(MODELS))
    code, _, err = run("encode", str(DEMO), "-o", out, "--adapt", *models, "--model", "nope")
    assert code == 2
    assert "no model named 'nope'" in err
    code, _, err = run("encode", str(DEMO), "-o", out, "--adapt", *models, "--rounds", "0")
    assert code == 2
    assert "--rounds must be at least 1" in err
    short = tmp_path / "short.npy"
    np.save(short, np.sin(np.arange(500) / 20.0)[None, :])
    code, _, err = run(
        "encode", str(short), "-o", out, "--adapt", *models, "--sample-rate-hz", "360"
    )
    assert code == 2
    assert "needs at least 2048 samples" in err
    code, _, err = run(
        "encode", str(short), "-o", out, "--adapt", *models, "--sample-rate-hz", "250"
    )
    assert code == 2
    assert "360 Hz" in err
    for bad in ("1024", str(2**21)):
        code, _, err = run(
            "encode", str(DEMO), "-o", out, "--adapt", *models, "--block-length", bad
        )
        assert code == 2
        assert "--block-length must be in [4096, 524288] for model ecg/1 and 2 channel(s)" in err
    code, _, err = run("encode", str(DEMO), "-o", out, "--block-length", "4096")
    assert code == 2
    assert "--block-length goes with --adapt" in err
    assert "Traceback" not in err


def test_kernels_that_do_not_pay_are_left_out(shared_data: Path, tmp_path: Path) -> None:
    """On PVC-rich MIT-BIH 233, kernels fitted to the record cost more bits than they save at
    the shipped steps: --adapt codes it with the residual layer alone and a 1-weight codebook."""
    from recordings import read_recording
    from sancodec.adaptation import encode_adapted, write_sanc

    record = read_recording(shared_data / "wfdb" / "mitdb" / "233.hea", sampto=43200)
    code = encode_adapted(
        find_bundle(MODELS, "ecg"), record.samples[:1], record.sample_rate_hz, record.channels[:1]
    )
    assert code.header.metadata["kernels"].startswith("not used")
    assert [k.size for k in code.header.codebook.kernels] == [1]
    assert all(c.san.spike_count == 0 for b in code.blocks for c in b.channels)
    path = tmp_path / "233.sanc"
    write_sanc(code, path)
    assert main(["decode", str(path), "-o", str(tmp_path / "233.npy")]) == 0
    decoded = np.load(tmp_path / "233.npy")
    x = record.samples[0]
    prdn = 100 * np.linalg.norm(decoded[0] - x) / np.linalg.norm(x - x.mean())
    assert prdn < 15  # the residual layer at the shipped step alone keeps the waveform


def test_channel_offsets_do_not_leak_into_scales(tmp_path: Path) -> None:
    """Each channel's scale is its own spread, whatever the channels' baselines."""
    from recordings import read_recording
    from sancodec.adaptation import encode_adapted, write_sanc

    record = read_recording(DEMO, sampto=8192)
    shifted = record.samples + np.array([[5.0], [-3.0]])  # mV: far off the usual baseline
    code = encode_adapted(find_bundle(MODELS, "ecg"), shifted, 360.0, record.channels, rounds=1)
    scales = [c.scale for c in code.header.channels]
    np.testing.assert_allclose(scales, shifted.std(axis=1), rtol=1e-3)
    path = tmp_path / "shifted.sanc"
    write_sanc(code, path)
    assert main(["decode", str(path), "-o", str(tmp_path / "shifted.npy")]) == 0
    decoded = np.load(tmp_path / "shifted.npy")
    for x, y in zip(shifted, decoded, strict=True):
        assert 100 * np.linalg.norm(y - x) / np.linalg.norm(x - x.mean()) < 20


def test_quality_targets_are_checked_before_any_fitting(tmp_path: Path, run: CliRun) -> None:
    out, models = str(tmp_path / "x.sanc"), ("--adapt", "--models", str(MODELS))
    code, _, err = run("encode", str(DEMO), "-o", out, *models, "--model", "ecg-lowrate",
                       "--max-prdn", "5")  # fmt: skip
    assert code == 2
    assert "has no residual layer" in err
    code, _, err = run("encode", str(DEMO), "-o", out, *models, "--max-prdn", "-1")
    assert code == 2
    assert "must be positive" in err
    assert not Path(out).exists()


def test_adapt_needs_no_torch(tmp_path: Path) -> None:
    """`sancodec encode --adapt` in an interpreter where torch and training cannot be imported."""
    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('torch', 'training'):\n"
        "            raise ImportError(f'{name} is blocked')\n"
        "sys.meta_path.insert(0, Block())\n"
        "from client.cli import main\n"
        "status = main(sys.argv[1:])\n"
        "assert not {'torch', 'training'} & set(sys.modules), 'torch loaded'\n"
        "sys.exit(status)\n"
    )
    out = tmp_path / "adapted.sanc"
    args = ["encode", str(DEMO), "-o", str(out), "--adapt", "--models", str(MODELS)]
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    header = read_sanc(out).header
    assert "adapted to this recording" in header.metadata["kernels"]
    blocked = subprocess.run([sys.executable, "-c", code.replace("from client.cli", "import torch\nfrom client.cli")],
                             cwd=REPO, capture_output=True, text=True, check=False)  # fmt: skip
    assert "torch is blocked" in blocked.stderr  # the blocker does block


def test_adapt_without_onnx_runtime_says_what_to_install(tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "sys.modules['onnxruntime'] = None\n"  # as if it were not installed
        "from client.cli import main\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    args = ["encode", str(DEMO), "-o", str(tmp_path / "x.sanc"), "--adapt", "--models", str(MODELS)]
    done = subprocess.run([sys.executable, "-c", code, *args], cwd=REPO, capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "onnxruntime is not installed: pip install 'sancodec[client]'" in done.stderr
    assert "Traceback" not in done.stderr
