from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

FIT = [
    "fit",
    "--paper-split",
    "--kernel-sizes",
    "32",
    "--activation",
    "extrema",
    "--epochs",
    "3",
    "--device",
    "cpu",
]


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=240, check=False)


def test_fit_writes_report_checkpoint_and_figures(tmp_path: Path, shared_data: Path) -> None:
    record = shared_data / "wfdb" / "mitdb" / "100.hea"
    done = _run(
        [sys.executable, "-m", "training", *FIT, str(record), "--out", str(tmp_path / "run")],
        Path.cwd(),
    )
    assert done.returncode == 0, done.stderr
    report = json.loads((tmp_path / "run" / "report.json").read_text())
    assert report["windows"] == {"train": 6, "val": 2, "test": 4}
    assert 0 < report["test"]["flithos"] < 2
    assert report["config"]["kernel_sizes"] == [32]
    for name in ("checkpoint.pt", "kernels.png", "reconstruction.png"):
        assert (tmp_path / "run" / name).stat().st_size > 1000


def test_data_parallel_matches_one_process(tmp_path: Path, shared_data: Path) -> None:
    """2 gloo processes, each with half of every batch of 2, end with the single-process weights."""
    record = str(shared_data / "wfdb" / "mitdb" / "100.hea")
    single = _run(
        [sys.executable, "-m", "training", *FIT, record, "--out", str(tmp_path / "one")], Path.cwd()
    )
    assert single.returncode == 0, single.stderr
    torchrun = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
    ]
    parallel = _run(
        [*torchrun, "-m", "training", *FIT, record, "--out", str(tmp_path / "two")], Path.cwd()
    )
    assert parallel.returncode == 0, parallel.stderr[-3000:]
    one = torch.load(tmp_path / "one" / "checkpoint.pt")["state_dict"]
    two = torch.load(tmp_path / "two" / "checkpoint.pt")["state_dict"]
    assert one.keys() == two.keys()
    for key in one:
        assert torch.allclose(one[key], two[key], atol=1e-5), key
    report = json.loads((tmp_path / "two" / "report.json").read_text())
    assert (
        report["best_epoch"]
        == json.loads((tmp_path / "one" / "report.json").read_text())["best_epoch"]
    )


def test_errors_are_one_clear_line(tmp_path: Path) -> None:
    done = _run([sys.executable, "-m", "training", "fit", str(tmp_path / "nope.hea")], Path.cwd())
    assert done.returncode == 2
    assert "nope" in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("text", ["64", "32,64", "1:10:4"])
def test_size_lists(text: str) -> None:
    from training.cli import parse_sizes

    assert parse_sizes(text) == {"64": [64], "32,64": [32, 64], "1:10:4": [1, 5, 9]}[text]


def test_sweep_chooses_on_validation_and_draws_the_tradeoff(
    tmp_path: Path, shared_data: Path
) -> None:
    record = str(shared_data / "wfdb" / "mitdb" / "100.hea")
    args = [
        "sweep",
        record,
        "--paper-split",
        "--kernel-sizes",
        "8,32",
        "--activations",
        "extrema,topk_absolutes",
    ]
    done = _run(
        [sys.executable, "-m", "training", *args, "--epochs", "2", "--out", str(tmp_path)],
        Path.cwd(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    rows = [json.loads(line) for line in (tmp_path / "sweep.jsonl").read_text().splitlines()]
    assert {(r["activation"], r["m"]) for r in rows} == {
        (a, m) for a in ("extrema", "topk_absolutes") for m in (8, 32)
    }
    best = json.loads((tmp_path / "best" / "report.json").read_text())
    assert best["validation"]["flithos"] == min(r["val"]["flithos"] for r in rows)
    for name in ("tradeoff.png", "flithos_vs_size.png"):
        assert (tmp_path / name).stat().st_size > 1000


def test_reproduce_writes_the_table_beside_the_paper(tmp_path: Path, shared_data: Path) -> None:
    results, table = tmp_path / "results.jsonl", tmp_path / "table.md"
    args = [
        "reproduce",
        "--data",
        str(shared_data),
        "--sizes",
        "10",
        "--activations",
        "extrema_pool_indices",
    ]
    done = _run(
        [sys.executable, "-m", "training", *args, "--results", str(results), "--table", str(table)],
        Path.cwd(),
    )
    assert done.returncode == 0, done.stderr[-2000:]
    text = table.read_text()
    assert len([line for line in text.splitlines() if "| extrema_pool_indices |" in line]) == 5
    assert (
        "| mitdb | extrema_pool_indices | 10/0.21/0.44/0.49 | 10/0.21/" in text
    )  # paper's cell, then ours
    again = _run(
        [sys.executable, "-m", "training", *args, "--results", str(results), "--table", str(table)],
        Path.cwd(),
    )
    assert again.returncode == 0
    assert len(results.read_text().splitlines()) == 5  # resumed: nothing trained twice
    assert (tmp_path / "mitdb-flithos_vs_size.png").stat().st_size > 1000
