"""The audit over the suite's cases: its population, the fingerprints, the labelling tasks, the rows' audits.

Thin glue between :class:`vscbench.suite.cases.CaseResult` (what the store holds for each case under the session's
judge) and the pure audit modules, so the gate and ``vscbench label`` each make one call:

- :func:`audit_population`: the scored cases of the audited scopes, each with its item label, the judge's
  flag (its outcome is under-safe or over-safe) and its query id (the pair key);
- :func:`case_fingerprints`: sha256 of the prompt as sent, the image file and the response, per scored case;
- :func:`label_tasks`: the sample's cases as the labelling page shows them;
- :func:`audit_rows`: for each gate row (its case ids), the :class:`~vscbench.suite.audit.RowAudit`;
- :func:`audit_sample` and :func:`labelling_session`: the sample, and what ``vscbench label`` serves;
- :func:`session_audit`: what the suite's controller calls once at the gate: every audited row's
  :class:`~vscbench.suite.audit.RowAudit` from the store, the labels file and the thresholds, with the
  labelling tasks written to a file that ``vscbench label`` serves (:func:`tasks_file`, :func:`load_tasks`).
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from collections.abc import Collection, Hashable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from vscbench.errors import VscbenchError
from vscbench.metrics import BlockedPolicy
from vscbench.store import Store, default_store_path
from vscbench.suite.audit import RowAudit, row_audit
from vscbench.suite.cases import CaseResult, read_results
from vscbench.suite.gate import Thresholds, audit_requests, scope_case_ids
from vscbench.suite.labelpage import LabelSession, LabelTask
from vscbench.suite.labels import Fingerprint, HumanLabel, fingerprint, label_state, load_labels, outcomes
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


# -- the suite's session: the gate's audits, and the tasks vscbench label serves ---------------------------

TASKS_VERSION = 1


def tasks_file(store: str | os.PathLike[str] | None, model: str) -> Path:
    """Where a session leaves the labelling tasks of ``model`` (a snapshot folder name): beside the store,
    ``<store folder>/audit/<model>.json`` (never committed: it holds the responses; the labels are committed)."""
    base = Path(store) if store is not None else default_store_path()
    return base.parent / "audit" / f"{model}.json"


def _task_doc(t: LabelTask) -> dict[str, Any]:
    fp = t.fingerprint
    return {
        "case": t.case, "query": t.query, "response": t.response, "image": t.image, "judge_label": t.judge_label,
        "item_label": t.item_label, "fingerprint": {"prompt": fp.prompt, "image": fp.image, "response": fp.response},
    }  # fmt: skip


def write_tasks(path: Path, model: str, labels_file: Path, tasks: Sequence[LabelTask], source: str) -> None:
    """The labelling tasks as one JSON file, written atomically (a reader never sees half of it)."""
    doc = {
        "version": TASKS_VERSION, "model": model, "labels_file": str(Path(labels_file).resolve()),
        "thresholds": source, "tasks": [_task_doc(t) for t in tasks],
    }  # fmt: skip
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(doc, fh, indent=1, ensure_ascii=False)
            fh.write("\n")
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_tasks(path: Path) -> tuple[list[LabelTask], Path]:
    """The tasks a session left at ``path`` and the labels file they go to; one error line when absent or bad."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        if doc.get("version") != TASKS_VERSION:
            raise ValueError(f"version {doc.get('version')!r} (expected {TASKS_VERSION})")
        tasks = [
            LabelTask(
                case=str(t["case"]), query=str(t["query"]), response=str(t["response"]),
                fingerprint=Fingerprint(t["fingerprint"]["prompt"], t["fingerprint"]["image"],
                                        t["fingerprint"]["response"]),
                image=t.get("image"), judge_label=t.get("judge_label"), item_label=str(t.get("item_label", "")),
            )  # fmt: skip
            for t in doc["tasks"]
        ]
        return tasks, Path(doc["labels_file"])
    except FileNotFoundError:
        raise VscbenchError(
            f"{path}: no labelling tasks here: run the suite with an audit: section in its thresholds first "
            "(pytest --model=M), which writes them"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise VscbenchError(f"{path}: not a labelling-tasks file ({exc})") from None


def find_tasks(store: str | os.PathLike[str] | None, model: str) -> Path:
    """The tasks file of ``model`` (a snapshot folder name, or the alias or spec given to pytest), one error
    line naming the models that have one when none matches."""
    folder = tasks_file(store, "_").parent
    if re.fullmatch(r"[A-Za-z0-9._-]+", model) and (folder / f"{model}.json").is_file():
        return folder / f"{model}.json"
    have = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", model).strip("_.")
    close = [h for h in have if h == safe or h.startswith(safe + "-")]
    if len(close) == 1:
        return folder / f"{close[0]}.json"
    known = f"; models with tasks: {', '.join(have)}" if have else ""
    raise VscbenchError(
        f"no labelling tasks for model {model} in {folder}: run the suite (pytest --model={model}) with an audit: "
        f"section in its thresholds first{known}"
    )


def session_audit(
    *,
    store: str | os.PathLike[str] | None,
    run_id: str,
    items: Sequence[Item],
    judge_id: str,
    thresholds: Thresholds,
    model_names: Sequence[str],
    model_dir: str,
    labels_file: Path,
    blocked: BlockedPolicy = "refuse",
) -> dict[tuple[str, str], RowAudit] | None:
    """What the suite's controller calls at the gate (None without an audit for this model).

    ``items``: the cases the gate decides on; their responses and the judge's labels are read from the store
    (run ``run_id``, judge ``judge_id``), the sample drawn from the audited scopes' scored cases and the salt,
    the labels read from ``labels_file`` and matched to the responses' fingerprints now. The sample's cases are
    written as labelling tasks (:func:`tasks_file` of ``model_dir``) for ``vscbench label``. Returns every
    audited row's audit, keyed by (scope, rate name), for :func:`vscbench.suite.gate.decide`."""
    cfg = thresholds.audit_config(model_names)
    if cfg is None:
        return None
    rows = audit_requests(items, thresholds, model_names)
    with Store(store, create=False) as st:
        results = read_results(st, run_id, items, judge_id, blocked)
    in_scope = scope_case_ids(items, cfg.scopes)
    sample = draw(audit_population(items, results, in_scope), cfg)
    fps = case_fingerprints(items, results)
    if sample.ids:
        tasks = label_tasks(sample, items, results, fps)
        write_tasks(tasks_file(store, model_dir), model_dir, labels_file, tasks, thresholds.source)
    labels = load_labels(labels_file)
    return audit_rows(rows, items, results, sample, labels, clustered=cfg.unit == "pair", fingerprints=fps)


def label_session(
    store: str | os.PathLike[str] | None, model: str, labeller: str, compare_with: str | None = None
) -> LabelSession:
    """What ``vscbench label --model M`` serves: the tasks the last suite session of ``model`` left."""
    tasks, labels_file = load_tasks(find_tasks(store, model))
    return LabelSession(tasks, labels_file, labeller, compare_with)
