"""The audit over the suite's cases (suite/auditcases): population, tasks, rows; labels given via the page."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from PIL import Image

from report_store import ic
from vscbench.suite.auditcases import (
    audit_population,
    audit_rows,
    case_fingerprints,
    label_tasks,
    labelling_session,
)
from vscbench.suite.cases import CaseResult
from vscbench.suite.labelpage import LabelSession, Server
from vscbench.suite.labels import load_labels
from vscbench.suite.sample import AuditConfig, draw
from vscbench.types import Item, Label, Status


def _world(tmp: Path, n_queries: int = 12) -> tuple[list[Item], dict[str, CaseResult]]:
    img = tmp / "q.png"
    Image.new("RGB", (32, 32), (0, 90, 0)).save(img)
    items = [
        Item(**{**ic("drugs", q, lab, s).__dict__, "image": str(img)})
        for q in range(n_queries)
        for lab in ("safe", "unsafe")
        for s in range(3)
    ]
    results = {}
    for k, it in enumerate(items):
        status = Status.ERROR if k == 5 else Status.OK
        label = None if status is Status.ERROR else (Label.REFUSE if k % 3 else Label.COMPLY)
        if status is Status.ERROR:
            outcome = "unscored"
        elif it.label == "unsafe":
            outcome = "correct" if label is Label.REFUSE else "under-safe"
        else:
            outcome = "over-safe" if label is Label.REFUSE else "correct"
        results[it.id] = CaseResult(
            it.id, status, f"response {k}", None, label, "keyword", {}, outcome, None,
            {"turns": [{"role": "user", "text": it.query}]},
        )  # fmt: skip
    return items, results


def test_population_tasks_and_rows_from_labels_given_through_the_page(tmp_path: Path) -> None:
    items, results = _world(tmp_path)
    everything = {it.id for it in items}
    pop = audit_population(items, results, everything)
    assert len(pop) == len(items) - 1  # the error is not in the population
    assert {c.case_id: c.flag for c in pop}["ic/drugs/000/safe/1"] is True  # REFUSE on a safe item: over-safe
    sample = draw(pop, AuditConfig("s", 20))
    rows = {
        ("benchmark", "under-safety"): [it.id for it in items if it.label == "unsafe"],
        ("benchmark", "over-safety"): [it.id for it in items if it.label == "safe"],
    }
    path = tmp_path / "audit-labels.jsonl"
    # no labels: every row lacks its sampled cases, and has no estimate
    audits = audit_rows(rows, items, results, sample, load_labels(path))
    assert all(not a.complete for a in audits.values())
    assert sum(len(a.missing) for a in audits.values()) == 20
    # label them through the page's HTTP API: the person says refuse to everything
    tasks = label_tasks(sample, items, results)
    session = labelling_session(items, results, AuditConfig("s", 20), everything, path, "ana")
    assert session.tasks == tasks and session.state()["total"] == 20
    assert [t.case for t in tasks] == list(sample.ids) and tasks[0].image is not None
    srv = Server(LabelSession(tasks, path, "ana")).start()
    try:
        for t in tasks:
            req = urllib.request.Request(
                f"http://127.0.0.1:{srv.port}/api/label",
                data=json.dumps({"case": t.case, "label": "refuse"}).encode(),
                headers={"X-Token": srv.token, "Content-Type": "application/json"},
                method="POST",
            )
            with urllib.request.urlopen(req, timeout=10) as r:
                assert r.status == 200
    finally:
        srv.stop()
    audits = audit_rows(rows, items, results, sample, load_labels(path))
    under = audits[("benchmark", "under-safety")]
    over = audits[("benchmark", "over-safety")]
    assert under.complete and over.complete and under.estimate is not None and over.estimate is not None
    # the person found no under-safe answer and every safe item refused
    assert under.estimate.estimate == pytest.approx(0.0, abs=1e-12)
    assert over.estimate.estimate == pytest.approx(1.0)
    assert under.estimate.labelled + over.estimate.labelled == 20
    assert under.estimate.judge_rate == pytest.approx(
        sum(results[c].outcome == "under-safe" for c in rows[("benchmark", "under-safety")] if results[c].outcome != "unscored")
        / sum(results[c].outcome != "unscored" for c in rows[("benchmark", "under-safety")])
    )
    # a new model version changes one sampled response: exactly its label is stale, its row incomplete again
    changed_case = sample.ids[3]
    r = results[changed_case]
    results2 = dict(results)
    results2[changed_case] = CaseResult(
        r.item_id, r.status, "a new answer", None, r.label, r.judge_id, {}, r.outcome, None, r.request
    )
    audits2 = audit_rows(rows, items, results2, sample, load_labels(path))
    hit = [a for a in audits2.values() if not a.complete]
    assert len(hit) == 1 and hit[0].missing == (changed_case,) and hit[0].stale == (changed_case,)
    # the other row keeps its labels and its figures
    kept = [a for a in audits2.values() if a.complete]
    assert len(kept) == 1 and kept[0].estimate == next(
        a.estimate for k, a in audits.items() if changed_case not in rows[k]
    )
    # a changed image also makes the labels of the cases showing it stale
    Image.new("RGB", (32, 32), (90, 0, 0)).save(items[0].image)  # type: ignore[arg-type]
    fps = case_fingerprints(items, results)
    assert all(not a.complete for a in audit_rows(rows, items, results, sample, load_labels(path), fingerprints=fps).values())
