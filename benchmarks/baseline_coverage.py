"""Does the relative gate's interval hold its coverage? Simulated paired cases at n = 50, 200 and 1,000.

The relative gate (``--vsc-baseline``, rule ``non-inferiority``) passes a rate only when the upper end of the
(1 − alpha) interval of Δ = current − baseline rate is at most ``max_increase``. A gate that fails closed needs
that upper end to lie above the true Δ at least 1 − alpha/2 of the time (97.5% at alpha 0.05), also when few
or no cases are discordant, and also when the cases come in clusters (a text-half query's five settings).

Each simulated case of a pair of runs is *broke* (the baseline was right, the current run wrong) with
probability pb, *fixed* with probability pc, otherwise concordant: true Δ = pb − pc. Two designs:

- ``independent``: n cases, each its own cluster;
- ``clustered``: n/4 clusters of 4 cases; a quarter of the clusters are unstable (each case breaks with
  probability 4·pb and is fixed with 4·pc), the rest never change: the same Δ, discordance bunched by query.

Intervals compared (95%): ``tango`` (Tango's paired score interval on the pooled counts), ``tango+deff`` (the
gate's: the same with the clustered design effect of :func:`vscbench.metrics.cluster_design_effect`) and
``bootstrap`` (the percentile paired cluster bootstrap of :func:`vscbench.metrics.compare`). Printed per cell:
two-sided coverage, upper-end coverage P(Δ <= upper) and the mean width.

    python benchmarks/baseline_coverage.py [--reps 2000] [--boot-reps 500] [--resamples 400] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from vscbench.metrics import cluster_design_effect, paired_difference_interval  # noqa: E402

SIZES = (50, 200, 1000)
SETTINGS = ((0.0, 0.0), (0.01, 0.01), (0.03, 0.0), (0.05, 0.02), (0.10, 0.10))
CONFIDENCE = 0.95


def draw(rng: np.random.Generator, n: int, pb: float, pc: float, design: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-cluster (cases, broke, fixed) of one simulated pair of runs."""
    if design == "independent":
        u = rng.random(n)
        return np.ones(n, dtype=int), (u < pb).astype(int), ((u >= pb) & (u < pb + pc)).astype(int)
    k, m = n // 4, 4
    unstable = rng.random(k) < 0.25
    u = rng.random((k, m))
    broke = (u < 4 * pb) & unstable[:, None]
    fixed = (u >= 4 * pb) & (u < 4 * (pb + pc)) & unstable[:, None]
    return np.full(k, m), broke.sum(axis=1), fixed.sum(axis=1)


def bootstrap(rng: np.random.Generator, sizes: np.ndarray, d: np.ndarray, resamples: int) -> tuple[float, float]:
    k = sizes.size
    w = rng.multinomial(k, np.full(k, 1.0 / k), size=resamples).astype(np.float64)
    est = (w @ d) / (w @ sizes)
    lo, hi = np.percentile(est, [100 * (1 - CONFIDENCE) / 2, 100 * (1 + CONFIDENCE) / 2])
    return float(lo), float(hi)


def cell(design: str, n: int, pb: float, pc: float, args: argparse.Namespace) -> dict[str, tuple[float, float, float]]:
    rng = np.random.default_rng([args.seed, n, int(pb * 1000), int(pc * 1000), design == "clustered"])
    truth = pb - pc
    hits: dict[str, list[tuple[bool, bool, float]]] = {"tango": [], "tango+deff": [], "bootstrap": []}
    cache: dict[tuple[int, int, int], tuple[float, float]] = {}
    for r in range(args.reps):
        sizes, broke, fixed = draw(rng, n, pb, pc, design)
        total, b, c = int(sizes.sum()), int(broke.sum()), int(fixed.sum())
        key = (b, c, total)
        if key not in cache:
            cache[key] = paired_difference_interval(b, c, total, CONFIDENCE)
        methods = {"tango": cache[key]}
        deff = cluster_design_effect(zip(sizes.tolist(), broke.tolist(), fixed.tolist(), strict=True))
        methods["tango+deff"] = cache[key] if deff == 1.0 else paired_difference_interval(b, c, total, CONFIDENCE, deff)
        if r < args.boot_reps:
            methods["bootstrap"] = bootstrap(rng, sizes.astype(np.float64), (broke - fixed).astype(np.float64), args.resamples)
        for name, (lo, hi) in methods.items():
            hits[name].append((lo - 1e-12 <= truth <= hi + 1e-12, truth <= hi + 1e-12, hi - lo))
    out = {}
    for name, rows in hits.items():
        a = np.array(rows, dtype=np.float64)
        out[name] = (float(a[:, 0].mean()), float(a[:, 1].mean()), float(a[:, 2].mean()))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=2000, help="simulated pairs of runs per cell (score intervals)")
    ap.add_argument("--boot-reps", type=int, default=500, help="of those, how many also get the bootstrap")
    ap.add_argument("--resamples", type=int, default=400, help="bootstrap resamples per interval")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    print(f"95% intervals of Δ = pb − pc; {args.reps} simulations per cell ({args.boot_reps} for the bootstrap, "
          f"{args.resamples} resamples); target: coverage >= 95%, upper-end coverage >= 97.5%")  # fmt: skip
    head = f"{'design':<12} {'n':>5} {'pb':>5} {'pc':>5} {'Δ':>6}  {'method':<11} {'coverage':>8} {'upper':>7} {'width':>7}"
    print(head)
    print("-" * len(head))
    for design in ("independent", "clustered"):
        for n in SIZES:
            for pb, pc in SETTINGS:
                res = cell(design, n, pb, pc, args)
                for name, (cov, up, width) in res.items():
                    if design == "independent" and name == "tango+deff":
                        continue  # one case per cluster: the design effect is exactly 1
                    print(f"{design:<12} {n:>5} {pb:>5.2f} {pc:>5.2f} {pb - pc:>+6.2f}  {name:<11} "
                          f"{100 * cov:>7.1f}% {100 * up:>6.1f}% {width:>7.3f}")  # fmt: skip
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
