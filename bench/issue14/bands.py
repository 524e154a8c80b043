"""Per-band ideal code length (the coder's passes and rows) vs pooled H0, per block.
Usage: bands.py TABLES.json REC[,REC] STEP[,STEP]"""
import json, sys, os
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import numpy as np
from realbits import *  # noqa
from sancodec.entropy import symbols_of, row_costs
from sancodec.payload import _band_class, _passes

tables = CodingTables.from_dict(json.load(open(sys.argv[1])))
for r in sys.argv[2].split(','):
    x = rec(r, 108000, 216000); bl = blocks(x)
    for s in map(int, sys.argv[3].split(',')):
        qs = [quantize(b, s) for b in bl]
        ideal = np.zeros((len(SIZES), 2)); h = np.zeros(len(SIZES)); real = 0
        sc = tables.step_class(s)
        for k in range(len(SIZES)):
            v = np.concatenate([q[k] for q in qs]); _, cnt = np.unique(v, return_counts=True)
            h[k] = -(cnt * np.log2(cnt / cnt.sum())).sum()
        for q in qs:
            for k in range(len(SIZES)):
                for p, (values, ctx) in enumerate(_passes(q, k)):
                    sym, exc = symbols_of(values)
                    for c in range(5):
                        ideal[k, p] += row_costs(tables.row(sc, _band_class(k, len(SIZES)), c))[sym[ctx == c]].sum()
                    ideal[k, p] += tables.table('escape').bits(exc).sum()
            real += 8 * len(encode_channel(code_of(q, s), tables, 1, 0, SIZES))
        nb = len(bl)
        print(r, s, 'even', np.round(ideal[:, 0] / nb, 1), 'odd', np.round(ideal[:, 1] / nb, 1), '\n   sum', np.round(ideal.sum(1) / nb, 1),
              'H0', np.round(h / nb, 1), f'total {ideal.sum()/nb:.1f} vs {h.sum()/nb:.1f}; real {real/nb:.1f}')
