"""`sancodec encode --adapt` on MIT-BIH 100, 105 and 233 (samples 108000-216000, MLII) at a few
residual steps: whole-.sanc bits per sample, PRDN and seconds per encode (fitting and coding).

`PYTHONPATH=. python bench/adapt_fit.py [--records 100,105,233] [--steps 0.3,1.2,5.0]`
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import time
from pathlib import Path

from recordings import read_recording
from sancodec import decode
from sancodec.adaptation import encode_adapted
from sancodec.bundle import load_bundle
from sancodec.header import ChannelInfo
from sancodec.metrics import prdn
from sancodec.quantization import Quantizer
from sancodec.sancfile import SancWriter

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "wfdb" / "mitdb"
SPAN = (108000, 216000)


def point(bundle_dir: Path, record: str, step: float) -> dict[str, float | str]:
    bundle = load_bundle(bundle_dir)
    x = read_recording(MITDB / f"{record}.hea", sampfrom=SPAN[0], sampto=SPAN[1]).samples[0]
    m = dataclasses.replace(bundle.manifest, residual_step_exp=Quantizer.from_step(step).step_exp)
    started = time.perf_counter()
    code = encode_adapted(dataclasses.replace(bundle, manifest=m), x[None, :], 360.0,
                          (ChannelInfo("MLII", "mV"),))  # fmt: skip
    seconds = time.perf_counter() - started
    file = io.BytesIO()
    with SancWriter(file, code.header) as writer:
        for block in code.blocks:
            writer.write(block)
    x_hat = code.header.to_physical(decode(code.blocks, code.header.codebook, 1))[0]
    return {"record": record, "step": step, "bits_per_sample": 8 * len(file.getvalue()) / x.size,
            "prdn_percent": prdn(x, x_hat), "seconds": seconds,
            "kernels": code.header.metadata["kernels"].split(":")[0]}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", default="100,105,233")
    parser.add_argument("--steps", default="0.3,1.2,5.0")
    parser.add_argument("--models", type=Path, default=REPO / "models" / "ecg" / "1")
    args = parser.parse_args()
    for record in args.records.split(","):
        for step in (float(s) for s in args.steps.split(",")):
            print(json.dumps(point(args.models, record, step)), flush=True)


if __name__ == "__main__":
    main()
