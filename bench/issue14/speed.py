"""Encode/decode speed of encode_channel/decode_channel (samples/s, best of 3) on record 233's
excerpt at steps -6, 10, 22. Usage: speed.py TABLES.json (tables from realbits.py --tables)."""
import json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from realbits import *  # noqa

tables = CodingTables.from_dict(json.load(open(sys.argv[1])))
x = rec('233', 108000, 216000)
codes = [code_of(quantize(b, s), s) for s in (-6, 10, 22) for b in blocks(x)]
n = len(codes) * N
best_e = best_d = 1e9
for _ in range(3):
    t0 = time.perf_counter(); data = [encode_channel(c, tables, 1, 0, SIZES) for c in codes]
    t1 = time.perf_counter(); back = [decode_channel(d, 0, tables, 1, 0, N, SIZES) for d in data]
    t2 = time.perf_counter()
    best_e, best_d = min(best_e, t1 - t0), min(best_d, t2 - t1)
assert all(a == b for a, b in zip(back, codes))
from sancodec.payload import residual_bits
t0 = time.perf_counter()
for c in codes:
    dense = np.zeros(N, dtype=np.int64); dense[c.residual.indices] = c.residual.levels
    residual_bits(dense, SIZES, tables, c.residual.step_exp)
t_rb = time.perf_counter() - t0
print(f'encode {n / best_e:.0f} samples/s, decode {n / best_d:.0f} samples/s, residual_bits {n / t_rb:.0f} samples/s')
