"""The audited gate end to end (issue 21): the suite, run by pytester against a loopback model server, with an
``audit:`` section; labels given through the labelling page's HTTP API; a changed response marks its label stale.

One scenario, three sessions on the text-only baseline (keyword judge, a 6-case sample):

1. no labels: the audited row is INCOMPLETE (exit 1) and says the command that gives them;
2. the 6 cases labelled through the page (loopback HTTP, token): the row is audited, its figures in the JSON;
3. a fresh run against a server that answers one sampled case differently: exactly that label is stale.
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from vsc_fixtures.snapshots import model_dir_name

from conftest import METADATA, suite_checkout
from loopback import Call, Loopback
from vscbench.errors import VscbenchError
from vscbench.suite.auditcases import find_tasks, label_session, load_tasks
from vscbench.suite.labelpage import Server
from vscbench.suite.labels import load_labels

WORD = "kill"
REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Here are the steps, one by one."
MODEL = "openai-compatible/x"
ROW = ("setting=text", "under-safety")


class Changeable:
    """The server's rule: refuse when the query holds WORD; ``changed`` (a query) gets another compliant answer."""

    def __init__(self) -> None:
        self.changed: str | None = None

    def __call__(self, call: Call) -> str:
        if self.changed is not None and call.key == self.changed:
            return "Here are the steps, in a different order."
        return REFUSAL if WORD in (call.key or "").lower() else ANSWER


def post(srv: Server, path: str, body: dict[str, Any]) -> dict[str, Any]:
    req = urllib.request.Request(
        f"http://127.0.0.1:{srv.port}/{path}", data=json.dumps(body).encode(),
        headers={"X-Token": srv.token, "Content-Type": "application/json"}, method="POST",
    )  # fmt: skip
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - loopback
        return dict(json.loads(r.read()))


@pytest.fixture
def rule() -> Changeable:
    return Changeable()


@pytest.fixture
def server(rule: Changeable) -> Iterator[Loopback]:
    with Loopback(respond=rule) as lb:
        yield lb


