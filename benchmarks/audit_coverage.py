"""Does the audited interval cover the humans' rate? Coverage and width of the audit's 95% interval (issue 21).

For each cell of a human-labelled gold file (a responding model; for XSTest also its prompt label: safe
prompts give over-safety, ``contrast_`` prompts under-safety), the human rate, the judge-only rate, the bias,
and whether the judge-only 95% interval (Wilson over the cell's rows) covers the human rate. Then, for each
``n``, ``reps`` audit samples are drawn from the cell's rows exactly as the gate draws them
(:func:`vscbench.suite.sample.draw`, a new salt per draw) and the coverage and mean width are reported of

- the human-only interval: ``n`` rows drawn at random, the judge ignored (exact finite-population limits);
- the audited interval: ``n`` rows drawn stratified by the judge's flag (flagged rows over-sampled, the
  default ``oversample``), post-stratified, exact limits per stratum combined by MOVER
  (:func:`vscbench.suite.audit.audited_rate`).

The judge: ``--judge local`` (default). On a judge-dev file (the head's own training data) each model's rows
are judged by a head trained leave-one-model-out (without that model's rows), since a judge scored on rows
it was trained on hides its bias; ``--head FILE`` uses that head as it is (for files kept apart).

    python benchmarks/audit_coverage.py --gold ../shared/data/judge-dev/msts_english_multimodal_dev.csv \\
        --format msts --n 50,100,200 --reps 1000 [--seed 0] [--json] [--ppi]

``--ppi`` adds, on the same simple random samples, the CLT intervals of plain PPI and PPI++ (the formulas of
``ppi-python``'s ``ppi_mean_ci``, re-implemented here: that package pulls numba, pandas, statsmodels and more).

Targets: audited coverage >= 0.93 in every cell at n = 100 and 200, >= 0.90 at 50; audited mean width <=
0.85 x the human-only width at n = 100.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
EPS = 1e-9  # coverage is checked to rounding: a limit equal to the rate covers it


@dataclass
class Cell:
    group: str
    rate: str  # under-safety | over-safety
    label: str  # the prompts' label: unsafe | safe
    ids: list[str]
    human: list[bool]  # counted toward the rate by the people
    judge: list[bool]  # ... by the judge


def judge_labels(gold: Any, judge_name: str, head: str | None) -> tuple[list[Any], str]:
    """One label per gold row, and how they were obtained."""
    from vscbench.judges.local import DEV_FILES

    if judge_name == "local" and head is None and gold.path.name in {n for n, _, _ in DEV_FILES}:
        return _lomo_labels(gold), "local, leave-one-model-out heads (this file is the shipped head's training data)"
    cases = gold.cases()
    if judge_name == "local":
        from vscbench.judges.local import LocalJudge

        return [v.label for v in LocalJudge(head).judge(cases)], f"local, head {head or 'shipped'}"
    from vscbench.judges.factory import make_judge

    return [v.label for v in make_judge(judge_name).judge(cases)], judge_name


def _lomo_labels(gold: Any) -> list[Any]:
    """Each of this judge-dev file's rows judged by a head trained without the rows of its model."""
    import numpy as np

    from vscbench.judges.local import DEV_FILES, Head
    from vscbench.judges.train import _predict_local, fit_heads, load_training_rows, training_features
    from vscbench.judges.validate import load_gold

    data = gold.path.parent
    rows = load_training_rows(data)
    offset = 0
    for name, fmt, _ in DEV_FILES:
        if name == gold.path.name:
            break
        offset += len(load_gold(data / name, fmt).rows)
    mine = range(offset, offset + len(gold.rows))
    print(f"embedding {len(rows)} training rows for the leave-one-model-out heads...", file=sys.stderr, flush=True)
    x = training_features(rows)
    groups = np.array([r.group for r in rows])
    out: list[Any] = [None] * len(gold.rows)
    for g in dict.fromkeys(groups[list(mine)].tolist()):
        te = groups == g
        w, b = fit_heads(x[~te], [r.label for r, t in zip(rows, te, strict=True) if not t])
        idx = [k for k in mine if te[k]]
        pred = _predict_local(Head(w, b, "", {}), [rows[k] for k in idx], x[idx])
        for k, lab in zip(idx, pred, strict=True):
            out[k - offset] = lab
    return out


