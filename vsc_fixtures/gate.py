"""The gate: the controller decides once (:func:`vscbench.suite.gate.decide`) from every case record, and
writes every file asked for (Markdown, JSON, HTML, the JUnit rows)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from vsc_fixtures.state import SuiteState, _misses_key, _usage
from vscbench.errors import VscbenchError


def _finish(session: pytest.Session, state: SuiteState) -> None:
    """The controller's one decision: the engine's accounting of the case records, then the gate."""
    from vscbench.suite.gate import decide
    from vscbench.suite.session import account, flip_counts, last_misses, skipped_unsendable

    config = session.config
    acc = account(state.expected, state.records, state.skipped, state.crashed)
    cache = getattr(config, "cache", None)
    if cache is not None:
        cache.set(_misses_key(state), last_misses(state.records))
    if config.getoption("vsc_no_gate"):
        return _write_outputs(config, state)
    flips = flip_counts(state.records, bool(getattr(config.option, "update_snapshots", False)))
    by_id = state.by_id
    try:
        baseline = _baseline(config, state, acc.scored)
        audits = _audits(config, state, [by_id[i] for i in acc.scored])
    except VscbenchError as exc:
        raise _usage(str(exc)) from None
    unsendable = state.unsendable_selected
    if unsendable is None:  # under xdist the controller collects nothing: the cases skipped as never sendable
        unsendable = skipped_unsendable(state.skipped, state.unsendable if state.skipped else {}, state.by_id)
    state.gate = decide(
        [by_id[i] for i in acc.scored],
        acc.results,
        state.thresholds,
        model_names=state.model.names,
        blocked=config.getoption("vsc_blocked"),
        missing=acc.missing,
        seed=config.getoption("vsc_seed"),
        flips=flips,
        baseline=baseline,
        unsendable=unsendable,
        narrowed=_narrowed(config, state),
        quick=bool(config.getoption("vsc_quick")),
        audits=audits,
    )
    if not state.gate.passed:
        session.testsfailed += 1
    _write_outputs(config, state)


def _audits(config: pytest.Config, state: SuiteState, items: list[Any]) -> Any:
    """The audited rows' audits, computed by the engine (None without an audit for this model); the labels
    file is the model's, beside its snapshots."""
    from vsc_fixtures.snapshots import SNAPSHOT_DIR, model_dir_name
    from vscbench.suite.auditcases import session_audit
    from vscbench.suite.labels import labels_path

    name = model_dir_name(state.model.alias or state.model.given)
    return session_audit(
        store=config.getoption("vsc_store"), run_id=str(state.run_id), items=items,
        judge_id=config.getoption("vsc_judge"), thresholds=state.thresholds, model_names=state.model.names,
        model_dir=name, labels_file=labels_path(Path(config.rootpath) / "tests_safety" / SNAPSHOT_DIR / name),
        blocked=config.getoption("vsc_blocked"),
    )  # fmt: skip


def _narrowed(config: pytest.Config, state: SuiteState) -> tuple[str, ...]:
    """How the user narrowed this session's selection (the engine decides; empty: a full run)."""
    from vscbench.suite.cases import benchmark_count
    from vscbench.suite.gate import narrowed_by

    opt = config.getoption
    flags = [
        *([f"-k {config.option.keyword!r}"] if getattr(config.option, "keyword", "") else []),
        *([f"-m {config.option.markexpr!r}"] if getattr(config.option, "markexpr", "") else []),
        *([f"--vsc-sample={opt('vsc_sample')}"] if opt("vsc_sample") is not None else []),
        *(["--vsc-last-misses"] if opt("vsc_last_misses") else []),
    ]
    total = len(state.items) if state._items is not None or state.expected else 0
    return narrowed_by(benchmark_count(state.expected), total, flags)  # own cases are counted apart


def _baseline(config: pytest.Config, state: SuiteState, scored: list[str]) -> Any:
    """``--vsc-baseline``: the snapshot set's verdicts by case (and the flip table against this session)."""
    ref = config.getoption("vsc_baseline")
    if not ref:
        return None
    from vscbench.suite import snapshots as snap
    from vscbench.suite.session import baseline_results, current_set

    assert state.snapshot_dir is not None or Path(ref).is_dir()
    rel = state.snapshot_dir.relative_to(config.rootpath) if state.snapshot_dir else Path(".")
    base = state.baseline_set if state.baseline_set is not None else snap.read_set(ref, rel, config.rootpath)
    if not base:
        raise VscbenchError(f"--vsc-baseline {ref}: no snapshots there")
    state.flip_table = snap.diff_sets(base, current_set(state.records, scored, state.by_id), check_stale=False)
    return baseline_results(base)


