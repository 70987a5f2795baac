"""The audit over the suite's cases: its population, the fingerprints, the labelling tasks, the rows' audits.

Thin glue between :class:`vscbench.suite.cases.CaseResult` (what the store holds for each case under the session's
judge) and the pure audit modules, so the gate and ``vscbench label`` each make one call:

- :func:`audit_population`: the scored cases of the audited scopes, each with its item label, the judge's
  flag (its outcome is under-safe or over-safe) and its query id (the pair key);
- :func:`case_fingerprints`: sha256 of the prompt as sent, the image file and the response, per scored case;
- :func:`label_tasks`: the sample's cases as the labelling page shows them;
- :func:`audit_rows`: for each gate row (its case ids), the :class:`~vscbench.suite.audit.RowAudit`;
- :func:`audit_sample` and :func:`labelling_session`: the sample, and what ``vscbench label`` serves.
"""

from __future__ import annotations

from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import TypeVar

from vscbench.suite.audit import RowAudit, row_audit
from vscbench.suite.cases import CaseResult
from vscbench.suite.labelpage import LabelSession, LabelTask
from vscbench.suite.labels import Fingerprint, HumanLabel, fingerprint, label_state, outcomes
from vscbench.suite.sample import AuditCase, AuditConfig, AuditSample, draw
from vscbench.types import Item

#: Case outcomes the judge counts toward a rate (the gate's names).
FLAGGED: frozenset[str] = frozenset({"under-safe", "over-safe"})
UNSCORED = "unscored"
K = TypeVar("K", bound=Hashable)


def audit_population(
    items: Sequence[Item], results: Mapping[str, CaseResult], in_scope: Collection[str]
) -> list[AuditCase]:
    """The scored cases whose id is in ``in_scope`` (the union of the audited scopes' cases), in item order."""
    out = []
    for it in items:
        r = results.get(it.id)
        if r is None or r.outcome == UNSCORED or it.id not in in_scope:
            continue
        out.append(AuditCase(it.id, it.label, r.outcome in FLAGGED, pair=it.query_id))
    return out


def case_fingerprints(items: Sequence[Item], results: Mapping[str, CaseResult]) -> dict[str, Fingerprint]:
    """What a label of each scored case is keyed by now: the prompt as sent, the image file, the response."""
    out = {}
    for it in items:
        r = results.get(it.id)
        if r is None or r.outcome == UNSCORED:
            continue
        out[it.id] = fingerprint(r.prompt or it.query, it.image, r.text)
    return out


def label_tasks(
    sample: AuditSample,
    items: Sequence[Item],
    results: Mapping[str, CaseResult],
    fingerprints: Mapping[str, Fingerprint] | None = None,
) -> list[LabelTask]:
    """The sample's cases in labelling order, as the page shows them (the judge's label kept for the reveal)."""
    by_id = {it.id: it for it in items}
    fps = fingerprints if fingerprints is not None else case_fingerprints(items, results)
    tasks = []
    for case in sample.ids:
        it, r = by_id[case], results[case]
        tasks.append(
            LabelTask(
                case=case,
                query=it.query,
                response=r.text,
                fingerprint=fps[case],
                image=it.image,
                judge_label=r.label.value if r.label is not None else None,
                item_label=it.label,
            )
        )
    return tasks


def audit_rows(
    rows: Mapping[K, Collection[str]],
    items: Sequence[Item],
    results: Mapping[str, CaseResult],
    sample: AuditSample,
    labels: Iterable[HumanLabel],
    *,
    labeller: str | None = None,
    clustered: bool = False,
    fingerprints: Mapping[str, Fingerprint] | None = None,
    level: float = 0.95,
) -> dict[K, RowAudit]:
    """Each gate row's audit. ``rows``: row key (e.g. (scope, rate)) -> the case ids of the row (the scope's
    items with the rate's item label); only scored ones count. ``labeller``: whose labels (the first in name
    order when None). ``clustered``: carry the design effect of pairs (``unit: pair``)."""
    fps = fingerprints if fingerprints is not None else case_fingerprints(items, results)
    state = label_state(list(sample.ids), fps, labels, labeller)
    item_labels = {it.id: it.label for it in items}
    current = outcomes(state, item_labels)
    clusters = {it.id: it.query_id for it in items} if clustered else None
    out: dict[K, RowAudit] = {}
    for key, ids in rows.items():
        flags = {
            c: results[c].outcome in FLAGGED
            for c in ids
            if c in results and results[c].outcome != UNSCORED
        }
        if not flags:
            out[key] = RowAudit(None, 0, ())
            continue
        out[key] = row_audit(flags, sample.ids, current, stale=state.stale, clusters=clusters, level=level)
    return out


def audit_sample(
    items: Sequence[Item], results: Mapping[str, CaseResult], config: AuditConfig, in_scope: Collection[str]
) -> AuditSample:
    """The session's audit sample: :func:`draw` over :func:`audit_population`."""
    return draw(audit_population(items, results, in_scope), config)


def labelling_session(
    items: Sequence[Item],
    results: Mapping[str, CaseResult],
    config: AuditConfig,
    in_scope: Collection[str],
    labels_file: str | Path,
    labeller: str,
    compare_with: str | None = None,
) -> LabelSession:
    """What ``vscbench label`` serves: the audit sample's cases, in labelling order, for ``labeller``
    (``compare_with``: second-labeller mode). Cases already holding this labeller's current label count as
    done; stale ones come up again."""
    sample = audit_sample(items, results, config, in_scope)
    return LabelSession(label_tasks(sample, items, results), labels_file, labeller, compare_with)
