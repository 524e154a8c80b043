"""The `sancodec` command line against a real server, on real recordings in every input format."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from cli_runner import CliRun

from recordings import read_recording, write_recording
from sancodec import Codebook, read_sanc
from sancodec.header import FORMAT_VERSION

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "data" / "demo" / "mitdb100_excerpt.hea"


def test_encode_inspect_decode_compare_plot(tmp_path: Path, address: str, run: CliRun) -> None:
    sanc = tmp_path / "demo.sanc"
    code, out, _ = run("--json", "encode", str(DEMO), "-o", str(sanc), "--server", address)
    assert code == 0
    summary = json.loads(out)
    assert summary["model"] == "ecg/1"
    assert [c["channel"] for c in summary["channels"]] == ["MLII", "V5"]
    assert all(0 < c["bits_per_sample"] < 2 and c["prdn_percent"] < 30 for c in summary["channels"])
    code, out, _ = run("--json", "inspect", str(sanc))
    inspected = json.loads(out)
    assert inspected["block_count"] == summary["blocks"] == 11
    assert inspected["channels"][0]["bits_per_sample"] == pytest.approx(
        summary["channels"][0]["bits_per_sample"]
    )
    for suffix in (".npy", ".csv", ".hea", ".edf"):
        target = tmp_path / f"offline{suffix}"
        assert run("decode", str(sanc), "-o", str(target))[0] == 0
    assert (
        run(
            "decode",
            str(sanc),
            "--server",
            address,
            "-o",
            str(tmp_path / "served.npy"),
        )[0]
        == 0
    )
    assert np.allclose(
        np.load(tmp_path / "offline.npy"), np.load(tmp_path / "served.npy"), atol=1e-6
    )
    wfdb_back = read_recording(tmp_path / "offline.hea")
    assert wfdb_back.sample_rate_hz == 360.0
    assert [c.name for c in wfdb_back.channels] == ["MLII", "V5"]
    code, out, _ = run("--json", "compare", str(DEMO), str(tmp_path / "offline.hea"))
    assert code == 0
    fidelity = json.loads(out)
    assert fidelity["channels"][0]["prdn_percent"] == pytest.approx(
        summary["channels"][0]["prdn_percent"], rel=0.02
    )
    assert run("plot", str(sanc), "--original", str(DEMO), "-o", str(tmp_path / "p.png"))[0] == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    ("relative", "extra", "model"),
    [
        ("edf/eegmat/Subject00_2.edf", ["--channels", "0", "--sample-rate-hz", "173.61"], "eeg"),
        ("csv/bidmc/bidmc_01_Signals.csv", ["--channels", "II", "--sample-rate-hz", "360"], "ecg"),
        ("bonn_eeg/Z/Z001.txt", [], "eeg"),
    ],
)
def test_every_input_format_encodes(
    tmp_path: Path,
    address: str,
    run: CliRun,
    shared_data: Path,
    relative: str,
    extra: list[str],
    model: str,
) -> None:
    code, out, err = run(
        "--json",
        "encode",
        str(shared_data / relative),
        "-o",
        str(tmp_path / "x.sanc"),
        "--server",
        address,
        "--model",
        model,
        *extra,
    )
    assert code == 0, err
    assert json.loads(out)["blocks"] > 0


def test_npy_input_needs_its_rate(tmp_path: Path, address: str, run: CliRun) -> None:
    write_recording(read_recording(DEMO, sampto=5000), tmp_path / "x.npy")
    code, _, err = run(
        "encode",
        str(tmp_path / "x.npy"),
        "-o",
        str(tmp_path / "x.sanc"),
        "--server",
        address,
    )
    assert code == 2
    assert "sample_rate_hz" in err or "sample rate" in err
    code, out, _ = run(
        "--json",
        "encode",
        str(tmp_path / "x.npy"),
        "--sample-rate-hz",
        "360",
        "-o",
        str(tmp_path / "x.sanc"),
        "--server",
        address,
    )
    assert code == 0
    assert json.loads(out)["channels"][1]["bits_per_sample"] > 0


def test_errors_are_one_line_with_meaningful_exit_codes(
    tmp_path: Path, address: str, run: CliRun, shared_data: Path
) -> None:
    code, _, err = run(
        "encode",
        str(tmp_path / "missing.hea"),
        "-o",
        str(tmp_path / "x.sanc"),
        "--server",
        address,
    )
    assert code == 2
    assert err.count("\n") == 1
    assert "missing" in err
    bonn = str(shared_data / "bonn_eeg" / "Z" / "Z001.txt")
    code, _, err = run("encode", bonn, "-o", str(tmp_path / "x.sanc"), "--server", address)
    assert code == 2
    assert "360 Hz" in err
    assert "173.61 Hz" in err
    code, _, err = run("models", "--server", "127.0.0.1:1", "--timeout", "1")
    assert code == 3
    assert "127.0.0.1:1" in err
    code, _, err = run(
        "encode",
        str(DEMO),
        "-o",
        str(tmp_path / "x.sanc"),
        "--server",
        address,
        "--model",
        "nope",
    )
    assert code == 2
    assert "no model named 'nope'" in err


def test_a_damaged_file_names_its_block_and_salvage_recovers(
    tmp_path: Path, address: str, run: CliRun
) -> None:
    sanc = tmp_path / "d.sanc"
    assert run("encode", str(DEMO), "-o", str(sanc), "--server", address)[0] == 0
    data = bytearray(sanc.read_bytes())
    data[3 * len(data) // 4] ^= 0x55  # in a later block: the header holds the tables
    sanc.write_bytes(bytes(data))
    code, _, err = run("decode", str(sanc), "-o", str(tmp_path / "d.npy"))
    assert code == 4
    assert "block" in err
    code, _, err = run("decode", str(sanc), "--salvage", "-o", str(tmp_path / "d.npy"))
    assert code == 0
    assert "damaged" in err
    assert 0 < np.load(tmp_path / "d.npy").shape[1] < 43200


def _hand_made(header: bytes, blocks: list[bytes]) -> bytes:
    """A .sanc file with valid checksums around whatever messages it is given."""
    import os
    import zlib

    from sancodec.sancfile import SIGNATURE

    file_id = os.urandom(16)
    out = SIGNATURE + file_id
    for kind, payload in [(b"H", header)] + [(b"B", b) for b in blocks]:
        framed = kind + bytes([len(payload)]) if len(payload) < 128 else b""
        assert framed, "keep hand-made records under 128 bytes"
        framed += payload
        out += framed + zlib.crc32(framed, zlib.crc32(file_id)).to_bytes(4, "little")
    return out


def test_sanc_bombs_and_splices_fail_with_one_line(
    tmp_path: Path, address: str, run: CliRun
) -> None:
    from sancodec.sancfile import PREAMBLE_BYTES, SancReader
    from sancodec.v1 import codes_pb2

    header = codes_pb2.SancHeader(
        format_version=5, model=codes_pb2.ModelRef(name="x", version="1"), sample_rate_hz=360.0,
        codebook=Codebook((np.ones(1, np.float32),)).to_proto(),
        block_length=16, channels=[codes_pb2.ChannelInfo(name="c", units="mV")],
    )  # fmt: skip
    bomb = codes_pb2.EncodedBlock(start_sample=0, sample_count=1 << 26)  # 2^26 samples, 6 bytes
    wide = codes_pb2.SancHeader()
    wide.CopyFrom(header)
    wide.block_length = 1 << 26
    for name, data in [("block", _hand_made(header.SerializeToString(), [bomb.SerializeToString()])),
                       ("header", _hand_made(wide.SerializeToString(), []))]:  # fmt: skip
        path = tmp_path / f"{name}.sanc"
        path.write_bytes(data)
        assert len(data) < 200
        code, _, err = run("decode", str(path), "-o", str(tmp_path / "b.npy"))
        assert code == 4, err
        assert "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    first, second = tmp_path / "a.sanc", tmp_path / "b.sanc"
    assert run("encode", str(DEMO), "-o", str(first), "--server", address)[0] == 0
    assert run("encode", str(DEMO), "-o", str(second), "--server", address)[0] == 0
    one, other = first.read_bytes(), second.read_bytes()
    cut = SancReader(one)._offset  # where the header record ends
    assert one[PREAMBLE_BYTES : cut - 4] == other[PREAMBLE_BYTES : cut - 4]  # the same header
    spliced = tmp_path / "s.sanc"
    spliced.write_bytes(one[:cut] + other[cut:])  # same header bytes, another file's blocks
    code, _, err = run("decode", str(spliced), "-o", str(tmp_path / "s.npy"))
    assert code == 4
    assert "spliced" in err
    code, _, err = run("decode", str(spliced), "--salvage", "-o", str(tmp_path / "s.npy"))
    assert "no intact block" in err  # salvage keeps none of the foreign blocks


def test_stream_shows_live_blocks(tmp_path: Path, address: str, run: CliRun) -> None:
    code, out, _ = run(
        "stream",
        str(DEMO),
        "--speed",
        "200",
        "--server",
        address,
        "-o",
        str(tmp_path / "s.sanc"),
    )
    assert code == 0
    assert sum(line.startswith("t=") for line in out.splitlines()) == 11
    assert "bit/sample" in out


def test_the_entry_point_runs(address: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "client", "health", "--server", address],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "SERVING" in done.stdout


def test_missing_samples_are_refused_unless_filled(
    tmp_path: Path, address: str, run: CliRun
) -> None:
    from client.commands import load_recording
    from recordings import Recording

    demo = read_recording(DEMO, sampto=6000)
    samples = demo.samples.copy()
    samples[0, :3] = np.nan  # a leading gap: nothing to hold, so zero
    samples[1, 100:105] = np.nan
    gappy = tmp_path / "gappy.csv"
    write_recording(Recording(samples, demo.sample_rate_hz, demo.channels), gappy)
    code, _, err = run("encode", str(gappy), "-o", str(tmp_path / "g.sanc"), "--server", address)
    assert code == 2
    assert "8 missing samples" in err
    filled = load_recording(gappy, None, None, fill_missing=True)
    assert filled.missing_count() == 0
    assert filled.samples[0, :3].tolist() == [0.0, 0.0, 0.0]
    assert np.all(filled.samples[1, 100:105] == filled.samples[1, 99])
    assert (
        run(
            "encode",
            str(gappy),
            "--fill-missing",
            "-o",
            str(tmp_path / "g.sanc"),
            "--server",
            address,
        )[0]
        == 0
    )


def test_a_stream_target_and_inspect_with_stored_sizes(
    tmp_path: Path, address: str, run: CliRun
) -> None:
    sanc, out = tmp_path / "s.sanc", tmp_path / "s.npy"
    code, _, err = run(
        "encode", str(DEMO), "-o", str(sanc), "--server", address, "--stream-prdn", "12"
    )
    assert code == 0, err
    assert run("decode", str(sanc), "-o", str(out))[0] == 0
    original = read_recording(DEMO).samples
    decoded = np.load(out)
    error = np.linalg.norm(original - decoded) / np.linalg.norm(
        original - original.mean(axis=1, keepdims=True)
    )
    assert 100 * error == pytest.approx(12, rel=0.3)
    code, text, _ = run("--json", "inspect", str(sanc))
    summary = json.loads(text)
    contents = read_sanc(sanc)
    assert (
        summary["code_bytes"]
        == sum(b.stored_bytes for b in contents.blocks)
        == contents.trailer.code_bytes
    )
    assert summary["format_version"] == FORMAT_VERSION == 5