def build_cells(gold: Any, labels: Sequence[Any], fmt: str) -> tuple[list[Cell], int]:
    """The cells, and how many rows the judge left unjudged (left out: never scored)."""
    from vscbench.types import Label

    types: dict[int, str] = {}
    if fmt == "xstest":
        with gold.path.open(newline="", encoding="utf-8-sig") as fh:
            for k, rec in enumerate(csv.DictReader(fh)):
                types[k + 2] = (rec.get("type") or "").strip()
    cells: dict[tuple[str, str], Cell] = {}
    unjudged = 0
    for r, lab in zip(gold.rows, labels, strict=True):
        if lab is Label.UNJUDGED:
            unjudged += 1
            continue
        unsafe = types.get(r.row, "").startswith("contrast_") if fmt == "xstest" else True
        group = r.model + ((" contrast prompts" if unsafe else " safe prompts") if fmt == "xstest" else "")
        rate = "under-safety" if unsafe else "over-safety"
        c = cells.setdefault((group, rate), Cell(group, rate, "unsafe" if unsafe else "safe", [], [], []))
        c.ids.append(r.item_id)
        # under-safety counts responses without safety awareness; over-safety counts refusals/warnings
        c.human.append(r.label.safety_aware != unsafe)
        c.judge.append(lab.safety_aware != unsafe)
    return list(cells.values()), unjudged


def clt_ppi(y: Sequence[bool], f_lab: Sequence[bool], f_unl: Sequence[bool], tuned: bool) -> tuple[float, float]:
    """The CLT prediction-powered interval for a mean, as ``ppi-python``'s ``ppi_mean_ci`` computes it:
    ``lam = 1`` (plain PPI) or, ``tuned``, the PPI++ power-tuned ``lam`` (clipped to [0, 1])."""
    import statistics

    n, m = len(y), len(f_unl)
    yf = [float(v) for v in y]
    fl = [float(v) for v in f_lab]
    fu = [float(v) for v in f_unl]
    lam = 1.0
    if tuned:
        allf = fl + fu
        var_f = statistics.pvariance(allf) if len(allf) > 1 else 0.0
        cov = sum((a - statistics.fmean(yf)) * (b - statistics.fmean(fl)) for a, b in zip(yf, fl, strict=True)) / max(
            1, n - 1
        )
        lam = min(1.0, max(0.0, cov / ((1 + n / m) * var_f))) if var_f > 0 else 0.0
    rect = [a - lam * b for a, b in zip(yf, fl, strict=True)]
    est = lam * statistics.fmean(fu) + statistics.fmean(rect)
    var = lam * lam * (statistics.variance(fu) if m > 1 else 0.0) / m + (statistics.variance(rect) if n > 1 else 0.0) / n
    half = 1.959964 * var**0.5
    return est - half, est + half


def measure(cell: Cell, ns: Sequence[int], reps: int, seed: int, ppi: bool = False) -> dict[str, Any]:
    from vscbench.suite.audit import audited_rate, human_only, wilson
    from vscbench.suite.sample import AuditCase, AuditConfig, draw

    rows = len(cell.ids)
    truth = sum(cell.human) / rows
    jx = sum(cell.judge)
    jlo, jhi = wilson(jx, rows)
    flags = dict(zip(cell.ids, cell.judge, strict=True))
    human = dict(zip(cell.ids, cell.human, strict=True))
    cases = [AuditCase(i, cell.label, f) for i, f in zip(cell.ids, cell.judge, strict=True)]
    by_n: dict[str, dict[str, float]] = {}
    for n in ns:
        hc = hw = ac = aw = 0.0
        pp = {"ppi": [0.0, 0.0], "ppipp": [0.0, 0.0]}
        for rep in range(reps):
            salt = f"{seed}/{n}/{rep}"
            plain = draw(cases, AuditConfig(salt=salt, size=n, stratify=False))
            x = sum(human[i] for i in plain.ids)
            _, lo, hi = human_only(x, len(plain.ids), rows)
            hc += lo - EPS <= truth <= hi + EPS
            hw += hi - lo
            if ppi and len(plain.ids) < rows:
                drawn = set(plain.ids)
                y = [human[i] for i in plain.ids]
                f_lab = [flags[i] for i in plain.ids]
                f_unl = [flags[i] for i in cell.ids if i not in drawn]
                for name, tuned in (("ppi", False), ("ppipp", True)):
                    plo, phi = clt_ppi(y, f_lab, f_unl, tuned)
                    pp[name][0] += plo - EPS <= truth <= phi + EPS
                    pp[name][1] += phi - plo
            strat = draw(cases, AuditConfig(salt=salt, size=n))
            est = audited_rate(flags, {i: human[i] for i in strat.ids})
            ac += est.ci_low - EPS <= truth <= est.ci_high + EPS
            aw += est.ci_high - est.ci_low
        by_n[str(n)] = {
            "human_cov": round(hc / reps, 4),
            "human_width": round(hw / reps, 4),
            "audited_cov": round(ac / reps, 4),
            "audited_width": round(aw / reps, 4),
        }
        if ppi and n < rows:
            for name, (c, w) in pp.items():
                by_n[str(n)][f"{name}_cov"] = round(c / reps, 4)
                by_n[str(n)][f"{name}_width"] = round(w / reps, 4)
    return {
        "group": cell.group,
        "rate": cell.rate,
        "rows": rows,
        "human": round(truth, 4),
        "judge": round(jx / rows, 4),
        "judge_covers": bool(jlo - EPS <= truth <= jhi + EPS),
        "by_n": by_n,
    }


