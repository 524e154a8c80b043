"""Entropy coders' time against code length: `PYTHONPATH=. python bench/coder_scaling.py [--coders rice,binary]`.

Random sparse lists (one position in four, levels up to ±50) of 10k, 100k and 400k values in one
band, encoded once and decoded once by each coder; prints seconds and values per second. A
decoder whose time per value grows with the length is quadratic somewhere (a server decoding
client blocks must not be). `--coders rice` runs on any version of the repository, so older
commits can be measured the same way.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from typing import Any

import numpy as np

SIZES = (10_000, 100_000, 400_000)


def _coders(names: list[str]) -> dict[str, tuple[Callable[..., Any], Callable[..., Any]]]:
    from sancodec.sparse_stream import decode_sparse, encode_sparse

    out: dict[str, tuple[Callable[..., Any], Callable[..., Any]]] = {}
    for name in names:
        if name == "rice":
            out[name] = (encode_sparse, decode_sparse)
        else:  # imported only when asked for: older commits have no binary coder
            from sancodec.binary_stream import decode_binary, encode_binary

            out[name] = (encode_binary, decode_binary)
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coders", default="rice,binary")
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    print("| coder | values | code bytes | encode s | decode s | decoded values/s |")
    print("|---|---|---|---|---|---|")
    for name, (encode, decode) in _coders(args.coders.split(",")).items():
        for n in SIZES:
            positions = np.sort(rng.choice(4 * n, n, replace=False))
            levels = rng.integers(1, 51, n) * rng.choice([-1, 1], n)
            t0 = time.perf_counter()
            data = encode(positions, levels, 0, [4 * n])
            t1 = time.perf_counter()
            p, lv = decode(data, n, 0, [4 * n])
            t2 = time.perf_counter()
            assert np.array_equal(p, positions)
            assert np.array_equal(lv, levels)
            print(f"| {name} | {n:,} | {len(data):,} | {t1 - t0:.2f} | {t2 - t1:.2f} | {n / (t2 - t1):,.0f} |",
                  flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
