"""The suite session's state, shared by the hook modules: one :class:`SuiteState` per pytest config (in its
stash, and as ``_STATES["current"]`` for the report hooks, which get no config). Nothing here decides."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from vscbench.suite.session import CaseRecord, shard_of

PROP_PREFIX = "vsc_"
STATE_KEY = pytest.StashKey["SuiteState"]()
ITEM_KEY = pytest.StashKey[Any]()
CACHE_MISSES = "vscbench/last_misses"
CACHE_RUN = "vscbench/run"

__all__ = ["CACHE_MISSES", "CACHE_RUN", "ITEM_KEY", "PROP_PREFIX", "STATE_KEY", "CaseRecord", "SuiteState"]


@dataclass
class SuiteState:
    config: pytest.Config
    model: Any = None  # vsc_fixtures.models.ResolvedModel
    setup: Any = None  # vscbench.runner.run.ModelSetup
    run_id: str | None = None
    run_choice: Any = None  # vscbench.runner.identity.RunChoice (controller)
    said_run: bool = False
    baseline_set: dict[str, Any] | None = None  # --vsc-baseline's snapshots, read before any request
    revision_source: str | None = None
    thresholds: Any = None
    _paths: Any = None
    _items: list[Any] | None = None
    _unsendable: dict[str, str] | None = None
    _judge: Any = None
    _provider: Any = None
    results: dict[str, Any] = field(default_factory=dict)
    selected: list[Any] = field(default_factory=list)
    failure: str | None = None
    # controller
    expected: set[str] = field(default_factory=set)
    records: dict[str, CaseRecord] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    crashed: set[str] = field(default_factory=set)
    gate: Any = None
    judge_info: dict[str, Any] = field(default_factory=dict)
    # snapshots
    snapshots: bool = False  # compare or write this session
    snapshot_dir: Path | None = None  # tests_safety/__snapshots__/<model>
    no_baseline_yet: bool = False  # no snapshots recorded for this model
    flip_table: Any = None  # vscbench.suite.snapshots.FlipTable of --vsc-baseline
    written: list[tuple[str, str]] = field(default_factory=list)  # (what, path) of every file written
    syrupy_lines: list[str] = field(default_factory=list)  # syrupy's report, folded into ours
    narrowed: bool = False  # -k, -m, --vsc-sample, --vsc-last-misses or a node id left cases out
    case_files: dict[str, set[str]] = field(default_factory=dict)  # test module -> its cases' snapshot names
    orphans: list[Path] = field(default_factory=list)  # snapshot files no collected case owns
    orphans_deleted: bool = False
    # what the selection could test (one process: computed at collection, before any request)
    n_selected: int | None = None  # cases selected by -k / -m / paths, before --vsc-sample
    unsendable_selected: dict[Any, str] | None = None  # of those, the never sendable items, with why

    # -- data -------------------------------------------------------------------------------------------
    @property
    def paths(self) -> Any:
        if self._paths is None:
            from vscbench.data import resolve_paths

            opt = self.config.getoption
            self._paths = resolve_paths(opt("vsc_data_root"), opt("vsc_metadata"))
        return self._paths

    @property
    def items(self) -> list[Any]:
        if self._items is None:
            from vscbench.data import load_items

            self._items = load_items(self.paths)
        return self._items

    @property
    def by_id(self) -> dict[str, Any]:
        return {it.id: it for it in self.items}

    @property
    def unsendable(self) -> dict[str, str]:
        if self._unsendable is None:
            from vscbench.suite.cases import unsendable_reasons

            self._unsendable = unsendable_reasons(self.items)
        return self._unsendable

    # -- model and judge --------------------------------------------------------------------------------
    @property
    def judge(self) -> Any:
        if self._judge is None:
            from vscbench.judges.factory import make_judge

            self._judge = make_judge(
                self.config.getoption("vsc_judge"), base_url=self.config.getoption("vsc_judge_base_url"),
                sees_image=self.config.getoption("vsc_judge_sees_image") or None,
            )
        return self._judge

    def provider(self) -> Any:
        """The in-process model, loaded once per process; API models get a fresh client per batch."""
        if self.setup.model.startswith("hf/"):
            if self._provider is None:
                self._provider = self.setup.open()
            return self._provider
        return None

    # -- answering --------------------------------------------------------------------------------------
    def answer(self, items: list[Any]) -> None:
        from vscbench.suite.cases import answer_and_judge

        todo = [it for it in items if it.id not in self.results]
        if not todo:
            return
        got = answer_and_judge(
            self.setup,
            todo,
            self.judge,
            data=self.paths,
            store=self.config.getoption("vsc_store"),
            run_id=self.run_id or self.setup.run_id(),
            blocked=self.config.getoption("vsc_blocked"),
            provider=self.provider(),
        )
        self.results.update(got.results)

    flip_budget_zero: bool = True

    def thresholds_budget_zero(self) -> bool:
        return self.flip_budget_zero

    def batch_for(self, item: Any) -> list[Any]:
        """What to answer with ``item``: everything selected (one process), or the item's shard (a worker)."""
        if not _is_worker(self.config):
            return self.selected
        shard = shard_of(item.query_id)
        return [it for it in self.selected if shard_of(it.query_id) == shard]


def _is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _state(config: pytest.Config) -> SuiteState:
    return config.stash[STATE_KEY]


def _usage(msg: str) -> pytest.UsageError:
    return pytest.UsageError(msg)


def _misses_key(state: SuiteState) -> str:
    return f"{CACHE_MISSES}/{state.setup.key()}"


_STATES: dict[str, SuiteState] = {}