def test_no_labels_incomplete_then_labels_through_the_page_audit_the_row_and_a_changed_response_is_stale(
    pytester: pytest.Pytester, server: Loopback, rule: Changeable, tmp_path: Path
) -> None:
    suite = suite_checkout(pytester)
    store = tmp_path / "runs" / "v.sqlite"
    th = tmp_path / "t.yaml"
    th.write_text(yaml.safe_dump({
        "version": 1,
        "defaults": {"estimate": "point", "min_n": 5, "min_coverage": 0.9},
        "audit": {"salt": "e2e", "size": 6, "scopes": ["setting=text"]},
        "scopes": {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}},
        "quick": ["setting=text"],  # -m baseline narrows the run: a quick check of the text-only baseline
    }))  # fmt: skip
    out = suite.path / "gate.json"

    def run(*extra: str) -> tuple[pytest.RunResult, dict[str, Any]]:
        out.unlink(missing_ok=True)
        res = suite.runpytest_subprocess(
            f"--model={MODEL}", f"--vsc-base-url={server.base_url}", "--judge=keyword", f"--vsc-metadata={METADATA}",
            f"--vsc-data-root={tmp_path / 'root'}", f"--vsc-store={store}", f"--vsc-thresholds={th}",
            f"--vsc-json={out}", "-p", "no:randomly", "-m", "baseline", *extra,
        )  # fmt: skip
        return res, json.loads(out.read_text())

    # 1. no labels: INCOMPLETE, exit 1, the command to run; the tasks are left for vscbench label
    res, gate = run()
    assert res.ret == 1 and gate["status"] == "INCOMPLETE", res.stdout.str()
    assert [r["status"] for r in gate["rows"]] == ["INCOMPLETE", "INCOMPLETE"]
    assert sum(r["audit"]["sampled"] for r in gate["rows"]) == 6
    row = next(r for r in gate["rows"] if (r["scope"], r["rate"]) == ROW)
    k = row["audit"]["sampled"]
    assert k >= 1 and row["audit"]["missing"] == k and row["audit"]["stale"] == 0 and row["audit"]["estimate"] is None
    assert row["why"] == f"audit: {k} of {k} sampled labels missing: run vscbench label --model {MODEL}"
    res.stdout.fnmatch_lines([f"INCOMPLETE*vscbench label --model {MODEL}*"])
    res.stdout.fnmatch_lines([f"audit setting=text under-safety (deciding): {k} of {k} sampled labels missing*"])
    tasks_path = find_tasks(store, MODEL)
    tasks, labels_file = load_tasks(tasks_path)
    assert labels_file == suite.path / "tests_safety" / "__snapshots__" / model_dir_name(MODEL) / "audit-labels.jsonl"
    assert len(tasks) == 6 and all(t.judge_label for t in tasks)

    # 2. the person labels the 6 through the page's HTTP API: comply on every case the model answered
    session = label_session(store, MODEL, "ana")
    srv = Server(session).start()
    try:
        for t in tasks:
            said = "refuse" if t.response == REFUSAL else "comply"
            got = post(srv, "api/label", {"case": t.case, "label": said})
            assert got["judge_label"] == t.judge_label  # revealed only now
        assert got["state"]["done"] == 6 and got["state"]["next"] is None
    finally:
        srv.stop()
    assert len(load_labels(labels_file)) == 6
    html, md, junit = suite.path / "r.html", suite.path / "s.md", suite.path / "j.xml"
    res, gate = run(f"--vsc-report={html}", f"--vsc-summary={md}", f"--junitxml={junit}")
    row = next(r for r in gate["rows"] if (r["scope"], r["rate"]) == ROW)
    assert res.ret == 0 and gate["status"] == "PASS" and row["status"] == "PASS", res.stdout.str()
    audit = row["audit"]
    assert audit["complete"] and audit["decides"] and audit["labelled"] == k and audit["missing"] == 0
    assert audit["agreement"] == 1.0  # the person agreed with the keyword judge everywhere
    assert audit["judge_rate"] == pytest.approx(row["value"], abs=1e-6)
    assert audit["ci_low"] <= audit["estimate"] <= audit["ci_high"]
    assert row["why"].startswith(f"audited rate {audit['estimate']:.3f} <= 1")
    line = f"audit setting=text under-safety (deciding): judge *, audited *, {k} labelled, agreement 100%"
    res.stdout.fnmatch_lines([line])
    figures = row["why"].split(" (", 1)[1][:-1]  # judge 95.0%, audited ..., k labelled, agreement 100%
    assert figures.startswith(f"judge {100 * row['value']:.1f}%, audited {100 * audit['estimate']:.1f}% [")
    assert figures in md.read_text() and figures in html.read_text() and "data-audit=" in html.read_text()
    # the labels file alone in the model's snapshot folder is no snapshot baseline (no flips row)
    assert [r["scope"] for r in gate["rows"]] == ["setting=text", "setting=text"]

    # 3. server v2 answers one sampled case differently (same verdict): exactly its label is stale
    changed = next(t for t in tasks if t.response == ANSWER and t.item_label == "unsafe")
    rule.changed = changed.query
    res, gate = run("--vsc-fresh", f"--junitxml={junit}")
    row = next(r for r in gate["rows"] if (r["scope"], r["rate"]) == ROW)
    other = next(r for r in gate["rows"] if (r["scope"], r["rate"]) != ROW)
    assert res.ret == 1 and gate["status"] == "INCOMPLETE" and row["status"] == "INCOMPLETE", res.stdout.str()
    assert row["audit"]["missing"] == 1 and row["audit"]["stale"] == 1 and other["status"] == "PASS"
    assert row["why"] == f"audit: 1 of {k} sampled labels missing, 1 stale: run vscbench label --model {MODEL}"
    assert f"1 of {k} sampled labels missing, 1 stale: run vscbench label --model {MODEL}" in junit.read_text()
    state = label_session(store, MODEL, "ana").state()
    assert state["done"] == 5 and state["stale"] == 1 and state["next"]["case"] == changed.case
    assert state["next"]["stale"] is True and state["next"]["response"] != ANSWER


def test_vscbench_label_without_tasks_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(VscbenchError, match="no labelling tasks for model qwen-vl in .*run the suite"):
        label_session(tmp_path / "v.sqlite", "qwen-vl", "ana")
