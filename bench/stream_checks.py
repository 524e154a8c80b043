"""What one check of a stream's kernels costs in the server (sancodec.kernelupdates.Adapter.refit,
the first check: a fit from the model's kernels): seconds on one thread, median of `--repeats`,
on the first `adapt_after_samples` of MLII of each record (MIT-BIH samples 108000 on), and
whether it sends an update.

`PYTHONPATH=. python -m bench.stream_checks [--records 106,208,100,233] [--repeats 5]`
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from recordings import read_recording
from sancodec.bundle import load_bundle
from sancodec.encodergraph import kernel_swapper
from sancodec.kernelupdates import Adapter
from sancodec.plan import CodingPlan
from sancodec.streamcoder import StreamCoder

REPO = Path(__file__).resolve().parents[1]
MITDB = REPO.parent / "shared" / "data" / "wfdb" / "mitdb"
START = 108000


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", default="106,208,100,233")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    bundle = load_bundle(REPO / "models" / "ecg" / "1")
    plan = CodingPlan.from_manifest(bundle.manifest)
    n = bundle.manifest.adapt_after_samples
    swapper = kernel_swapper(bundle, threads=1)
    print("| record | seconds per check (median) | update sent |\n|---|---|---|")
    for record in args.records.split(","):
        # the stream coder asks for its first check once a sample of the next block is in
        x = read_recording(MITDB / f"{record}.hea", sampfrom=START, sampto=START + n + 1)
        coder = StreamCoder([plan], n)
        coder.push(x.samples[:1])
        request = coder.fit_due()
        assert request is not None
        times, sent = [], False
        for _ in range(args.repeats):
            adapter = Adapter(plan, swapper)
            started = time.perf_counter()
            sent = adapter.refit(request) is not None
            times.append(time.perf_counter() - started)
        print(f"| {record} | {statistics.median(times):.3f} | {'yes' if sent else 'no'} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
