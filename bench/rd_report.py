"""Tables, plots and the generated doc sections of bench/rate_distortion.py (`make bench`)."""

from __future__ import annotations

import math
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import scipy.interpolate

from bench import paper_metric
from bench.baselines import interpolate_bps_at_prdn, interpolate_prdn_at_bps, pareto_envelope

SERVED = "served: ecg, streaming blocks"  # kernels fitted to the stream, as the server does
FIXED = "served: ecg, model's kernels (--fixed-kernels)"
RESIDUAL = "served: residual layer alone"
SHORT_BLOCKS = "served: ecg in 2048-sample blocks"  # ecg's blocks before the one code format
ARCHIVE = "archive: --adapt .sanc"
LOWRATE = "served: ecg-lowrate (SAN only)"
WAVELET = "wavelet bior4.4 L5 (H0)"
BIOLEPTIC = "bioleptic (best option)"
HEADLINE = (SERVED, FIXED, ARCHIVE, WAVELET, BIOLEPTIC)
DOCS = Path(__file__).resolve().parents[1] / "docs"
PRDN_TARGETS = (5.0, 9.0, 20.0)
BPS_TARGETS = (0.1, 0.25, 0.5)

__all__ = ["bd_rate", "plot", "replace_section", "report"]

Results = list[dict[str, Any]]


def bd_rate(test: list[dict], anchor: list[dict]) -> float:
    """Bjøntegaard rate difference (%) of `test` vs `anchor`: pchip of log10(bps) over
    SNR_N = -20 log10(PRDN/100) on each lower envelope, mean over the overlapping SNR range."""

    def curve(points: list[dict]) -> tuple[np.ndarray, np.ndarray]:
        env = pareto_envelope(points)
        snr = np.array([-20 * math.log10(d / 100) for _, d in env])
        lr = np.array([math.log10(b) for b, _ in env])
        return snr, lr  # snr increases with bps

    s1, r1 = curve(test)
    s0, r0 = curve(anchor)
    if s1.size < 2 or s0.size < 2:
        return math.nan
    lo, hi = max(s1[0], s0[0]), min(s1[-1], s0[-1])
    if hi <= lo:
        return math.nan
    grid = np.linspace(lo, hi, 200)
    p1 = scipy.interpolate.PchipInterpolator(s1, r1)(grid)
    p0 = scipy.interpolate.PchipInterpolator(s0, r0)(grid)
    return float((10 ** np.mean(p1 - p0) - 1) * 100)


def summarize(points: list[dict]) -> list[float]:
    """b/s at each PRDN target, then PRDN at each rate target (– outside the curve)."""
    return [interpolate_bps_at_prdn(points, t) for t in PRDN_TARGETS] + [
        interpolate_prdn_at_bps(points, t) for t in BPS_TARGETS
    ]


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "–"
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}"


