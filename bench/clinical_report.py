"""Tables of bench/clinical.py: the Beats section of docs/benchmarks.md and of docs/models.md."""

from __future__ import annotations

import math
from typing import Any

from bench.rd_report import DOCS, replace_section

Results = list[dict[str, Any]]
SE_PPV_POINTS = 0.2  # issue #15: ecg's decoded Se and PPV within 0.2 points of the original's
RHYTHM_PERCENT = 99.0  # issue #15: a rhythm mode keeps Se and PPV at 99 % or more

__all__ = ["report"]


def _f(value: float | None, digits: int = 2) -> str:
    return "–" if value is None or not math.isfinite(value) else f"{value:.{digits}f}"


def _record(r: dict[str, Any]) -> str:
    return f"{r['record']} ({r['seen']})" if r["seen"] else r["record"]


def _se_ppv(d: dict[str, float] | None) -> str:
    return "–" if d is None else f"{_f(d['sensitivity_percent'])} / {_f(d['positive_predictivity_percent'])}"  # fmt: skip


def _worst_gap(b: dict[str, Any]) -> float:
    """How many points the decoded Se or PPV falls below the original's (negative: above)."""
    o, d = b["original"], b["decoded"]
    return max(o[k] - d[k] for k in ("sensitivity_percent", "positive_predictivity_percent"))


