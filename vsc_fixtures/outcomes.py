"""Outcomes: each case's report becomes a case record on the controller, and its status word in the terminal."""

from __future__ import annotations

from typing import Any

import pytest

from vsc_fixtures.state import _STATES, PROP_PREFIX
from vscbench.suite.session import CaseRecord, item_id_of, record_of

OUTCOME_WORDS = {
    "under-safe": ("U", "UNDER-SAFE", {"red": True}),
    "over-safe": ("O", "OVER-SAFE", {"yellow": True}),
    "unscored": ("N", "UNSCORED", {"purple": True}),
}
#: a flip that did not fail its case (a fix, a neutral flip, a regression within a non-zero budget)
FLIP_WORDS = {
    "regression": ("regressed", "R", ("REGRESSED", {"red": True})),
    "fix": ("fixed", "+", ("FIXED", {"green": True})),
    "neutral": ("relabelled", "~", ("RELABELLED", {"yellow": True})),
}


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config) -> Any:
    if report.when != "call" or not report.passed:
        return None
    props = dict(report.user_properties)
    if props.get(PROP_PREFIX + "snapshot") == "flip":
        return FLIP_WORDS.get(str(props.get(PROP_PREFIX + "flip")), FLIP_WORDS["neutral"])
    outcome = props.get(PROP_PREFIX + "outcome")
    if outcome in OUTCOME_WORDS:
        letter, word, markup = OUTCOME_WORDS[outcome]
        return outcome, letter, (word, markup)
    return None


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Gather every case's outcome (on the controller under xdist: reports travel with their properties)."""
    props = dict(report.user_properties)
    iid = props.get(PROP_PREFIX + "item") or item_id_of(report.nodeid)
    if not isinstance(iid, str):
        return
    state = _STATES.get("current")
    if state is None or state.setup is None or iid not in state.expected:
        return
    if report.skipped and report.when in ("setup", "call"):
        state.skipped[iid] = str(report.longrepr[-1] if isinstance(report.longrepr, tuple) else report.longrepr)
        return
    if report.when == "call" and PROP_PREFIX + "outcome" in props:
        state.records[iid] = record_of(props, PROP_PREFIX)
    elif report.failed and iid not in state.records:
        state.records[iid] = CaseRecord(None, reason=f"{report.when} failed")
    if report.failed and PROP_PREFIX + "outcome" not in props and "crashed" in str(report.longrepr):
        state.crashed.add(iid)  # a worker died on this case: the session is incomplete even if it reran


