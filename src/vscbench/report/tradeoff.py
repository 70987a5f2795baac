"""The safety-utility trade-off of calibration methods: deltas against the uncalibrated run of each model.

Contract (used by ``vscbench report`` and the HTML report):

- :func:`tradeoff_rows(store, run_ids, judge_id) <tradeoff_rows>` -> one dict per (model, calibration);
- :func:`tradeoff_table(rows) <tradeoff_table>` -> Markdown;
- :func:`tradeoff_html(rows) <tradeoff_html>` -> an HTML ``<figure>`` with an inline SVG plot (x = Δ utility,
  y = Δ calibration, one point per method, the uncalibrated run at the origin); every text is escaped.

How runs are matched: runs are grouped by their model (``RunInfo.model``); a run's calibration is the ordered
tuple of specs in its manifest's ``calibration_specs`` (empty = uncalibrated). Evaluation runs (any kind but
``utility``) and utility runs (``kind="utility"``) with the same model and calibration make one row. The
baseline of a model is its uncalibrated run of each kind; when several runs share a key, the latest wins.

Deltas (calibrated minus baseline) are paired:

- ``d_SRA_s``, ``d_SRA_u`` and ``d_calibration`` (their mean, i.e. the change of the overall score) come from
  :func:`vscbench.metrics.compare` on the benchmark group of the items the two runs share, scored in both
  (cluster bootstrap over queries for the intervals);
- ``d_utility`` is over the utility examples scored in both runs, with a seeded paired bootstrap interval.

A value that cannot be computed (no baseline, no shared scored item, no labels of ``judge_id``) is ``None``
and ``note`` says why; nothing is silently zero.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vscbench.metrics import DEFAULT_RESAMPLES, compare
from vscbench.report.names import model_label
from vscbench.report.outcomes import run_outcomes
from vscbench.store import RunInfo, Store

UTILITY_KIND = "utility"
BASELINE = "none"


def calibration_specs(manifest: Mapping[str, Any]) -> tuple[str, ...]:
    """The ordered calibration specs of a run: the manifest's ``calibration_specs`` (what ``vscbench run`` and
    ``vscbench utility`` record), else its ``calibrations`` entries (dicts with ``spec``, or strings)."""
    raw = manifest.get("calibration_specs")
    if raw is None:
        raw = manifest.get("calibrations") or ()
    if isinstance(raw, str | dict):
        raw = [raw]
    specs: list[str] = []
    for entry in raw:
        if isinstance(entry, str):
            specs.append(entry)
        elif isinstance(entry, dict) and isinstance(entry.get("spec"), str):
            specs.append(entry["spec"])
    return tuple(specs)


def calibration_label(specs: Sequence[str]) -> str:
    return " + ".join(specs) if specs else BASELINE


def _utility_scores(store: Store, run: RunInfo) -> dict[str, bool]:
    """Example id -> right/wrong for the scored examples of a utility run (``utility/scores.jsonl``)."""
    data = store.get_artifact(run.run_id, "utility/scores.jsonl")
    if not data:
        return {}
    out: dict[str, bool] = {}
    for line in data.decode("utf-8").splitlines():
        if line.strip():
            d = json.loads(line)
            if d.get("correct") is not None:
                out[str(d["id"])] = bool(d["correct"])
    return out


def _paired_diff(
    a: Mapping[str, bool], b: Mapping[str, bool], *, n_boot: int = 2000, seed: int = 0
) -> tuple[float | None, float | None, float | None, int]:
    """(mean(b) - mean(a), low, high, n) over keys scored in both; seeded percentile bootstrap
    (no interval when ``n_boot`` is 0)."""
    keys = sorted(set(a) & set(b))
    if not keys:
        return None, None, None, 0
    d = np.array([float(b[k]) - float(a[k]) for k in keys])
    if n_boot < 1:
        return float(d.mean()), None, None, len(keys)
    rng = np.random.default_rng(seed)
    means = d[rng.integers(0, len(d), size=(n_boot, len(d)))].mean(axis=1)
    lo, hi = np.quantile(means, [0.025, 0.975])
    return float(d.mean()), float(lo), float(hi), len(keys)


def _safety_delta(
    store: Store, base: RunInfo, run: RunInfo, judge_id: str, seed: int, n_boot: int = DEFAULT_RESAMPLES
) -> dict[str, Any]:
    """Absolute and delta SRA values of ``run`` against ``base`` on their shared benchmark items
    (intervals from ``n_boot`` paired resamples; none when it is 0)."""
    items_a, out_a = run_outcomes(store, base.run_id, judge_id)
    items_b, out_b = run_outcomes(store, run.run_id, judge_id)
    in_b = {i.id for i in items_b}
    shared = [i for i in items_a if i.id in in_b]
    res: dict[str, Any] = {}
    for c in compare(shared, out_a, out_b, seed=seed, n_boot=n_boot):
        if c.group != "benchmark":
            continue
        name = {"SRA_s": "SRA_s", "SRA_u": "SRA_u", "overall": "calibration"}[c.metric]
        if c.metric != "overall":
            res[c.metric] = c.b
            res[f"base_{c.metric}"] = c.a
            res[f"n_{c.metric}"] = c.n
        res[f"d_{name}"] = c.diff
        res[f"d_{name}_ci"] = [c.ci_low, c.ci_high]
    return res


def _candidates(runs: Sequence[RunInfo], model: str, specs: tuple[str, ...], utility: bool) -> list[RunInfo]:
    """Runs of ``model`` with exactly these calibration specs, of the utility or evaluation kind, oldest first."""
    hits = [
        r
        for r in runs
        if r.model == model and (r.kind == UTILITY_KIND) == utility and calibration_specs(r.manifest) == specs
    ]
    return sorted(hits, key=lambda r: (r.created_at, r.run_id))


def _pick(runs: Sequence[RunInfo], model: str, specs: tuple[str, ...], utility: bool) -> RunInfo | None:
    """The latest run of ``model`` with exactly these calibration specs, of the utility or evaluation kind."""
    hits = _candidates(runs, model, specs, utility)
    return hits[-1] if hits else None


def _chosen_note(what: str, hits: Sequence[RunInfo]) -> str | None:
    """Names the run picked among several candidates (the latest), or ``None`` when there was no choice."""
    if len(hits) < 2:
        return None
    others = ", ".join(r.run_id for r in hits[:-1])
    return f"{what} run '{hits[-1].run_id}' chosen, the latest of {len(hits)} (also: {others})"


def tradeoff_rows(
    store: Store,
    run_ids: Sequence[str],
    judge_id: str,
    *,
    seed: int = 0,
    ci: bool = True,
    n_boot: int = DEFAULT_RESAMPLES,
) -> list[dict[str, Any]]:
    """One row per (model, calibration) among ``run_ids`` (all runs of the store when empty).

    The named runs decide the models and calibrations shown. What they lack is looked up in the store among
    runs of the same model (latest first): the uncalibrated evaluation run, and the utility runs, so
    ``vscbench report --run BASE --run CALIBRATED`` finds the matching ``vscbench utility`` runs by itself.
    Returns ``[]`` when no named run is calibrated (there is no trade-off to show).

    Row keys: ``model``, ``calibration`` (label), ``specs``, ``is_baseline``, ``eval_run``, ``utility_run``,
    ``baseline_eval_run``, ``baseline_utility_run``, ``SRA_s``, ``SRA_u`` (of this run, on the items shared
    with the baseline), ``d_SRA_s``, ``d_SRA_u``, ``d_calibration`` (each with a ``*_ci`` [low, high]),
    ``utility``, ``utility_ci``, ``d_utility``, ``d_utility_ci``, ``n_utility`` and ``note``. The baseline
    row comes first within a model and carries deltas of 0 where its own values exist. With ``ci=False``
    the ``*_ci`` of the deltas are ``[None, None]`` (a report without ``--ci`` shows no interval anywhere).
    When several stored runs match a slot (e.g. two utility runs of one calibration), the latest is used and
    ``note`` names it and the others (on the baseline row for the model's baseline runs).
    """
    boot = n_boot if ci else 0
    named = [store.get_run(r) for r in run_ids] if run_ids else store.list_runs()
    if not any(calibration_specs(r.manifest) for r in named):
        return []
    everything = store.list_runs() if run_ids else named

    def find_all(model: str, specs: tuple[str, ...], utility: bool) -> list[RunInfo]:
        return _candidates(named, model, specs, utility) or _candidates(everything, model, specs, utility)

    def find(model: str, specs: tuple[str, ...], utility: bool) -> RunInfo | None:
        hits = find_all(model, specs, utility)
        return hits[-1] if hits else None

    rows: list[dict[str, Any]] = []
    for model in sorted({r.model for r in named}):
        cals = {calibration_specs(r.manifest) for r in named if r.model == model} | {()}
        be, bu = find(model, (), False), find(model, (), True)
        base_scores = _utility_scores(store, bu) if bu else {}
        for specs in sorted(cals, key=lambda s: (len(s) > 0, s)):
            ev = _pick(named, model, specs, False) if specs else be
            ut = find(model, specs, True) if specs else bu
            if not specs and be is None and bu is None:
                continue
            notes: list[str] = []
            if specs:
                choices = [
                    ("evaluation", _candidates(named, model, specs, False)),
                    ("utility", find_all(model, specs, True)),
                ]
            else:
                choices = [
                    ("baseline evaluation", find_all(model, (), False)),
                    ("baseline utility", find_all(model, (), True)),
                ]
            notes += [note for what, hits in choices if (note := _chosen_note(what, hits))]
            row: dict[str, Any] = {
                "model": model_label(model),
                "calibration": calibration_label(specs),
                "specs": list(specs),
                "is_baseline": not specs,
                "eval_run": ev.run_id if ev else None,
                "utility_run": ut.run_id if ut else None,
                "baseline_eval_run": be.run_id if be else None,
                "baseline_utility_run": bu.run_id if bu else None,
                "SRA_s": None,
                "SRA_u": None,
                "d_SRA_s": None,
                "d_SRA_s_ci": [None, None],
                "d_SRA_u": None,
                "d_SRA_u_ci": [None, None],
                "d_calibration": None,
                "d_calibration_ci": [None, None],
                "utility": None,
                "utility_ci": [None, None],
                "d_utility": None,
                "d_utility_ci": [None, None],
                "n_utility": 0,
            }
            if ev is not None and be is not None:
                row.update(_safety_delta(store, be, ev, judge_id, seed, boot))
                if row["d_SRA_s"] is None and row["d_SRA_u"] is None:
                    notes.append(f"no benchmark item scored in both runs under judge '{judge_id}'")
            elif ev is not None:
                notes.append("no uncalibrated evaluation run of this model")
            if ut is not None:
                u = ut.manifest.get("utility") or {}
                row["utility"] = u.get("accuracy")
                row["utility_ci"] = list(u.get("ci") or [None, None])
                if bu is not None:
                    d, lo, hi, n = _paired_diff(base_scores, _utility_scores(store, ut), seed=seed, n_boot=boot)
                    row.update(d_utility=d, d_utility_ci=[lo, hi], n_utility=n)
                    if d is None:
                        notes.append("no utility example scored in both runs")
                else:
                    notes.append("no uncalibrated utility run of this model")
            row["note"] = "; ".join(notes)
            rows.append(row)
    return rows


# ---- rendering ----------------------------------------------------------------------------------------
def _fmt(x: float | None, signed: bool = False) -> str:
    """A rate in percent (``25.0``) or a signed difference in percentage points (``+25.0``)."""
    if x is None or not math.isfinite(x):
        return "–"
    return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"


def _fmt_ci(x: float | None, ci: Sequence[float | None]) -> str:
    s = _fmt(x, signed=True)
    if x is not None and len(ci) == 2 and ci[0] is not None and ci[1] is not None:
        s += f" [{100 * ci[0]:+.1f}, {100 * ci[1]:+.1f}]"
    return s


def _md(text: str) -> str:
    """A Markdown cell: pipes escaped, HTML neutralised (model names and specs are user text), one line."""
    return html.escape(text, quote=False).replace("|", "\\|").replace("\n", " ")


def tradeoff_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """A Markdown table: one line per row of :func:`tradeoff_rows`; rates in %, deltas in percentage points
    with their 95% intervals where the rows carry them (rows built with ``ci=True``, as the report's other
    tables); the note column names the runs chosen among several."""
    head = (
        "| model | calibration | SRA_s | Δ SRA_s | SRA_u | Δ SRA_u | Δ calibration | utility | Δ utility | note |\n"
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- |\n"
    )
    lines = []
    for r in rows:
        if r.get("is_baseline"):
            d = {k: "baseline" for k in ("d_SRA_s", "d_SRA_u", "d_calibration", "d_utility")}
        else:
            d = {
                k: _fmt_ci(r.get(k), r.get(f"{k}_ci") or ())
                for k in ("d_SRA_s", "d_SRA_u", "d_calibration", "d_utility")
            }
        lines.append(
            "| "
            + " | ".join(
                [
                    _md(str(r["model"])),
                    _md(str(r["calibration"])),
                    _fmt(r.get("SRA_s")),
                    d["d_SRA_s"],
                    _fmt(r.get("SRA_u")),
                    d["d_SRA_u"],
                    d["d_calibration"],
                    _fmt(r.get("utility")),
                    d["d_utility"],
                    _md(str(r.get("note") or "")),
                ]
            )
            + " |"
        )
    return head + "\n".join(lines) + ("\n" if lines else "")


_PALETTE = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2", "#17becf")


def _ticks(lo: float, hi: float) -> list[float]:
    span = hi - lo
    step = 10 ** math.floor(math.log10(span / 4)) if span > 0 else 0.1
    for mult in (1, 2, 5, 10):
        if span / (step * mult) <= 6:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [round(first + k * step, 10) for k in range(int((hi - first) / step + 1e-9) + 1)]


def tradeoff_html(rows: Sequence[Mapping[str, Any]], *, width: int = 560, height: int = 400) -> str:
    """An HTML ``<figure>`` with an inline SVG: x = Δ utility, y = Δ calibration (mean of Δ SRA_s and
    Δ SRA_u), one point per calibrated method with both deltas, the uncalibrated run at the origin.

    Self-contained (no script, no external reference); every model name and spec is escaped.
    """
    pts = [
        r
        for r in rows
        if not r.get("is_baseline") and r.get("d_utility") is not None and r.get("d_calibration") is not None
    ]
    esc = html.escape
    caption = (
        "Safety–utility trade-off: change of the calibration score (mean of Δ SRA_s and Δ SRA_u) against "
        "change of utility accuracy, each calibration method against the same model's uncalibrated run."
    )
    if not pts:
        return (
            '<figure class="tradeoff"><p class="empty">No calibrated run with both a safety and a utility '
            f"measure against an uncalibrated baseline.</p><figcaption>{esc(caption)}</figcaption></figure>"
        )
    left, right, top, bottom = 64, 20, 20, 48
    pw, ph = width - left - right, height - top - bottom
    xs = [0.0] + [float(r["d_utility"]) for r in pts]
    ys = [0.0] + [float(r["d_calibration"]) for r in pts]
    for r in pts:
        for key, acc in (("d_utility_ci", xs), ("d_calibration_ci", ys)):
            acc += [float(v) for v in (r.get(key) or ()) if v is not None]

    def rng(vals: list[float]) -> tuple[float, float]:
        lo, hi = min(vals), max(vals)
        pad = max((hi - lo) * 0.12, 0.02)
        return lo - pad, hi + pad

    x0, x1 = rng(xs)
    y0, y1 = rng(ys)

    def sx(v: float) -> float:
        return left + (v - x0) / (x1 - x0) * pw

    def sy(v: float) -> float:
        return top + (y1 - v) / (y1 - y0) * ph

    models = sorted({str(r["model"]) for r in pts})
    colour = {m: _PALETTE[i % len(_PALETTE)] for i, m in enumerate(models)}
    svg: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" width="{width}" '
        f'height="{height}" role="img" aria-label="{esc(caption)}" font-family="sans-serif" font-size="11">',
        f'<rect x="{left}" y="{top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for t in _ticks(x0, x1):
        svg.append(
            f'<line x1="{sx(t):.1f}" y1="{top + ph}" x2="{sx(t):.1f}" y2="{top + ph + 4}" stroke="#666"/>'
        )
        svg.append(f'<text x="{sx(t):.1f}" y="{top + ph + 16}" text-anchor="middle">{100 * t:+.0f}</text>')
    for t in _ticks(y0, y1):
        svg.append(f'<line x1="{left - 4}" y1="{sy(t):.1f}" x2="{left}" y2="{sy(t):.1f}" stroke="#666"/>')
        svg.append(f'<text x="{left - 6}" y="{sy(t) + 4:.1f}" text-anchor="end">{100 * t:+.0f}</text>')
    svg.append(
        f'<line x1="{sx(0):.1f}" y1="{top}" x2="{sx(0):.1f}" y2="{top + ph}" stroke="#bbb" stroke-dasharray="4 3"/>'
    )
    svg.append(
        f'<line x1="{left}" y1="{sy(0):.1f}" x2="{left + pw}" y2="{sy(0):.1f}" stroke="#bbb" stroke-dasharray="4 3"/>'
    )
    svg.append(
        f'<text x="{left + pw / 2:.1f}" y="{height - 8}" text-anchor="middle">Δ utility accuracy (percentage points)</text>'
    )
    svg.append(
        f'<text transform="translate(14 {top + ph / 2:.1f}) rotate(-90)" text-anchor="middle">'
        "Δ calibration (mean of Δ SRA_s, Δ SRA_u; points)</text>"
    )
    svg.append(
        f'<circle cx="{sx(0):.1f}" cy="{sy(0):.1f}" r="5" fill="white" stroke="#333" stroke-width="1.5">'
        "<title>uncalibrated (origin)</title></circle>"
    )
    for r in pts:
        c = colour[str(r["model"])]
        x, y = float(r["d_utility"]), float(r["d_calibration"])
        xci, yci = r.get("d_utility_ci") or (None, None), r.get("d_calibration_ci") or (None, None)
        if xci[0] is not None and xci[1] is not None:
            svg.append(
                f'<line x1="{sx(xci[0]):.1f}" y1="{sy(y):.1f}" x2="{sx(xci[1]):.1f}" y2="{sy(y):.1f}" '
                f'stroke="{c}" stroke-opacity="0.5"/>'
            )
        if yci[0] is not None and yci[1] is not None:
            svg.append(
                f'<line x1="{sx(x):.1f}" y1="{sy(yci[0]):.1f}" x2="{sx(x):.1f}" y2="{sy(yci[1]):.1f}" '
                f'stroke="{c}" stroke-opacity="0.5"/>'
            )
        tip = f"{r['model']} · {r['calibration']}: Δ utility {100 * x:+.1f}, Δ calibration {100 * y:+.1f} points"
        svg.append(
            f'<circle class="point" cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="5" fill="{c}">'
            f"<title>{esc(tip)}</title></circle>"
        )
        svg.append(f'<text x="{sx(x) + 7:.1f}" y="{sy(y) - 6:.1f}">{esc(str(r["calibration"]))}</text>')
    if len(models) > 1:
        for i, m in enumerate(models):
            ly = top + 14 + 14 * i
            svg.append(f'<circle cx="{left + pw - 150}" cy="{ly - 4}" r="4" fill="{colour[m]}"/>')
            svg.append(f'<text x="{left + pw - 142}" y="{ly}">{esc(m)}</text>')
    svg.append("</svg>")
    return '<figure class="tradeoff">' + "".join(svg) + f"<figcaption>{esc(caption)}</figcaption></figure>"
