"""The suite's metamorphic robustness cases: pytest glue over :mod:`vscbench.suite.robustness` and hypothesis.

Opt in with ``-m robustness``: unless the ``-m`` expression names ``robustness`` the cases are dropped after
collection (not run, and not counted as deselected).
How one case runs (one per seed item, ``tests_safety/test_robustness.py``):

- seed items: a deterministic, balanced sample (``--vsc-robustness-items``, ``--vsc-seed``) of the items that
  can be sent here; their canonical responses come from the suite's own run (answered in one batch by the
  first case; an item the suite answered before is not asked again). A seed item whose canonical verdict is
  already wrong, or unscored, is skipped with that reason;
- hypothesis draws variations (:mod:`vscbench.data.variations`) with a seed derived from ``--vsc-seed`` and
  the item id, ``--vsc-robustness-examples`` of them, no deadline, its example database under
  ``<rootdir>/.hypothesis/vscbench/<model setup>/<seed item>`` (a found counterexample replays first);
- answering is batched: a first pass runs the search against the store only (read-only database), collecting
  the variants nobody answered yet; they are answered in one batch (the variants run,
  ``<suite run id>-robustness``: content-addressed ids, so nothing answered is ever sent again); the second
  pass runs the same search for real, answering only what it still meets unanswered (shrinking), one by one;
- a flip (an unsafe item no longer safety-aware, a safe item now refused) fails the case with the seed item,
  the shrunk variation, the saved image and both responses; the summary reports, per setting, the seed items
  that held under every variation tried and the smallest flipping variation of each that did not.

The main gate ignores these cases (they carry no ``vsc_item``).
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from vsc_fixtures.robust_cases import (
    ROBUST_KEY,
    RobustState,
    SeedCase,
    _rstate,
    strategy,
    vsc_robust_seed,
    vsc_robust_seed_item,
)
from vscbench.errors import VscbenchError
from vscbench.suite.robustness import DB_DIR, PROP, Flip, Record, record_of, summary_lines

# the fixtures are registered here, with the hooks (this is the module conftest.py loads)
__all__ = [
    "DB_DIR", "PROP", "ROBUST_KEY", "Flip", "Record", "RobustState", "SeedCase", "strategy",
    "vsc_robust_seed", "vsc_robust_seed_item",
]  # fmt: skip


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vscbench", "vscbench safety suite")
    g.addoption("--vsc-robustness-items", type=int, default=6, help="robustness: seed items (balanced sample; default 6)")
    g.addoption("--vsc-robustness-examples", type=int, default=20, help="robustness: hypothesis examples per seed item (default 20)")


def pytest_configure(config: pytest.Config) -> None:
    config.stash[ROBUST_KEY] = RobustState(config)
    n = config.getoption("vsc_robustness_examples")
    if n < 1:
        raise pytest.UsageError(f"--vsc-robustness-examples {n}: must be at least 1")


# -- collection -----------------------------------------------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vsc_robust_seed" not in metafunc.fixturenames:
        return
    from vscbench.data.own_cases import own_markers
    from vscbench.suite.session import item_markers

    try:
        seeds = _rstate(metafunc.config).seed_items()
    except VscbenchError as exc:
        raise pytest.UsageError(str(exc)) from None
    params = [
        pytest.param(
            it, id=f"rb/{it.id}",
            marks=[getattr(pytest.mark, m) for m in (own_markers(it) if it.source == "own" else item_markers(it))],
        )
        for it in seeds
    ]  # fmt: skip
    metafunc.parametrize("vsc_robust_seed_item", params)


def _opted_in(config: pytest.Config) -> bool:
    return re.search(r"\brobustness\b", config.getoption("markexpr") or "") is not None


@pytest.hookimpl(tryfirst=True)  # before -m / -k deselection, so that a default run never counts them
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    if _opted_in(config):
        return
    # not part of this run at all (not counted as deselected: a default run's counts stay the benchmark's)
    items[:] = [n for n in items if n.get_closest_marker("robustness") is None]


@pytest.hookimpl(trylast=True)  # after -m / -k deselection: the robustness cases that will run
def pytest_collection_finish(session: pytest.Session) -> None:
    config = session.config
    cases = [n for n in session.items if n.get_closest_marker("robustness") is not None]
    if not cases:
        return
    main = _rstate(config).main
    if main.setup is None and not config.getoption("collectonly"):
        raise pytest.UsageError("robustness cases need a model: pass --model=ALIAS (see vsc_fixtures/models.yaml)")
    _rstate(config).selected = [n.callspec.params["vsc_robust_seed_item"] for n in cases if hasattr(n, "callspec")]


# -- the summary ------------------------------------------------------------------------------------------


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    rec = record_of(report.user_properties, report.when, report.skipped)
    state = _STATES.get("current")
    if rec is not None and state is not None:
        state.records[rec.seed] = rec


_STATES: dict[str, RobustState] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _STATES["current"] = _rstate(session.config)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    rs = _rstate(config)
    if not rs.records or hasattr(config, "workerinput"):
        return
    terminalreporter.section("vscbench robustness")
    main = rs.main
    examples = config.getoption("vsc_robustness_examples")
    for line, red in summary_lines(rs.records.values(), model=main.model.given, run_id=main.run_id, examples=examples):
        terminalreporter.write_line(line, red=red)
