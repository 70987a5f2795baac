"""Answering ahead of the cases: one process answers every selected case before the first runs (a worker its
own shards), through :func:`vscbench.suite.cases.answer_and_judge`; each case reads its result."""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass, replace
from typing import Any

import pytest

from vsc_fixtures.gate import _finish
from vsc_fixtures.state import PROP_PREFIX, SuiteState, _is_worker, _state, _usage
from vscbench.errors import VscbenchError


@pytest.hookimpl(wrapper=True)
def pytest_runtestloop(session: pytest.Session) -> Generator[None, object, object]:
    config = session.config
    state = _state(config)
    if state.setup is not None and state.expected and not _is_worker(config) and not config.getoption("collectonly"):
        _say_run(config, state)
    if state.setup is not None and state.selected and not _is_worker(config) and not config.getoption("collectonly"):
        try:  # one process: answer every selected case ahead of the first
            state.answer(state.selected)
        except VscbenchError as exc:
            raise _usage(str(exc)) from None
    try:
        return (yield)
    finally:
        if state.setup is not None and not _is_worker(config) and state.expected and not config.getoption("collectonly"):
            _finish(session, state)
        if state._provider is not None:
            import asyncio

            from vscbench.runner.run import aclose_quietly

            asyncio.run(aclose_quietly(state._provider))
            state._provider = None


def _say_run(config: pytest.Config, state: SuiteState) -> None:
    """Before any request: the run choice's lines, and how many answers come from the store."""
    from vscbench.runner.identity import reuse_line, stored_answers

    if state.said_run or not state.expected:
        return
    state.said_run = True
    tr = config.pluginmanager.get_plugin("terminalreporter")
    choice = state.run_choice
    lines = list(choice.lines) if choice is not None else []
    n = stored_answers(config.getoption("vsc_store"), str(state.run_id), state.expected)
    if n:
        lines.append(reuse_line(n, str(state.run_id), choice.recorded_at if choice is not None else None))
    for line in lines:
        if tr is not None:
            tr.write_line(f"vscbench: {line}", yellow=line.startswith(("warning", "model revision")))


@pytest.fixture
def vsc_case(request: pytest.FixtureRequest, vsc_item: Any) -> Any:
    """The case's response, label and outcome (answered ahead, in batches, through the engine)."""
    state = _state(request.config)
    if state.failure is None and vsc_item.id not in state.results:
        try:
            state.answer(state.batch_for(vsc_item))
        except VscbenchError as exc:
            state.failure = str(exc)
    if vsc_item.id not in state.results:
        pytest.fail(f"vscbench: {state.failure or 'no response for ' + vsc_item.id}", pytrace=False)
    res = state.results[vsc_item.id]
    node = request.node
    node.user_properties += [
        (PROP_PREFIX + "outcome", res.outcome),
        (PROP_PREFIX + "status", res.status.value if res.status else None),
        (PROP_PREFIX + "label", res.label.value if res.label else None),
        (PROP_PREFIX + "judge", res.judge_id),
        (PROP_PREFIX + "reason", res.reason or res.error),
        (PROP_PREFIX + "response", res.text[:2000]),
        *([(PROP_PREFIX + "relabelled", True)] if res.relabelled else []),
    ]
    view = CaseView(vsc_item, res, bool(request.config.getoption("vsc_strict")))
    if state.snapshots:
        from vsc_fixtures.snapshots import _snapshot_step

        view = replace(view, snapshot_failure=_snapshot_step(request, state, vsc_item, res))
    return view


@dataclass(frozen=True)
class CaseView:
    """What a safety case sees: the item, its result, and ``check()`` (fails only under ``--vsc-strict``)."""

    item: Any
    result: Any
    strict: bool
    snapshot_failure: str | None = None

    @property
    def outcome(self) -> str:
        return str(self.result.outcome)

    def describe(self) -> str:
        r = self.result
        return (
            f"{self.outcome} ({r.reason or r.error or ''}) {self.item.id}\n  query: {self.item.query}\n"
            f"  image: {self.item.image}\n  label: {r.label.value if r.label else None} ({r.judge_id})\n"
            f"  response: {r.text[:500]!r}"
        )

    def check(self) -> None:
        if self.snapshot_failure:
            pytest.fail(self.snapshot_failure, pytrace=False)
        if self.strict and self.outcome != "correct":
            pytest.fail(self.describe(), pytrace=False)


