"""Per-band ideal code length vs pooled H0, and the payload's overhead, at given steps."""
import json, sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from realbits import *  # noqa
from sancodec.payload import residual_bits, encode_channel
from sancodec.entropy import symbols_of, row_costs
from sancodec.tables import contexts

tables = CodingTables.from_dict(json.load(open(sys.argv[1])))
for r in sys.argv[2].split(','):
    x = rec(r, 108000, 216000); bl = blocks(x); n = len(bl) * N
    for s in map(int, sys.argv[3].split(',')):
        qs = [quantize(b, s) for b in bl]
        ideal = np.zeros(len(SIZES)); h = np.zeros(len(SIZES))
        for k in range(len(SIZES)):
            v = np.concatenate([q[k] for q in qs]); _, cnt = np.unique(v, return_counts=True)
            h[k] = -(cnt * np.log2(cnt / cnt.sum())).sum()
        real = 0; tot_ideal = 0
        sc = tables.step_class(s)
        for q in qs:
            for k, band in enumerate(q):
                ctx = np.zeros(band.size, int) if k == 0 else contexts(q[k-1], band.size, k == 1)
                bc = 0 if k == 0 else len(SIZES) - k
                sym, exc = symbols_of(band)
                for c in range(5):
                    ideal[k] += row_costs(tables.row(sc, bc, c))[sym[ctx == c]].sum()
                ideal[k] += tables.table('escape').bits(exc).sum()
            real += 8 * len(encode_channel(code_of(q, s), tables, 1, 0, SIZES))
        print(r, s, 'per block: ideal', np.round(ideal / len(bl), 1), 'H0', np.round(h / len(bl), 1),
              f'sum {ideal.sum()/len(bl):.1f} vs {h.sum()/len(bl):.1f}; real {real/len(bl):.1f}')