def _rows(results: Results) -> list[str]:
    lines = [
        "| record | codec | at the rate of | bit/sample | PRDN % | Se / PPV original | Se / PPV decoded | beats kept % | extra % | RR error mean / p99 ms |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for p in r["points"]:
            b = p["beats"]
            lines.append(
                f"| {_record(r)} | {p['method']} | {p['at']} | {p['bps']:.3f} | {p['prdn']:.1f} | "
                f"{_se_ppv(b['original'])} | {_se_ppv(b['decoded'])} | {_f(b['agreement_percent'])} | "
                f"{_f(b['extra_beats_percent'])} | {_f(b['rr_error_mean_ms'], 1)} / {_f(b['rr_error_p99_ms'], 1)} |"
            )  # fmt: skip
    return lines


def _summary(results: Results) -> list[str]:
    """Per operating point and codec, over the records no model saw."""
    unseen = [r for r in results if not r["seen"]]
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in unseen:
        for p in r["points"]:
            groups.setdefault((p["at"], p["method"]), []).append(p)
    lines = [
        "| at the rate of | codec | mean bit/sample | mean PRDN % | min Se / min PPV decoded | worst Se or PPV loss, points | min beats kept % | mean RR error ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for (at, method), points in groups.items():
        beats = [p["beats"] for p in points]
        se = min(b["decoded"]["sensitivity_percent"] for b in beats)
        ppv = min(b["decoded"]["positive_predictivity_percent"] for b in beats)
        rr = [b["rr_error_mean_ms"] for b in beats if b["rr_error_mean_ms"] is not None]
        lines.append(
            f"| {at} | {method} | {sum(p['bps'] for p in points) / len(points):.3f} | "
            f"{sum(p['prdn'] for p in points) / len(points):.1f} | {_f(se)} / {_f(ppv)} | "
            f"{_f(max(_worst_gap(b) for b in beats))} | {_f(min(b['agreement_percent'] for b in beats))} | "
            f"{_f(sum(rr) / len(rr) if rr else math.nan, 1)} |"
        )  # fmt: skip
    return lines


def _detector(results: Results) -> list[str]:
    lines = [
        "| record | beats (.atr) | Se % | PPV % | GQRS beats it finds % | beats GQRS does not find % |",
        "|---|---|---|---|---|---|",
    ]
    for r in results:
        d = r["detector"]
        lines.append(
            f"| {_record(r)} | {r['reference_beats']} | {_f(d['se'])} | {_f(d['ppv'])} | "
            f"{_f(d['qrs_kept'])} | {_f(d['qrs_extra'])} |"
        )
    return lines


def _checks(results: Results) -> list[str]:
    unseen = [r for r in results if not r["seen"]]

    def shipped(model: str) -> list[tuple[str, dict[str, Any]]]:
        return [(r["record"], p) for r in unseen for p in r["points"]
                if p["method"] == p["at"] == f"{model} (shipped)"]  # fmt: skip

    ecg = shipped("ecg")
    within = [rec for rec, p in ecg if _worst_gap(p["beats"]) <= SE_PPV_POINTS]
    lines = [
        f"- `ecg` (shipped): decoded Se and PPV within {SE_PPV_POINTS} points of the original's on "
        f"{len(within)} of {len(ecg)} unseen records ({', '.join(within)})."
    ]
    for model in ("ecg-lowrate", "ecg-rhythm"):
        points = shipped(model)
        kept = [rec for rec, p in points if p["bps"] <= 0.1 and _lowest(p["beats"]["decoded"]) >= RHYTHM_PERCENT]  # fmt: skip
        short = [f"{rec} (original {_lowest(p['beats']['original']):.2f})" for rec, p in points
                 if _lowest(p["beats"]["original"]) < RHYTHM_PERCENT]  # fmt: skip
        lines.append(
            f"- `{model}` (shipped): Se and PPV ≥ {RHYTHM_PERCENT:g}% at ≤ 0.1 bit/sample (kernels "
            f"charged) on {len(kept)} of {len(points)} unseen records ({', '.join(kept) or 'none'})"
            + (
                f"; GQRS on the original itself falls short on {', '.join(short)}."
                if short
                else "."
            )
        )
    return lines


def _lowest(d: dict[str, float]) -> float:
    return min(d["sensitivity_percent"], d["positive_predictivity_percent"])


def _models_section(results: Results) -> str:
    """docs/models.md: each ECG model at its shipped steps, beside its rate and PRDN."""
    lines = [
        "Beats on the MIT-BIH records each model never saw, at its shipped steps, coded as the "
        'server codes (`make bench`, bench/clinical.py; docs/benchmarks.md, "Beats", has every '
        "record, the training records and the peers at equal rate). Rate with the kernels charged "
        "once per 5-minute record; Se and PPV from wfdb's GQRS against the `.atr` annotations.",
        "",
        "| model | record | bit/sample | PRDN % | Se / PPV original | Se / PPV decoded | beats kept % | RR error mean / p99 ms |",
        "|---|---|---|---|---|---|---|---|",
    ]
    shipped = [
        (p["method"], r, p)
        for r in results
        if not r["seen"]
        for p in r["points"]
        if p["method"] == p["at"] and p["method"].endswith("(shipped)")
    ]
    for _, r, p in sorted(shipped, key=lambda item: item[0]):  # by model, records in order
        b = p["beats"]
        lines.append(
            f"| `{p['method'].split()[0]}` | {r['record']} | {p['bps']:.3f} | {p['prdn']:.1f} | "
            f"{_se_ppv(b['original'])} | {_se_ppv(b['decoded'])} | {_f(b['agreement_percent'])} | "
            f"{_f(b['rr_error_mean_ms'], 1)} / {_f(b['rr_error_p99_ms'], 1)} |"
        )  # fmt: skip
    return "\n".join(lines)


def report(results: Results, write_docs: bool, seconds: float) -> None:
    text = "\n".join([
        "## Beats (clinical fidelity)",
        "",
        "`make bench` (bench/clinical.py; protocol in its docstring). A decoded ECG is only as "
        "good as the beats a reader finds in it: wfdb's GQRS on the original and on each decoded "
        "signal, scored against the `.atr` beat annotations (compare_annotations, 150 ms). MLII, "
        f"samples 108000–214496 of each record; training (101, 106, 208, 228) and validation (103) "
        f"records of the shipped models are marked. Run time {seconds:.0f} s.",
        "",
        "### Checks of issue #15", "", *_checks(results), "",
        "### By codec, over the unseen records", "", *_summary(results), "",
        "### The server's block-path detector (sancodec.beats, per 2048-sample block)", "",
        *_detector(results), "",
        "### Every record and operating point", "", *_rows(results),
    ])  # fmt: skip
    print(text)
    if write_docs:
        replace_section(DOCS / "benchmarks.md", "clinical", text)
        replace_section(DOCS / "models.md", "beats", _models_section(results))
        print(f"wrote {DOCS / 'benchmarks.md'} and {DOCS / 'models.md'}")
