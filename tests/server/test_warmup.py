"""A model is warm before it serves: streaming through it compiles none of the coder's loops."""

from __future__ import annotations

import json
import os
import subprocess
import sys

from server_harness import REPO

# In a fresh interpreter: a server of the shipped `ecg` model; then 60 s of a real two-lead recording
# through Encode (the stream fits its own kernels after 45 s) and its blocks through Decode. It
# prints every compiled loop that gained a signature on the way.
SCRIPT = """
import importlib, json, pathlib, pkgutil, shutil, tempfile
import grpc, numba, numpy as np, wfdb
import sancodec
from server_harness import REPO, encode_requests, start
from sancodec.v1 import codec_pb2, codec_pb2_grpc

def signatures():
    found = {}
    for module in pkgutil.iter_modules(sancodec.__path__):
        for name, value in vars(importlib.import_module("sancodec." + module.name)).items():
            if isinstance(value, numba.core.registry.CPUDispatcher):
                found[module.name + "." + name] = [str(s) for s in value.signatures]
    return found

# the ecg model alone: no other model's warm-up builds a loop that its streams need
models = pathlib.Path(tempfile.mkdtemp())
shutil.copytree(REPO / "models" / "ecg", models / "ecg")
running = start(models=models)
before = signatures()
x = wfdb.rdrecord(str(REPO.parent / "shared/data/wfdb/mitdb/100"), sampto=360 * 60)
signal = x.p_signal.T.astype(np.float32)
with grpc.insecure_channel(running.address) as channel:
    stub = codec_pb2_grpc.CodecServiceStub(channel)
    replies = list(stub.Encode(encode_requests(signal, 997)))
    blocks = [r.block for r in replies if r.WhichOneof("payload") == "block"]
    config = codec_pb2.DecodeConfig(model="ecg", channel_count=2)
    requests = [codec_pb2.DecodeRequest(config=config)]
    requests += [codec_pb2.DecodeRequest(block=b) for b in blocks]
    decoded = sum(r.chunk.sample_count for r in stub.Decode(iter(requests)))
running.stop()
shutil.rmtree(models)
after = signatures()
updates = sum(len(b.kernels) > 0 for b in blocks)
new = {k: sorted(set(v) - set(before.get(k, []))) for k, v in after.items()}
print(json.dumps({"decoded": decoded, "updates": updates,
                  "new": {k: v for k, v in new.items() if v}}))
"""


def test_streaming_compiles_nothing_after_the_warm_up() -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=REPO,
        env=os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["decoded"] == 360 * 60
    assert result["updates"] >= 1  # the stream's own kernels were fitted and used
    assert result["new"] == {}
