"""`make demo` runs to the end, and what it prints agrees with inspect and compare on its files."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from client.offline import compare, decode_to_recording, inspect_file
from recordings import read_recording

REPO = Path(__file__).resolve().parents[2]


def test_demo_runs_and_reports_what_its_files_hold() -> None:
    done = subprocess.run(
        [sys.executable, "tools/demo.py"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    out = done.stdout
    assert "server stopped with exit code 0 after SIGTERM" in out
    streamed, adapted = out.split("$ sancodec encode", 1)  # the server's code, then --adapt
    original = read_recording(REPO / "data" / "demo" / "mitdb100_excerpt.hea")
    for text, name in ((streamed, "mitdb100.sanc"), (adapted, "mitdb100_adapted.sanc")):
        sanc = REPO / "out" / "demo" / name
        summary = inspect_file(sanc)
        printed = dict(re.findall(r"^  (MLII|V5): ([0-9.]+) bit/sample", text, flags=re.MULTILINE))
        assert set(printed) == {"MLII", "V5"}
        for stats in summary.channels:
            assert float(printed[stats.name]) == round(stats.bits_per_sample, 3)
        fidelity = compare(original, decode_to_recording(sanc)[0])
        prdn = dict(re.findall(r"^  (MLII|V5): .*PRDN ([0-9.]+)%", text, flags=re.MULTILINE))
        for channel in fidelity.channels:
            assert float(prdn[channel.name]) == round(channel.prdn_percent, 2)
    offline = REPO / "out" / "demo" / "decoded_offline.npy"
    served = REPO / "out" / "demo" / "decoded_server.npy"
    same = compare(
        read_recording(offline, sample_rate_hz=360), read_recording(served, sample_rate_hz=360)
    )
    assert same.overall.max_abs_error == 0.0
    assert (REPO / "out" / "demo" / "mitdb100.png").stat().st_size > 10_000
    assert "sancodec_blocks_total" in out
