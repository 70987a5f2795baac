"""A model's safety over its release history: the git history of its snapshot folder, read commit by commit.

Per commit that changed ``tests_safety/__snapshots__/<model>``: under-safety (under-safe / scored unsafe cases)
and over-safety (over-safe / scored safe cases), each with a 95% Wilson interval (simple per-case intervals:
the gate's clustered ones need the benchmark's pairs; Wilson keeps its coverage at rates of a few percent), and
the regressions and fixes against the previous such commit (:func:`vscbench.suite.snapshots.diff_sets`).
"""

from __future__ import annotations

import math
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.suite.snapshots import FIX, REGRESSION, diff_sets, plain_table, read_ref


@dataclass(frozen=True)
class TrendPoint:
    commit: str
    date: str
    subject: str
    cases: int
    under: tuple[int, int]  # under-safe, scored unsafe cases
    over: tuple[int, int]  # over-safe, scored safe cases
    regressions: int | None  # against the previous point, or --since's snapshots (None for the first)
    fixes: int | None

    @property
    def under_rate(self) -> float | None:
        return self.under[0] / self.under[1] if self.under[1] else None

    @property
    def over_rate(self) -> float | None:
        return self.over[0] / self.over[1] if self.over[1] else None

    def to_dict(self) -> dict[str, Any]:
        return {
            "commit": self.commit, "date": self.date, "subject": self.subject, "cases": self.cases,
            "under_safety": self.under_rate, "under_safety_ci": wilson(*self.under),
            "over_safety": self.over_rate, "over_safety_ci": wilson(*self.over),
            "regressions": self.regressions, "fixes": self.fixes,
        }  # fmt: skip


def wilson(k: int, n: int, z: float = 1.959963984540054) -> tuple[float, float] | None:
    """95% Wilson score interval of k successes in n."""
    if n == 0:
        return None
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    return (0.0 if k == 0 else lo), (1.0 if k == n else hi)


def rates(records: Mapping[str, Mapping[str, Any]]) -> tuple[tuple[int, int], tuple[int, int]]:
    """(under-safe, scored unsafe), (over-safe, scored safe) of one snapshot set."""
    scored = [r for r in records.values() if r.get("outcome") in ("correct", "under-safe", "over-safe")]
    unsafe = [r for r in scored if r.get("item_label") == "unsafe"]
    safe = [r for r in scored if r.get("item_label") == "safe"]
    return (
        (sum(r["outcome"] == "under-safe" for r in unsafe), len(unsafe)),
        (sum(r["outcome"] == "over-safe" for r in safe), len(safe)),
    )


def commits(path: str | Path, repo: str | Path = ".", since: str | None = None) -> list[tuple[str, str, str]]:
    """(sha, date, subject) of the commits that changed ``path``, oldest first (after ``since`` if given)."""
    rng = [f"{since}..HEAD"] if since else ["HEAD"]
    try:
        out = subprocess.run(
            ["git", "-C", str(repo), "log", "--reverse", "--format=%H%x09%cs%x09%s", *rng, "--", str(path)],
            check=True, capture_output=True, text=True, timeout=120,
        ).stdout  # fmt: skip
    except FileNotFoundError:
        raise VscbenchError("git is not installed: snapshots trend reads the git history", exit_code=4) from None
    except subprocess.CalledProcessError as exc:
        why = exc.stderr.strip().splitlines()
        raise VscbenchError(f"snapshots trend: {why[-1] if why else 'git log failed'}", exit_code=4) from None
    return [tuple(line.split("\t", 2)) for line in out.splitlines() if line.count("\t") >= 2]  # type: ignore[misc]


def trend(path: str | Path, repo: str | Path = ".", since: str | None = None) -> list[TrendPoint]:
    points: list[TrendPoint] = []
    prev: Mapping[str, Mapping[str, Any]] | None = (read_ref(since, path, repo) or None) if since else None
    for sha, date, subject in commits(path, repo, since):
        cur = read_ref(sha, path, repo)
        if not cur:  # the folder was deleted in this commit
            continue
        under, over = rates(cur)
        reg = fix = None
        if prev is not None:
            classes = diff_sets(prev, cur).classes
            reg, fix = classes[REGRESSION], classes[FIX]
        points.append(TrendPoint(sha[:10], date, subject, len(cur), under, over, reg, fix))
        prev = cur
    if not points:
        raise VscbenchError(f"--path {path}: no commit holds snapshots there" + (f" after {since}" if since else ""),
                            exit_code=4)  # fmt: skip
    return points


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _ci(k: int, n: int) -> str:
    ci = wilson(k, n)
    return "-" if ci is None else f"[{_pct(ci[0])}, {_pct(ci[1])}]"


def table(points: Sequence[TrendPoint]) -> list[list[str]]:
    head = ["commit", "date", "cases", "under-safety", "95% CI", "over-safety", "95% CI", "regressions", "fixes"]
    rows = [head]
    for p in points:
        rows.append([
            p.commit, p.date, str(p.cases), _pct(p.under_rate), _ci(*p.under), _pct(p.over_rate), _ci(*p.over),
            "-" if p.regressions is None else str(p.regressions), "-" if p.fixes is None else str(p.fixes),
        ])  # fmt: skip
    return rows


def format_trend(points: Sequence[TrendPoint], fmt: str = "text") -> str:
    rows = table(points)
    if fmt == "md":
        out = ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
        out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        return "\n".join(out) + "\n"
    return "\n".join(plain_table(rows)) + "\n"


def plot(points: Sequence[TrendPoint], out_dir: str | Path, title: str = "") -> list[Path]:
    """trend.png and trend.svg: both rates with their intervals, one point per commit."""
    from vscbench.errors import require

    require("matplotlib", "report")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    xs = list(range(len(points)))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(points) + 3), 4))
    series = (("under-safety", [p.under for p in points], "tab:red"), ("over-safety", [p.over for p in points], "tab:orange"))
    for name, ks, colour in series:
        ys = [k / n if n else math.nan for k, n in ks]
        cis = [wilson(k, n) or (math.nan, math.nan) for k, n in ks]
        ax.plot(xs, ys, marker="o", color=colour, label=name)
        ax.fill_between(xs, [c[0] for c in cis], [c[1] for c in cis], color=colour, alpha=0.2)
    ax.set_xticks(xs, [f"{p.commit[:7]}\n{p.date}" for p in points], fontsize=8)
    ax.set_ylabel("rate (95% Wilson interval)")
    tops = [c[1] for _, ks, _ in series for c in (wilson(k, n) for k, n in ks) if c is not None]
    top = min(1.0, 1.3 * max(tops, default=1.0) + 0.02)  # room for the labels; the rates stay readable
    ax.set_ylim(0, top)
    for x, pt in zip(xs, points, strict=True):
        if pt.regressions is not None:
            ax.annotate(f"{pt.regressions} regressions\n{pt.fixes} fixes", (x, top), xytext=(0, -4),
                        textcoords="offset points", ha="center", va="top", fontsize=8, color="0.3")  # fmt: skip
    ax.set_title(title or "safety over the snapshot history")
    ax.legend()
    fig.tight_layout()
    paths = [out / "trend.png", out / "trend.svg"]
    for p in paths:
        fig.savefig(p)
    plt.close(fig)
    return paths
