"""The terminal summary: the engine's summary lines of the session (:mod:`vscbench.suite.summary`), printed."""

from __future__ import annotations

from typing import Any

import pytest

from vsc_fixtures.gate import _judge_line, session_flips
from vsc_fixtures.state import SuiteState, _is_worker, _state


@pytest.hookimpl(tryfirst=True)  # before syrupy's own summary, which it replaces
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state.setup is None or _is_worker(config) or not state.expected or config.getoption("collectonly"):
        return
    if state.snapshots:
        from vsc_fixtures.snapshots import _fold_syrupy

        _fold_syrupy(config, state)
    terminalreporter.section("vscbench safety gate")
    for line in summary_lines(config, state):
        terminalreporter.write_line(line.text, **line.markup)


def summary_lines(config: pytest.Config, state: SuiteState) -> list[Any]:
    """The session's facts handed to the engine's summary functions, in the order the terminal shows them."""
    from vscbench.report.names import model_label
    from vscbench.runner.identity import mixed_models_line
    from vscbench.suite import summary as s
    from vscbench.suite.gate import format_text, headline

    gate, opt = state.gate, config.getoption
    first = headline(gate) if gate is not None else None
    out = [s.Line(first, {"red": not gate.passed, "yellow": gate.passed, "bold": True})] if first else []
    out.append(s.Line(s.run_line(
        state.model.given, model_label(state.setup.model), state.run_id, state.setup.revision, state.revision_source
    )))  # fmt: skip
    out += [s.Line(f"note: {state.model.note}")] if state.model.note else []
    mixed = mixed_models_line(opt("vsc_store"), str(state.run_id), state.expected)
    out += [s.Line(mixed, {"yellow": True})] if mixed else []
    out.append(s.Line(_judge_line(state)))
    never = len(state.unsendable_selected) if state.unsendable_selected is not None else len(state.skipped)
    out.append(s.Line(s.cases_line(
        state.records, expected=len(state.expected), n_selected=state.n_selected,
        sampled=opt("vsc_sample") is not None, never=never, skipped=len(state.skipped),
    )))  # fmt: skip
    update = bool(getattr(config.option, "update_snapshots", False))
    if state.no_baseline_yet:
        out.append(s.Line(s.no_baseline_line(state.model.given, state.snapshot_dir)))
    else:
        out += s.snapshot_lines(
            state.records, session_flips(state), update=update, budget_zero=state.thresholds_budget_zero()
        )
    out += [s.Line(f"snapshot files: {line}") for line in state.syrupy_lines]
    out += s.orphan_lines(state.orphans, deleted=state.orphans_deleted, narrowed=state.narrowed, root=config.rootpath)
    if state.flip_table is not None:
        out += s.baseline_lines(opt("vsc_baseline"), state.flip_table)
    out += [s.Line(f"wrote {what}: {where}") for what, where in state.written]
    if gate is None:
        why = "--vsc-no-gate" if opt("vsc_no_gate") else "the session stopped before its cases ran"
        return [*out, s.Line(f"gate not run ({why})")]
    if state.thresholds is not None:
        out += s.thresholds_lines(state.thresholds, gate.model_entry)
    out += s.audit_lines(gate)
    out += s.example_lines(state.records, state.by_id)
    return out + s.gate_lines(format_text(gate, with_headline=False), gate.passed)
