"""Label a stored run with one or more judges; compare judges on it.

Invariants of :func:`judge_run`:

- only responses with status ``ok`` are judged; ``error``/``blocked``/``empty`` responses get no label here
  (the metrics stage decides how they count) and are reported as skipped; items never answered (pending)
  are counted and reported apart;
- each judge's labels are stored under that judge's own id, as they come (in batches), so a killed run
  keeps what was judged and a second judge needs no new model call;
- cached: an item already labelled by a judge is not judged again unless ``force``; an UNJUDGED label is
  not a label, so those items are judged again on the next call; nor is a label that another build of the
  judge gave (its stored fingerprint differs from the judge's, see ``judges.base``): it is judged again
  and counted as ``stale``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from vscbench.judges.base import FINGERPRINT_KEY, Case, Judge, Verdict, judge_fingerprint
from vscbench.judges.cascade import CascadeJudge, PassedOn
from vscbench.judges.validate import cohen_kappa, kappa_text
from vscbench.store import Store, StoredLabel
from vscbench.types import Label, Status

#: Labels are committed in batches of this many verdicts.
COMMIT_EVERY = 64


@dataclass
class JudgeResult:
    """What one judge did on one run. ``counts`` covers every label it has stored for the run."""

    judge_id: str
    judged: int
    cached: int
    skipped: dict[str, int]
    counts: dict[str, int]
    #: Items of the run with no response yet (never answered): nothing to judge.
    pending: int = 0
    #: Of the ``judged`` items (judged this call), how many came out UNJUDGED, and the most common reason.
    unjudged_now: int = 0
    unjudged_reason: str | None = None
    #: For a cascade (``local,rubric:…``): of its stored labels, how many each later stage decided or saw.
    passed_on: PassedOn | None = None
    #: Of the ``judged`` items, those that replaced a label another build of the judge had stored.
    stale_ids: frozenset[str] = frozenset()

    @property
    def stale(self) -> int:
        return len(self.stale_ids)

    @property
    def labelled_nothing(self) -> bool:
        """True when the judge judged items this call and every one came out UNJUDGED."""
        return self.judged > 0 and self.unjudged_now == self.judged

    def to_dict(self) -> dict[str, Any]:
        return {
            "judge": self.judge_id,
            "judged": self.judged,
            "cached": self.cached,
            "skipped": self.skipped,
            "pending": self.pending,
            "counts": self.counts,
            "unjudged_now": self.unjudged_now,
            "unjudged_reason": self.unjudged_reason,
            "stale": self.stale,
            **({"passed_on": self.passed_on.to_dict()} if self.passed_on is not None else {}),
        }


@dataclass(frozen=True)
class Disagreement:
    item_id: str
    labels: tuple[str, str]
    #: 2 = they differ on safety-aware vs not, 1 = same side, different class.
    severity: int
    confidence: float
    snippet: str


@dataclass
class PairAgreement:
    """Cohen's kappa between two judges over the items both have judged (UNJUDGED left out)."""

    judges: tuple[str, str]
    n: int
    kappa: float
    agree: int
    disagreements: list[Disagreement] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "judges": list(self.judges),
            "n": self.n,
            "kappa": None if self.kappa != self.kappa else round(self.kappa, 4),
            "agree": self.agree,
            "disagreements": [
                {"item_id": d.item_id, "labels": list(d.labels), "severity": d.severity}
                for d in self.disagreements
            ],
        }


@dataclass
class JudgeRunReport:
    run_id: str
    results: list[JudgeResult]
    pairs: list[PairAgreement]

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "judges": [r.to_dict() for r in self.results],
            "pairs": [p.to_dict() for p in self.pairs],
        }


def _resolve(judges: Sequence[str | Judge], options: dict[str, Any]) -> list[Judge]:
    from vscbench.judges.factory import make_judge

    out: list[Judge] = []
    for j in judges:
        out.append(make_judge(j, **options) if isinstance(j, str) else j)
    ids = [j.id for j in out]
    dup = [i for i, n in Counter(ids).items() if n > 1]
    if dup:
        from vscbench.errors import VscbenchError

        raise VscbenchError(f"judge '{dup[0]}' given twice")
    return out


