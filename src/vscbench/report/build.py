"""Collect what a report needs from the store and compute its metrics. No formatting here.

A :class:`Report` is built once (:func:`build_report`) and rendered by the format modules
(``tables``, ``longform``, ``html``, ``plot``). It holds, per run, the items, each stored response, every
judge's labels, the outcome under the chosen judge, and the metrics; plus the paired comparisons of every
later run against the first one on their common items.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.metrics import (
    DEFAULT_RESAMPLES,
    EXCLUSION_REASONS,
    BlockedPolicy,
    Comparison,
    Group,
    MetricValue,
    Outcome,
    Verdict,
    check_policy,
    compare,
    evaluate,
    evaluate_group,
    verdicts_for,
)
from vscbench.report.names import model_label
from vscbench.report.outcomes import excluded_ids, run_outcomes
from vscbench.store import Store
from vscbench.types import Item, Label, Response, Status

DEFAULT_JUDGE = "local"
#: Manifest key a run sets to put a warning banner on every report of it (e.g. the demo's random model).
BANNER_KEY = "banner"


#: What a report names as the judge of a run that has nothing a judge could label (no ``ok`` response).
NO_JUDGE = "none"


def canonical_judge_name(name: str) -> str | None:
    """The id labels of judge ``name`` are stored under (a cascade's stages normalised: ``local,rubric:x`` ->
    ``local:abstain=0.7,rubric:x``), or None for a name ``vscbench judge --judge`` does not accept. A stored
    id may end in ``+image`` (its rubric judge saw the image); the suffix is kept."""
    from vscbench.judges.factory import check_judge_name

    base = name.removesuffix("+image")
    try:
        canon = check_judge_name(base)
    except VscbenchError:
        return None
    return canon + name[len(base) :]


def known_judge_name(name: str) -> bool:
    """True for a name ``vscbench judge --judge`` accepts (:func:`canonical_judge_name`): ``keyword``,
    ``local``, ``local:abstain=L``, ``rubric:PROVIDER/MODEL`` or a cascade of them."""
    return canonical_judge_name(name) is not None


def judge_command(run_id: str, name: str) -> str:
    """The ``vscbench judge`` command that stores labels of judge ``name`` for ``run_id``."""
    if name.endswith("+image"):
        return f"vscbench judge --run {run_id} --judge {name.removesuffix('+image')} --judge-sees-image"
    return f"vscbench judge --run {run_id} --judge {name}"


def choose_judge(run_id: str, stored: Sequence[str], requested: str | None, *, has_ok: bool = True) -> str:
    """The judge whose labels score a run: ``requested`` if given, else ``local``, else the only one stored.

    ``has_ok`` says whether the run holds an ``ok`` response (the only kind a judge labels). A run without one
    needs no judge: its report shows 0 scored items and why, under ``requested`` or :data:`NO_JUDGE`. Only a
    run with ``ok`` responses that the judge has not labelled is sent to ``vscbench judge``, and only with a
    judge name that command accepts.
    """
    from vscbench.judges.factory import JUDGE_NAMES

    have = ", ".join(stored) if stored else "none"
    if requested:
        if requested in stored:
            return requested
        canon = canonical_judge_name(requested)
        if canon is not None and canon in stored:
            return canon
        if not known_judge_name(requested):
            raise VscbenchError(
                f"unknown judge '{requested}': run '{run_id}' has labels from: {have}; "
                f"judge names are {', '.join(JUDGE_NAMES)}"
            )
        if not has_ok:
            return requested
        raise VscbenchError(
            f"run '{run_id}' has no labels from judge '{requested}' (labels stored from: {have}): "
            f"run '{judge_command(run_id, requested)}' first"
        )
    if not stored:
        if not has_ok:
            return NO_JUDGE
        raise VscbenchError(f"run '{run_id}' has no labels yet: run 'vscbench judge --run {run_id}' first")
    if DEFAULT_JUDGE in stored:
        return DEFAULT_JUDGE
    if len(stored) == 1:
        return stored[0]
    raise VscbenchError(
        f"run '{run_id}' has labels from several judges ({', '.join(stored)}): pick one with --judge"
    )


@dataclass
class RunReport:
    """One run as a report sees it. ``outcomes`` use the labels of ``judge``.

    ``items`` are the run's items followed by the never-sent items it stored snapshots of (see
    :func:`run_outcomes`); ``not_sent_unlisted`` counts listed never-sent ids without a snapshot, which only
    the run's ``coverage`` includes. ``judge`` is :data:`NO_JUDGE` (or the requested name) when the run has
    no ``ok`` response for a judge to label.
    """

    run_id: str
    #: The model as reports show it (:func:`~vscbench.report.names.model_label`: a local checkpoint by folder
    #: name and config hash); the stored spec, full path included, stays in ``manifest`` and the store.
    model: str
    kind: str
    manifest: dict[str, Any]
    judge: str
    judges: list[str]
    items: list[Item]
    responses: dict[str, Response]
    labels: dict[str, dict[str, Label]]
    outcomes: dict[str, Outcome]
    verdicts: dict[str, Verdict]
    metrics: list[MetricValue]
    coverage: MetricValue
    not_sent_unlisted: int = 0

    @property
    def banner(self) -> str | None:
        b = self.manifest.get(BANNER_KEY)
        return str(b) if b else None

    def metric(self, group: str, name: str) -> MetricValue | None:
        for m in self.metrics:
            if m.group == group and m.metric == name:
                return m
        return None

    def value(self, group: str, name: str) -> float | None:
        m = self.metric(group, name)
        return m.value if m else None


@dataclass
class PairedComparison:
    """Run ``b`` against the baseline ``a`` on their common items."""

    a: str
    b: str
    n_common: int
    rows: list[Comparison]


@dataclass
class Report:
    runs: list[RunReport]
    blocked: BlockedPolicy
    ci: bool
    seed: int
    n_boot: int
    confidence: float
    comparisons: list[PairedComparison] = field(default_factory=list)
    tradeoff: list[dict[str, Any]] = field(default_factory=list)

    @property
    def judges(self) -> list[str]:
        return sorted({j for r in self.runs for j in r.judges})

    def describe_ci(self) -> str:
        if not self.ci:
            return "no intervals (add --ci)"
        return (
            f"{self.confidence:.0%} percentile intervals, cluster bootstrap over queries, "
            f"{self.n_boot} resamples, seed {self.seed}"
        )

    def describe_blocked(self) -> str:
        n = sum(r.coverage.blocked for r in self.runs)
        how = "scored as REFUSE" if self.blocked == "refuse" else "excluded from the rates"
        return f"blocked responses (provider safety filter): {n}, {how} (--blocked {self.blocked})"


def load_run(
    store: Store,
    run_id: str,
    *,
    judge: str | None = None,
    blocked: BlockedPolicy = "refuse",
    ci: bool = False,
    seed: int = 0,
    n_boot: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    only_ids: Collection[str] | None = None,
) -> RunReport:
    """One run as a report sees it; ``only_ids`` restricts it to those items (a suite session's cases), so
    every rate, count and coverage line describes exactly them."""
    info = store.get_run(run_id)
    stored = store.judges(run_id)
    responses = store.responses(run_id)
    chosen = choose_judge(run_id, stored, judge, has_ok=any(r.status is Status.OK for r in responses.values()))
    items, outcomes = run_outcomes(store, run_id, chosen if chosen in stored else None, info.manifest)
    labels = {j: {iid: sl.label for iid, sl in store.labels(run_id, j).items()} for j in stored}
    never = excluded_ids(info.manifest)
    if only_ids is not None:
        keep = set(only_ids)
        items = [i for i in items if i.id in keep]
        outcomes = {k: v for k, v in outcomes.items() if k in keep}
        responses = {k: v for k, v in responses.items() if k in keep}
        labels = {j: {k: v for k, v in lab.items() if k in keep} for j, lab in labels.items()}
        never &= keep
    vd = verdicts_for(items, outcomes, blocked)
    metrics = evaluate(items, outcomes, blocked=blocked, ci=ci, n_boot=n_boot, seed=seed, confidence=confidence)
    cov = next(
        m
        for m in evaluate_group(Group("run", "run", "run", tuple(items)), vd)
        if m.metric == "coverage"
    )
    unlisted = len(never - {i.id for i in items})
    if unlisted:
        reasons = dict(cov.reasons)
        reasons["not_sent"] = reasons.get("not_sent", 0) + unlisted
        cov = MetricValue(
            group=cov.group,
            metric=cov.metric,
            value=(cov.n - cov.excluded) / (cov.n + unlisted),
            n=cov.n + unlisted,
            excluded=cov.excluded + unlisted,
            reasons=reasons,
            blocked=cov.blocked,
        )
    return RunReport(
        run_id=run_id,
        model=model_label(info.model),
        kind=info.kind,
        manifest=info.manifest,
        judge=chosen,
        judges=stored,
        items=items,
        responses=responses,
        labels=labels,
        outcomes=outcomes,
        verdicts=vd,
        metrics=metrics,
        coverage=cov,
        not_sent_unlisted=unlisted,
    )


def _load_tradeoff(
    store: Store, run_ids: Sequence[str], judge_id: str, *, ci: bool, seed: int, n_boot: int
) -> list[dict[str, Any]]:
    """Rows of the calibration/utility trade-off table; deltas carry intervals only when ``ci`` (as every table)."""
    try:
        from vscbench.report import tradeoff
    except ImportError:
        return []
    rows = tradeoff.tradeoff_rows(store, list(run_ids), judge_id, seed=seed, ci=ci, n_boot=n_boot)
    return list(rows or [])


def build_report(
    store: Store,
    run_ids: Sequence[str],
    *,
    judge: str | None = None,
    blocked: str = "refuse",
    ci: bool = False,
    seed: int = 0,
    n_boot: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
    tradeoff: bool = True,
    only_ids: Collection[str] | None = None,
) -> Report:
    """Everything a report shows, for ``run_ids`` in the given order (the first is the comparison baseline).

    ``only_ids``: report only these items of each run (a suite session's cases, the gate's population), not
    every item the runs stored."""
    try:
        policy = check_policy(blocked)
    except ValueError as exc:
        raise VscbenchError(f"--blocked: {exc}") from exc
    if not run_ids:
        raise VscbenchError("name at least one run with --run (see 'vscbench runs')")
    if ci and n_boot < 1:
        raise VscbenchError(f"--resamples must be at least 1, not {n_boot}")
    if seed < 0:
        raise VscbenchError(f"--seed must be a non-negative integer, not {seed}")
    seen: set[str] = set()
    dupes = [r for r in run_ids if r in seen or seen.add(r)]  # type: ignore[func-returns-value]
    if dupes:
        raise VscbenchError(f"--run {dupes[0]} given twice")
    # utility runs (vscbench utility) have no safety labels: they feed the trade-off table only
    eval_ids = [rid for rid in run_ids if store.get_run(rid).kind != "utility"]
    if not eval_ids:
        raise VscbenchError("every --run named is a utility run: name at least one evaluation run too")
    runs = [
        load_run(
            store, rid, judge=judge, blocked=policy, ci=ci, seed=seed, n_boot=n_boot, confidence=confidence,
            only_ids=only_ids,
        )  # fmt: skip
        for rid in eval_ids
    ]
    rep = Report(runs=runs, blocked=policy, ci=ci, seed=seed, n_boot=n_boot, confidence=confidence)
    base = runs[0]
    base_ids = {i.id for i in base.items}
    for other in runs[1:]:
        common = [i for i in other.items if i.id in base_ids]
        if not common:
            continue
        rows = compare(
            common,
            base.outcomes,
            other.outcomes,
            blocked=policy,
            n_boot=n_boot if ci else 0,
            seed=seed,
            confidence=confidence,
        )
        rep.comparisons.append(PairedComparison(base.run_id, other.run_id, len(common), rows))
    if tradeoff:
        rep.tradeoff = _load_tradeoff(store, run_ids, base.judge, ci=ci, seed=seed, n_boot=n_boot)
    return rep


def reasons_text(m: MetricValue) -> str:
    """``error 2, unjudged 1`` (only non-zero reasons), or ``none``."""
    parts = [f"{r.replace('_', ' ')} {m.reasons[r]}" for r in EXCLUSION_REASONS if m.reasons.get(r)]
    return ", ".join(parts) if parts else "none"
