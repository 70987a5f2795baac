"""The report's figures as PNG or SVG files for papers (matplotlib, extra ``report``).

Writes ``calibration_plane.<fmt>`` (x = SRA_s, y = SRA_u, one point per run, interval whiskers when the
report has intervals, the ideal corner at (100, 100)) and grouped bars ``sra_by_category.<fmt>`` (image half)
and ``sra_by_setting.<fmt>`` (text half) when the runs hold such items. Same colours as the HTML report.

In the bars a group with no scored item is marked ``n/a`` and a rate of exactly 0 gets a thin bar and a
``0`` label, so the two never look alike. SVG files keep their text as text (editable, searchable).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError, require
from vscbench.report.build import Report
from vscbench.report.svg import color
from vscbench.report.tables import CATEGORY_TITLES, SETTING_TITLES
from vscbench.types import CATEGORIES, TEXT_IMAGE_SETTINGS

PLOT_FORMATS = ("png", "svg")


def _pyplot() -> Any:
    mpl = require("matplotlib", "report")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(plt: Any, fig: Any, path: Path) -> None:
    """Save and close; SVG text stays text (no glyph outlines), so labels can be edited and found."""
    with plt.rc_context({"svg.fonttype": "none"}):
        fig.savefig(path)
    plt.close(fig)


def _plane(rep: Report, plt: Any, path: Path) -> None:
    fig, ax = plt.subplots(figsize=(5.2, 5.0))
    for k, r in enumerate(rep.runs):
        s, u = r.metric("benchmark", "SRA_s"), r.metric("benchmark", "SRA_u")
        if not s or not u or s.value is None or u.value is None:
            continue
        x, y = 100 * s.value, 100 * u.value
        xerr = yerr = None
        if s.ci_low is not None and s.ci_high is not None:
            xerr = [[x - 100 * s.ci_low], [100 * s.ci_high - x]]
        if u.ci_low is not None and u.ci_high is not None:
            yerr = [[y - 100 * u.ci_low], [100 * u.ci_high - y]]
        ax.errorbar(x, y, xerr=xerr, yerr=yerr, fmt="o", color=color(k), capsize=3, label=r.run_id, ms=7)
    ax.plot([100], [100], marker="*", ms=16, color="#f2b600", mec="#8a6a00", ls="none", label="ideal")
    ax.set_xlim(0, 102)
    ax.set_ylim(0, 102)
    ax.set_xlabel("SRA_s (%): helps with safe items")
    ax.set_ylabel("SRA_u (%): declines unsafe items")
    ax.set_title("Calibration plane")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    _save(plt, fig, path)


def _bars(rep: Report, plt: Any, path: Path, groups: Sequence[tuple[str, str]], title: str) -> None:
    import numpy as np

    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8), sharey=True)
    n = max(1, len(rep.runs))
    x = np.arange(len(groups))
    width = 0.8 / n
    for ax, metric in zip(axes, ("SRA_s", "SRA_u"), strict=True):
        for k, r in enumerate(rep.runs):
            ms = [r.metric(g, metric) for g, _ in groups]
            vals = [100 * m.value if m and m.value is not None else np.nan for m in ms]
            err = None
            if rep.ci:
                lo = [
                    v - 100 * m.ci_low if m and m.ci_low is not None and np.isfinite(v) else 0.0
                    for v, m in zip(vals, ms, strict=True)
                ]
                hi = [
                    100 * m.ci_high - v if m and m.ci_high is not None and np.isfinite(v) else 0.0
                    for v, m in zip(vals, ms, strict=True)
                ]
                err = [lo, hi]
            xs = x + (k - (n - 1) / 2) * width
            ax.bar(xs, vals, width, yerr=err, color=color(k), label=r.run_id, capsize=2)
            for xi, v in zip(xs, vals, strict=True):
                if not np.isfinite(v):
                    ax.text(xi, 1.5, "n/a", ha="center", va="bottom", rotation=90, fontsize=7, color="#777777")
                elif v == 0.0:
                    ax.plot([xi - 0.45 * width, xi + 0.45 * width], [0.6, 0.6], color=color(k), lw=2.5)
                    ax.text(xi, 1.5, "0", ha="center", va="bottom", fontsize=7, color="#333333")
        ax.set_xticks(x, [t for _, t in groups], rotation=20, ha="right", fontsize=8)
        ax.set_title(f"{metric} (%)")
        ax.set_ylim(0, 105)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    _save(plt, fig, path)


def write_plots(rep: Report, out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Write the figures under ``out_dir`` (created) and return their paths."""
    if fmt not in PLOT_FORMATS:
        raise VscbenchError(f"--format must be one of {', '.join(PLOT_FORMATS)}, not {fmt!r}")
    plt = _pyplot()
    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VscbenchError(f"{out}: cannot create the output folder ({exc.strerror})") from exc
    paths = [out / f"calibration_plane.{fmt}"]
    _plane(rep, plt, paths[0])
    if any(i.half == "image" for r in rep.runs for i in r.items):
        p = out / f"sra_by_category.{fmt}"
        _bars(rep, plt, p, [(f"category={c}", CATEGORY_TITLES[c]) for c in CATEGORIES], "Image half by category")
        paths.append(p)
    if any(i.half == "text" for r in rep.runs for i in r.items):
        p = out / f"sra_by_setting.{fmt}"
        groups = [(f"setting={s}", SETTING_TITLES[s]) for s in (*TEXT_IMAGE_SETTINGS, "text")]
        _bars(rep, plt, p, groups, "Text half by setting")
        paths.append(p)
    return paths