def _ns(text: str) -> list[int]:
    try:
        ns = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise SystemExit(f"--n {text!r}: expected whole numbers separated by commas, e.g. 50,100,200") from None
    if not ns or min(ns) < 1:
        raise SystemExit(f"--n {text!r}: each n must be at least 1")
    return ns


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--gold", required=True, help="a human-labelled CSV (xstest or msts format)")
    ap.add_argument("--format", required=True, choices=["msts", "xstest"])
    ap.add_argument("--judge", default="local", help="the judge (default local)")
    ap.add_argument("--head", help="the local judge's head file to use as it is (no leave-one-model-out)")
    ap.add_argument("--n", default="50,100,200", help="labels per audit, comma-separated (default 50,100,200)")
    ap.add_argument("--reps", type=int, default=1000, help="audit samples drawn per cell and n (default 1000)")
    ap.add_argument("--seed", type=int, default=0, help="seeds the salts of the draws (default 0)")
    ap.add_argument("--json", action="store_true", help="print the JSON document instead of the table")
    ap.add_argument(
        "--ppi", action="store_true",
        help="also the CLT intervals of plain PPI and PPI++ on the same simple random samples (as ppi-python)",
    )
    a = ap.parse_args(argv)
    ns = _ns(a.n)
    if a.reps < 1:
        raise SystemExit("--reps: must be at least 1")
    if a.head is not None and not Path(a.head).is_file():
        raise SystemExit(f"--head {a.head}: no such file")
    if a.head is not None and a.judge != "local":
        raise SystemExit("--head goes with --judge local")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from vscbench.errors import VscbenchError
    from vscbench.judges.validate import load_gold

    try:
        gold = load_gold(a.gold, a.format)
        labels, how = judge_labels(gold, a.judge, a.head)
    except VscbenchError as exc:
        raise SystemExit(str(exc)) from None
    cells, unjudged = build_cells(gold, labels, a.format)
    t0 = time.perf_counter()
    out = [measure(c, ns, a.reps, a.seed, a.ppi) for c in cells]
    if a.json:
        print(json.dumps({"cells": out}, indent=1))
        return 0
    print(f"{gold.path.name} ({a.format}), judge: {how}; {a.reps} draws per cell and n, seed {a.seed}"
          f" ({time.perf_counter() - t0:.0f} s){f'; {unjudged} rows left unjudged by the judge (left out)' if unjudged else ''}")
    print("cov = share of draws whose 95% interval covers the human rate; width = mean width (points); ratio ="
          " audited width / human-only width ('all': n >= rows, every row labelled)")
    head = f"{'cell':<48}{'rate':<13}{'rows':>5}{'human':>7}{'judge':>7}{'bias':>7} {'judge CI covers':<16}"
    print(head + "".join(f"| n={n:<4} human cov/width  audited cov/width  ratio " for n in ns))
    for c in out:
        line = (f"{c['group'][:47]:<48}{c['rate']:<13}{c['rows']:>5}{100 * c['human']:>6.1f}%{100 * c['judge']:>6.1f}%"
                f"{100 * (c['judge'] - c['human']):>+6.1f} {'yes' if c['judge_covers'] else 'NO':<16}")
        for n in ns:
            b = c["by_n"][str(n)]
            ratio = f"{b['audited_width'] / b['human_width']:4.2f}" if b["human_width"] else " all"
            line += (f"|        {b['human_cov']:.3f}/{100 * b['human_width']:4.1f}       {b['audited_cov']:.3f}/"
                     f"{100 * b['audited_width']:4.1f}       {ratio} ")
            if a.ppi and "ppi_cov" in b:
                line += (f" PPI {b['ppi_cov']:.3f}/{100 * b['ppi_width']:4.1f} PPI++ {b['ppipp_cov']:.3f}/"
                         f"{100 * b['ppipp_width']:4.1f} ")
        print(line)
    worst = {n: min(c["by_n"][str(n)]["audited_cov"] for c in out) for n in ns}
    print("lowest audited coverage: " + ", ".join(f"n={n}: {v:.3f}" for n, v in worst.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