def cases_of(store: Store, run_id: str) -> tuple[list[Case], dict[str, int]]:
    """The ``ok`` responses of a run as cases (in item order), and the other statuses counted."""
    items = {it.id: it for it in store.run_items(run_id)}
    order = {iid: k for k, iid in enumerate(items)}
    responses = store.responses(run_id)
    skipped: Counter[str] = Counter()
    cases: list[Case] = []
    for iid in sorted(responses, key=lambda i: (order.get(i, len(order)), i)):
        r = responses[iid]
        if r.status is not Status.OK:
            skipped[r.status.value] += 1
            continue
        it = items.get(iid)
        cases.append(Case(iid, it.query if it else "", r.text, it.image if it else None))
    return cases, dict(sorted(skipped.items()))


def pending_count(store: Store, run_id: str) -> int:
    """Items of the run that have no response at all (never answered, e.g. an interrupted run)."""
    return int(store.counts(run_id)["pending"])


def label_one_judge(
    store: Store, run_id: str, judge: Judge, cases: Sequence[Case], *, force: bool = False
) -> JudgeResult:
    """Judge the cases not yet labelled by ``judge`` (all with ``force``), committing in batches."""
    have = store.labels(run_id, judge.id)
    fp = judge_fingerprint(judge)

    def reusable(iid: str) -> bool:
        s = have.get(iid)
        return s is not None and s.label.judged and (fp is None or s.detail.get(FINGERPRINT_KEY) == fp)

    todo = [c for c in cases if force or not reusable(c.item_id)]
    # labels another build of the judge gave (with force every label is judged again anyway)
    stale = frozenset(
        () if force else (c.item_id for c in todo if c.item_id in have and have[c.item_id].label.judged)
    )
    buffer: list[tuple[str, Label, dict[str, Any]]] = []
    reasons: Counter[str] = Counter()

    def flush() -> None:
        if buffer:
            store.put_labels(run_id, judge.id, buffer)
            buffer.clear()

    def on_verdict(case: Case, v: Verdict) -> None:
        buffer.append((case.item_id, v.label, {**v.detail, FINGERPRINT_KEY: fp} if fp else v.detail))
        if v.label is Label.UNJUDGED:
            reasons[str(v.detail.get("error") or "no reason given")] += 1
        if len(buffer) >= COMMIT_EVERY:
            flush()

    try:
        if todo:
            judge.judge(todo, on_verdict)
    finally:
        flush()
    ok_ids = {c.item_id for c in cases}
    stored = store.labels(run_id, judge.id)
    counts = Counter(s.label.value for iid, s in stored.items() if iid in ok_ids)
    passed_on = None
    if isinstance(judge, CascadeJudge):
        details = [s.detail for iid, s in stored.items() if iid in ok_ids]
        passed_on = PassedOn.of_details([st.id for st in judge.stages], details)
    return JudgeResult(
        judge_id=judge.id,
        judged=len(todo),
        cached=len(cases) - len(todo),
        skipped={},
        counts={lab.value: counts.get(lab.value, 0) for lab in Label},
        unjudged_now=sum(reasons.values()),
        unjudged_reason=reasons.most_common(1)[0][0] if reasons else None,
        passed_on=passed_on,
        stale_ids=stale,
    )


def _confidence(label: StoredLabel) -> float:
    p = label.detail.get("p_safety_aware")
    return abs(float(p) - 0.5) * 2.0 if isinstance(p, int | float) else 1.0


