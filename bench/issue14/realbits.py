"""Issue #14 check: real payload bits/sample of the residual layer vs pooled wavelet H0.

Tables are fitted on training records (101, 103, 106, 208, 228) through encode_channel's `seen`
(residual-only codes, no spikes, as learn_tables with no detector); scored on 5-minute excerpts
of 100, 105, 200, 210, 233, 234. Usage: python bench/issue14/realbits.py [--heldout REC] [--quick]
"""
import argparse, json, os, sys, time
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
import numpy as np, pywt, wfdb
from sancodec.codes import ChannelCode, ResidualLayer, SanLayer
from sancodec.payload import decode_channel, encode_channel
from sancodec.tables import CodingTables
from training.tables import STEP_OFFSETS, fit_tables

D = '/work/shared/data/wfdb/mitdb/'
SCALE, REF, SAN = 0.2, -6, -19
TRAIN = ('101', '103', '106', '208', '228')
SCORED = ('100', '105', '200', '210', '233', '234')
N = 2048


def rec(r, a=0, b=None):
    return wfdb.rdrecord(D + r, sampfrom=a, sampto=b, channels=[0]).p_signal[:, 0] / SCALE


def blocks(x):
    return [x[i:i + N] for i in range(0, x.size - N + 1, N)]


SIZES = tuple(len(c) for c in pywt.wavedec(np.zeros(N), 'bior4.4', mode='periodization', level=5))


def quantize(b, step_exp):
    co = pywt.wavedec(b - b.mean(), 'bior4.4', mode='periodization', level=5)
    st = 2 ** (step_exp / 8)
    return [np.rint(c / st).astype(np.int64) for c in co]


def code_of(q, step_exp):
    dense = np.concatenate(q)
    (idx,) = np.nonzero(dense)
    san = SanLayer(SAN, np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.int32), 0)
    return ChannelCode(0, san, ResidualLayer(step_exp, idx, dense[idx].astype(np.int32)))


def sweep(records, tables):
    seen = {}
    for r in records:
        for b in blocks(rec(r)):
            for off in STEP_OFFSETS:
                encode_channel(code_of(quantize(b, REF + off), REF + off), tables, 1, 0, SIZES, seen)
    return seen


def learn(records):
    """As training.tables.learn_tables with no spikes: rows and fields, then the row shifts."""
    tables = fit_tables(sweep(records, CodingTables(SAN, REF)), len(SIZES), SAN, REF)
    try:
        from training.tables import with_row_shifts
    except ImportError:  # a version without row shifts
        return tables
    return with_row_shifts(tables, sweep(records, tables).get('row_shift', []))


def h0(qs):
    total = 0.0
    for k in range(len(SIZES)):
        v = np.concatenate([q[k] for q in qs])
        _, cnt = np.unique(v, return_counts=True)
        total += -(cnt * np.log2(cnt / cnt.sum())).sum()
    return total


def score(tables, x, steps, check=True, timing=None):
    bl = blocks(x)
    n = len(bl) * N
    rows = []
    for s in steps:
        qs = [quantize(b, s) for b in bl]
        y = np.concatenate([pywt.waverec([c * 2 ** (s / 8) for c in q], 'bior4.4', mode='periodization') + b.mean()
                            for q, b in zip(qs, bl)])
        xx = np.concatenate(bl)
        prdn = 100 * np.linalg.norm(xx - y) / np.linalg.norm(xx - xx.mean())
        codes = [code_of(q, s) for q in qs]
        t0 = time.perf_counter()
        data = [encode_channel(c, tables, 1, 0, SIZES) for c in codes]
        t1 = time.perf_counter()
        if check:
            back = [decode_channel(d, 0, tables, 1, 0, N, SIZES) for d in data]
            t2 = time.perf_counter()
            assert all(a == b for a, b in zip(back, codes)), 'round trip failed'
            if timing is not None:
                timing['enc'] += t1 - t0; timing['dec'] += t2 - t1; timing['n'] += n
        rows.append((s, prdn, 8 * sum(map(len, data)) / n, h0(qs) / n))
    return rows


def at(rows, target):
    rows = sorted(rows, key=lambda r: r[1])
    p = np.log([r[1] for r in rows])
    ours = np.interp(np.log(target), p, np.log([r[2] for r in rows]))
    base = np.interp(np.log(target), p, np.log([r[3] for r in rows]))
    return np.exp(ours), np.exp(base)


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--heldout', help='learn on the other 4 training records, score on this one (whole)')
    ap.add_argument('--tables', help='cache file for learned tables (json)')
    args = ap.parse_args()
    t = time.time()
    train = [r for r in TRAIN if r != args.heldout]
    if args.tables and os.path.exists(args.tables):
        tables = CodingTables.from_dict(json.load(open(args.tables)))
    else:
        tables = learn(train)
        if args.tables:
            json.dump(tables.to_dict(), open(args.tables, 'w'))
    header = len(tables.to_proto().SerializeToString())
    print(f'learned on {train} in {time.time() - t:.0f}s; tables proto {header} bytes', flush=True)
    targets = (5, 9, 20)
    timing = {'enc': 0.0, 'dec': 0.0, 'n': 0}
    scored = [args.heldout] if args.heldout else SCORED
    steps = list(range(-22, 41, 3))
    allr = []
    for r in scored:
        x = rec(r, 108000, 216000)
        rows = score(tables, x, steps, timing=timing)
        cells = []
        for tg in targets:
            o, b = at(rows, tg)
            allr.append(o / b)
            cells.append(f'PRDN{tg}: {o:.3f} vs H0 {b:.3f} ({100 * (o / b - 1):+.1f}%)')
        print(r, ' | '.join(cells), flush=True)
    print(f'mean ratio {100 * (np.mean(allr) - 1):+.2f}%  max {100 * (np.max(allr) - 1):+.2f}%')
    print(f"encode {timing['n'] / timing['enc']:.0f} samples/s, decode {timing['n'] / timing['dec']:.0f} samples/s")