def _judge_line(state: SuiteState) -> str:
    from vscbench.judges.cascade import passed_on_text
    from vscbench.suite.session import judge_line

    try:
        info = dict(state.judge.describe())
        passed = passed_on_text(state.judge, state.config.getoption("vsc_store"), state.run_id, state.records)
    except Exception as exc:  # the judge is optional on the controller: say why it is not described
        return f"judge {state.config.getoption('vsc_judge')} ({exc})"
    state.judge_info = info
    return judge_line(info, passed, sum(1 for rec in state.records.values() if rec.relabelled))


def session_flips(state: SuiteState) -> list[Any]:
    """This session's snapshot flips, with each case's query and image (engine :class:`Flip`)."""
    from vscbench.suite.session import session_flips as flips

    return flips(state.records, state.by_id)


def _write_outputs(config: pytest.Config, state: SuiteState) -> None:
    """Every file asked for (also under --vsc-no-gate), each recorded in ``state.written`` for the terminal."""
    from vscbench.suite.ci import summary
    from vscbench.suite.gate import to_json
    from vscbench.suite.session import gate_document
    from vscbench.suite.snapshots import format_table

    baseline_md = format_table(state.flip_table, fmt="md") if state.flip_table is not None else ""
    md = summary(
        state.gate, title=f"vscbench safety gate, {state.model.given}", flips=session_flips(state),
        baseline_md=baseline_md,
    )  # fmt: skip
    step = os.environ.get("GITHUB_STEP_SUMMARY")
    for target in [p for p in (config.getoption("vsc_summary"), step) if p]:
        with open(target, "a" if target == step else "w", encoding="utf-8") as fh:
            fh.write(md)
        state.written.append(("GitHub step summary" if target == step else "Markdown summary", target))
    if config.getoption("vsc_json"):
        doc = gate_document(
            to_json(state.gate) if state.gate is not None else None,
            model=state.model.given, spec=state.setup.model, run_id=state.run_id,
            judge=config.getoption("vsc_judge"), flips=[f.to_dict() for f in session_flips(state)],
            model_revision=state.setup.revision, model_revision_source=state.revision_source,
        )  # fmt: skip
        Path(config.getoption("vsc_json")).write_text(json.dumps(doc, indent=2, sort_keys=True) + "\n")
        state.written.append(("gate JSON", config.getoption("vsc_json")))
    if config.getoption("vsc_report"):
        from vscbench.suite.ci import session_report_html

        by_id = state.by_id
        html = session_report_html(
            config.getoption("vsc_store"), str(state.run_id), result=state.gate, flips=session_flips(state),
            cases=[iid for iid, rec in state.records.items() if rec.outcome is not None],
            images={iid: getattr(by_id.get(iid), "image", None) for iid in state.records},
            judge=state.judge.id, blocked=config.getoption("vsc_blocked"),
            title=f"vscbench safety gate, {state.model.given}",
        )  # fmt: skip
        Path(config.getoption("vsc_report")).write_text(html, encoding="utf-8")
        state.written.append(("HTML report", config.getoption("vsc_report")))
    _junit_gate(config, state)


def _junit_gate(config: pytest.Config, state: SuiteState) -> None:
    """--junitxml: one test case per gate row and one for the verdict (pytest writes the file afterwards)."""
    from _pytest.junitxml import xml_key

    xml = config.stash.get(xml_key, None)
    if xml is None or state.gate is None:
        return
    from vscbench.suite.ci import junit_cases

    for case in junit_cases(state.gate):
        location = (case.nodeid.split("::", 1)[0], None, case.nodeid.split("::", 1)[1])
        for when in ("call", "teardown"):
            failed = case.failed and when == "call"
            xml.pytest_runtest_logreport(pytest.TestReport(
                case.nodeid, location, {}, "failed" if failed else "passed", case.message if failed else None, when,
            ))  # fmt: skip