def agreement(
    a_id: str,
    a: dict[str, StoredLabel],
    b_id: str,
    b: dict[str, StoredLabel],
    texts: dict[str, str] | None = None,
    top: int = 10,
) -> PairAgreement:
    """Kappa between two judges' stored labels, and the ``top`` disagreements, worst first.

    Worst = differ on safety-aware vs not before differing only in class; then the more confident (a
    rule or an LLM counts as fully confident; ``local`` by its distance from p = 0.5); then item id.
    """
    common = sorted(i for i in set(a) & set(b) if a[i].label.judged and b[i].label.judged)
    la = [a[i].label for i in common]
    lb = [b[i].label for i in common]
    dis: list[Disagreement] = []
    for i in common:
        x, y = a[i].label, b[i].label
        if x == y:
            continue
        sev = 2 if x.safety_aware != y.safety_aware else 1
        conf = min(_confidence(a[i]), _confidence(b[i]))
        snippet = " ".join((texts or {}).get(i, "")[:200].split())[:90]
        dis.append(Disagreement(i, (x.value, y.value), sev, conf, snippet))
    dis.sort(key=lambda d: (-d.severity, -d.confidence, d.item_id))
    return PairAgreement((a_id, b_id), len(common), cohen_kappa(la, lb), len(common) - len(dis), dis[:top])


def judge_run(
    store: Store,
    run_id: str,
    judges: Sequence[str | Judge],
    *,
    force: bool = False,
    options: dict[str, Any] | None = None,
    top: int = 10,
) -> JudgeRunReport:
    """Label the ``ok`` responses of a stored run with each judge (names or judges); compare them pairwise.

    ``options`` go to :func:`~vscbench.judges.factory.make_judge` for judges given by name.
    """
    store.get_run(run_id)  # a clear error for an unknown run
    resolved = _resolve(judges, options or {})
    cases, skipped = cases_of(store, run_id)
    pending = pending_count(store, run_id)
    results = []
    for j in resolved:
        res = label_one_judge(store, run_id, j, cases, force=force)
        res.skipped = skipped
        res.pending = pending
        results.append(res)
    texts = {c.item_id: c.response for c in cases}
    ok_ids = set(texts)
    stored = {j.id: {i: s for i, s in store.labels(run_id, j.id).items() if i in ok_ids} for j in resolved}
    pairs = [
        agreement(x.id, stored[x.id], y.id, stored[y.id], texts, top)
        for k, x in enumerate(resolved)
        for y in resolved[k + 1 :]
    ]
    return JudgeRunReport(run_id, results, pairs)


def nothing_labelled(rep: JudgeRunReport) -> list[str]:
    """One line per judge that judged items this call and labelled none of them (all UNJUDGED)."""
    return [
        f"judge {r.judge_id} labelled none of the {r.judged} item(s) it judged (all UNJUDGED; most common "
        f"reason: {r.unjudged_reason})"
        for r in rep.results
        if r.labelled_nothing
    ]


def format_run_report(rep: JudgeRunReport) -> str:
    """Per-judge counts; then kappa per pair and the items they disagree on most."""
    lines = [f"run {rep.run_id}"]
    for r in rep.results:
        skipped = ", ".join(f"{k} {v}" for k, v in r.skipped.items() if v) or "none"
        again = f" ({r.stale} of them stored by another build of the judge)" if r.stale else ""
        line = f"judge {r.judge_id}: {r.judged} judged now{again}, {r.cached} cached; not judged (status): {skipped}"
        if r.pending:
            line += f"; pending {r.pending} (never answered: resume the run, then judge again)"
        lines.append(line)
        lines.append("  " + "  ".join(f"{k} {v}" for k, v in r.counts.items()))
        if r.passed_on is not None:
            lines.append(f"  cascade: {r.passed_on.text()} (abstained, of the labels stored)")
        if r.unjudged_now:
            lines.append(
                f"  {r.unjudged_now} of {r.judged} judged now came out UNJUDGED (most common reason: "
                f"{r.unjudged_reason}); judge again to retry them"
            )
    for p in rep.pairs:
        kappa = kappa_text(p.kappa, p.n)
        lines.append(
            f"Cohen's kappa {p.judges[0]} vs {p.judges[1]}: {kappa} on {p.n} items ({p.agree} agree)"
        )
        if p.disagreements:
            lines.append("  disagreements, worst first:")
            for d in p.disagreements:
                lines.append(
                    f"    {d.item_id}  {p.judges[0]}={d.labels[0]}  {p.judges[1]}={d.labels[1]}  {d.snippet!r}"
                )
    return "\n".join(lines)
