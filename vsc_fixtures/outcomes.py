"""Outcomes: each case's report becomes a case record on the controller, and its status word in the terminal."""

from __future__ import annotations

from typing import Any

import pytest

from vsc_fixtures.state import _STATES, PROP_PREFIX
from vscbench.suite.session import item_id_of, note_report
from vscbench.suite.summary import FLIP_WORDS, OUTCOME_WORDS, status_word

__all__ = ["FLIP_WORDS", "OUTCOME_WORDS", "pytest_report_teststatus", "pytest_runtest_logreport"]


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if report.when != "call" or not report.passed:
        return None
    return status_word(dict(report.user_properties), PROP_PREFIX)


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gather every case's outcome (on the controller under xdist: reports travel with their properties)."""
    props = dict(report.user_properties)
    iid = props.get(PROP_PREFIX + "item") or item_id_of(report.nodeid)
    if not isinstance(iid, str):
        return
    state = _STATES.get("current")
    if state is None or state.setup is None or iid not in state.expected:
        return
    note_report(
        state.records, state.skipped, state.crashed, iid, props, PROP_PREFIX,
        when=report.when, result=_result(report), longrepr=report.longrepr,
    )  # fmt: skip


def _result(report: pytest.TestReport) -> str:
    return "skipped" if report.skipped else "failed" if report.failed else "passed"