def table(rows: dict[str, list[float]]) -> str:
    head = ["method"] + [f"bps@PRDN {t:g}%" for t in PRDN_TARGETS]
    head += [f"PRDN%@{t:g} bps" for t in BPS_TARGETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for name, vals in rows.items():
        lines.append("| " + " | ".join([name] + [_fmt(v) for v in vals]) + " |")
    return "\n".join(lines)


def plot(results: Results, path: Path) -> None:
    """One log-log panel per record: PRDN against bits per sample, every method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(2, math.ceil(len(results) / 2), figsize=(13, 8), squeeze=False)
    for ax, r in zip(axes.flat, results, strict=False):
        for name, raw in r["methods"].items():
            pts = sorted(raw, key=lambda p: p["bps"])
            ax.loglog([p["bps"] for p in pts], [p["prdn"] for p in pts], "-" if name in HEADLINE else ":",
                      marker="o", ms=2.5, label=name)  # fmt: skip
        for name, bps in r["lossless"].items():
            ax.axvline(bps, color="grey", lw=0.8, ls="-.", label=f"{name} (lossless)")
        ax.set_xlim(0.03, 6)
        ax.set_ylim(0.5, 100)
        ax.set_title(f"MIT-BIH {r['record']}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("bits per sample")
    for ax in axes[:, 0]:
        ax.set_ylabel("PRDN (%)")
    axes.flat[0].legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _headline(results: Results) -> list[str]:
    head = ["record", "codec"] + [f"b/s @PRDN {t:g}%" for t in PRDN_TARGETS]
    head += [f"PRDN % @{t:g} b/s" for t in BPS_TARGETS]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in results:
        for name in HEADLINE:
            cells = [_fmt(v) for v in summarize(r["methods"][name])]
            lines.append(f"| {r['record']} | {name} | " + " | ".join(cells) + " |")
        lines.append(
            f"| {r['record']} | FLAC (lossless) | {r['lossless']['FLAC']:.3f} at PRDN 0 | | | | | |"
        )
    return lines


def _cell(a: float, b: float) -> str:
    """a against b: both b/s, and the change."""
    return f"{a:.3f} vs {b:.3f} ({100 * (a / b - 1):+.0f}%)"


def _served_and_peer(m: dict[str, list[dict]], prdn_percent: float) -> tuple[float, float]:
    """The served path's b/s at this PRDN, and the better of the wavelet H0's and bioleptic's."""
    peers = (interpolate_bps_at_prdn(m[n], prdn_percent) for n in (WAVELET, BIOLEPTIC))
    return interpolate_bps_at_prdn(m[SERVED], prdn_percent), min(peers)


def _checks(results: Results) -> list[str]:
    """Issue #14's checks, per record: the residual layer alone (its payloads, as H0 has no
    framing either) against the wavelet's H0, and the served path (every block message) against
    the better of the H0 and bioleptic (b/s, change)."""
    lines = ["| record | residual layer alone (payloads) vs H0 @5% / @9% / @20% | served (block messages) vs min(H0, bioleptic) @9% / @20% |",
             "|---|---|---|"]  # fmt: skip
    for r in results:
        m = r["methods"]
        res = []
        layer = [{**p, "bps": p["payload_bps"]} for p in m[RESIDUAL]]  # the layer, unframed
        for t in PRDN_TARGETS:
            a, h = interpolate_bps_at_prdn(layer, t), interpolate_bps_at_prdn(m[WAVELET], t)
            res.append(_cell(a, h))
        srv = [_cell(*_served_and_peer(m, t)) for t in (9.0, 20.0)]
        lines.append(f"| {r['record']} | {' / '.join(res)} | {' / '.join(srv)} |")
    return lines


def _adaptation_checks(results: Results) -> list[str]:
    """Issue #16's checks: the served path (kernels fitted to the stream, updates included)
    against the better of the H0 and bioleptic and against the residual layer alone (every block
    message), per record and pooled over the records (equal lengths: the mean b/s)."""
    lines = ["| record | served vs min(H0, bioleptic) @9% / @20% | served vs residual layer alone @9% / @20% |",
             "|---|---|---|"]  # fmt: skip
    pooled: dict[str, list[float]] = {}
    for r in results:
        m, peer, alone = r["methods"], [], []
        for t in (9.0, 20.0):
            a, best = _served_and_peer(m, t)
            residual = interpolate_bps_at_prdn(m[RESIDUAL], t)
            peer.append(_cell(a, best))
            alone.append(_cell(a, residual))
            for key, value in ((f"served{t}", a), (f"peer{t}", best), (f"alone{t}", residual)):
                pooled.setdefault(key, []).append(value)
        lines.append(f"| {r['record']} | {' / '.join(peer)} | {' / '.join(alone)} |")
    mean = {k: float(np.mean(v)) for k, v in pooled.items()}
    lines.append(
        "| pooled | "
        + " / ".join(_cell(mean[f"served{t}"], mean[f"peer{t}"]) for t in (9.0, 20.0))
        + " | "
        + " / ".join(_cell(mean[f"served{t}"], mean[f"alone{t}"]) for t in (9.0, 20.0))
        + " |"
    )
    return lines


def _speed(results: Results) -> list[str]:
    lines = [
        "| codec | detect samples/s | encode samples/s | decode samples/s |",
        "|---|---|---|---|",
    ]
    for name in results[0]["speed"]:
        k = {key: float(_mean(results, "speed", name, key)) for key in results[0]["speed"][name]}
        detect = f"{k['detect']:,.0f}" if "detect" in k else "–"
        lines.append(f"| {name} | {detect} | {k['encode']:,.0f} | {k['decode']:,.0f} |")
    return lines


def _per_record(results: Results) -> list[str]:
    out = []
    for r in results:
        rows = {n: summarize(points) for n, points in r["methods"].items()}
        steps = []
        for n in (SERVED, FIXED, ARCHIVE, LOWRATE):
            pts = ", ".join(
                f"{p['step']:g}: {p['bps']:.3f}/{p['prdn']:.1f} ({p['spikes']})"
                for p in r["methods"][n]
            )
            steps.append(f"- {n}, step: b/s / PRDN % (spikes kept): {pts}")
        out.append(f"### Record {r['record']}\n\n{table(rows)}\n")
        out.append("\n".join(steps) + "\n")
    return out


def _bd_lines(results: Results) -> list[str]:
    lines = ["| curve | anchor | " + " | ".join(r["record"] for r in results) + " | mean |",
             "|---|---|" + "---|" * (len(results) + 1)]  # fmt: skip
    for n in (SERVED, FIXED, SHORT_BLOCKS, RESIDUAL, ARCHIVE, LOWRATE):
        for a in (WAVELET, BIOLEPTIC):
            vals = [bd_rate(r["methods"][n], r["methods"][a]) for r in results]
            mean = float(np.nanmean(vals)) if not all(math.isnan(v) for v in vals) else math.nan
            cells = ["–" if math.isnan(v) else f"{v:+.0f}%" for v in [*vals, mean]]
            lines.append(f"| {n} | {a} | " + " | ".join(cells) + " |")
    return lines


def _mean(results: Results, *keys: str) -> Any:
    """The mean over the records of r[keys[0]][keys[1]]..."""
    values = []
    for r in results:
        value = r
        for k in keys:
            value = value[k]
        values.append(value)
    return np.mean(values, axis=0)


def report(results: Results, write_docs: bool, t_start: float) -> int:
    """Print the tables and, with write_docs, put them in docs/benchmarks.md (the headline) and
    docs/rate-distortion.md (per record, BD-rates, the paper's metric)."""
    print("φ̄ beside Table I (bench/paper_metric.py) ...", flush=True)
    phi_table = paper_metric.report()
    total = time.perf_counter() - t_start
    stamp = (
        f"Generated by `make bench` on {time.strftime('%Y-%m-%d %H:%M %Z')}: "
        f"{platform.platform()} ({os.cpu_count()} CPUs), Python {platform.python_version()}, "
        f"onnxruntime {ort.__version__} (CPUExecutionProvider, one thread), {total:.0f} s; "
        f"records {', '.join(r['record'] for r in results)}, 5 minutes each, never seen in training."
    )
    summary = "\n".join([
        stamp, "",
        "![PRDN against bits per sample, every record](rate-distortion/all.png)", "",
        "Real bytes throughout but for the wavelet's H0 (an entropy estimate with no side "
        "information at all). Served: what the server sends, every block message; archive: the "
        "whole `.sanc` file of `sancodec encode --adapt`, kernels and tables in its header. The "
        "served path fits each stream's own kernels as an unloaded server does (from its fifth "
        "block on, sent in-band, their bytes counted; a busy server skips checks); "
        "`--fixed-kernels` keeps the model's.\n",
        "\n".join(_headline(results)), "",
        "### Issue #14's checks\n",
        "\n".join(_checks(results)), "",
        "### Issue #16's checks\n",
        "\n".join(_adaptation_checks(results)), "",
        "### Speed on one core (mean over the records)\n",
        "ecg: detection is the encoder in ONNX Runtime; encode is everything after it (layers, "
        "rate control, range coding, block messages); decode parses the bytes, range-decodes, "
        "paints and inverts; best of 5. bioleptic: its option nearest PRDN 9%, best of 5.\n",
        "\n".join(_speed(results)),
    ])  # fmt: skip
    per_record = "\n".join([
        stamp, "", "## BD-rate (Bjøntegaard, % rate change vs the anchor; negative = ours cheaper)", "",
        "\n".join(_bd_lines(results)), "",
        "## The paper's metric: Table I's SAN rows beside a fixed wavelet on the same windows\n",
        "Each cell is m (or k) / CR⁻¹ / L̃ / φ̄ on the test windows; protocol in bench/paper_metric.py.\n",
        phi_table, "", "## Per record", *_per_record(results),
    ])  # fmt: skip
    if write_docs:
        replace_section(DOCS / "benchmarks.md", "rate-distortion", summary)
        replace_section(DOCS / "rate-distortion.md", "per-record", per_record)
        print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'rate-distortion.md'}")
    print(per_record)
    print(summary)
    return 0


def replace_section(path: Path, name: str, text: str) -> None:
    """Put `text` between the file's `<!-- begin NAME -->` and `<!-- end NAME -->` markers,
    appending both if the file has none; the rest of the file is left as it is."""
    begin, end = (
        f"<!-- begin {name} (generated: edit the benchmark, not this) -->",
        f"<!-- end {name} -->",
    )
    old = path.read_text() if path.exists() else ""
    if begin in old and end in old:
        head, rest = old.split(begin, 1)
        tail = rest.split(end, 1)[1]
    else:
        head, tail = old.rstrip("\n") + "\n\n", "\n"
    path.write_text(f"{head}{begin}\n{text}\n{end}{tail}")
