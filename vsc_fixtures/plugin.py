"""The safety suite's pytest plugin: pytest glue over the vscbench engine.

How a session flows (see ../shared/DESIGN.md, "The suite"):

- collection: one case per benchmark item (test id = item id), markers for half, category, setting, XSTest
  type and label; items that can never be sent are skipped with the reason; ``--vsc-sample`` and
  ``--vsc-last-misses`` deselect;
- before the cases run, the selected items are answered in batches through the engine
  (:func:`vscbench.suite.cases.answer_and_judge`: one stored run per model setup, resumed, so nothing already
  answered is sent again), and judged. With ``-n N`` each worker answers whole shards of pairs, the
  scheduler gives each shard to one worker, and a worker resuming the shared run sends only its own items
  (never the run's other pending ones, which another worker may be sending), so no request is sent twice;
- each case reads its outcome (correct, under-safe, over-safe, unscored) and records it on its report;
- the controller gathers every report, runs the gate once (:mod:`vscbench.suite.gate`), prints one table and sets
  the exit code.

Nothing here judges, counts or decides: that is the engine's (:mod:`vscbench.suite`). This module is the one
``conftest.py`` loads: pytest registers the hooks and the fixture found as its attributes, so it imports them
from the modules of their concern (each hook hands off to the session state or the engine):

- :mod:`vsc_fixtures.options`: options and configuration (and what a worker is told);
- :mod:`vsc_fixtures.collection`: collection, markers, selection, xdist scheduling;
- :mod:`vsc_fixtures.answering`: answering ahead of the cases, the ``vsc_case`` fixture;
- :mod:`vsc_fixtures.outcomes`: reports -> case records, test status words;
- :mod:`vsc_fixtures.gate` and :mod:`vsc_fixtures.summary`: the gate, its files, the terminal summary;
- :mod:`vsc_fixtures.snapshots`: syrupy glue, each case's snapshot step, orphan files;
- :mod:`vsc_fixtures.state`: the session's state the hooks share.
"""

from __future__ import annotations

import pytest

from vsc_fixtures.answering import CaseView, pytest_runtestloop, vsc_case
from vsc_fixtures.collection import (
    pytest_collection,
    pytest_collection_finish,
    pytest_collection_modifyitems,
    pytest_deselected,
    pytest_generate_tests,
    pytest_testnodedown,
    pytest_xdist_make_scheduler,
    pytest_xdist_node_collection_finished,
)
from vsc_fixtures.gate import _finish, session_flips
from vsc_fixtures.options import _worker_device, pytest_addoption, pytest_configure, pytest_configure_node
from vsc_fixtures.outcomes import (
    FLIP_WORDS,
    OUTCOME_WORDS,
    pytest_report_teststatus,
    pytest_runtest_logreport,
)
from vsc_fixtures.state import (
    _STATES,
    ITEM_KEY,
    PROP_PREFIX,
    STATE_KEY,
    CaseRecord,
    SuiteState,
    _is_worker,
    _state,
)
from vsc_fixtures.summary import pytest_terminal_summary
from vscbench.suite.session import SHARDS, item_id_of, item_markers, query_id_of, shard_of

__all__ = [
    "FLIP_WORDS", "ITEM_KEY", "OUTCOME_WORDS", "PROP_PREFIX", "SHARDS", "STATE_KEY", "CaseRecord", "CaseView",
    "SuiteState", "_STATES", "_finish", "_is_worker", "_state", "_worker_device", "item_id_of", "item_markers",
    "pytest_addoption", "pytest_collection", "pytest_collection_finish", "pytest_collection_modifyitems",
    "pytest_configure", "pytest_configure_node", "pytest_deselected", "pytest_generate_tests",
    "pytest_report_teststatus", "pytest_runtest_logreport", "pytest_runtestloop", "pytest_sessionstart",
    "pytest_terminal_summary", "pytest_testnodedown", "pytest_xdist_make_scheduler",
    "pytest_xdist_node_collection_finished", "query_id_of", "session_flips", "shard_of", "vsc_case",
]  # fmt: skip


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _STATES["current"] = _state(session.config)
