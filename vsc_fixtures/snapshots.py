"""syrupy glue: one readable JSON file per case, per model, under ``tests_safety/__snapshots__/<model>/``.

The format and the comparison are the engine's (:mod:`vscbench.suite.snapshots`). syrupy stores, finds, updates
(``--snapshot-update``) and merges xdist workers' reports; the suite decides what a difference means: in
compare mode this extension reports every existing snapshot as matching (the case itself classifies it as
same, flip or stale), in update mode it compares bytes, so only changed files are rewritten.
"""

from __future__ import annotations

import hashlib
import re
import warnings
from pathlib import Path
from typing import Any

import pytest
from syrupy.extensions.single_file import SingleFileSnapshotExtension, WriteMode

from vsc_fixtures.state import PROP_PREFIX, SuiteState

SNAPSHOT_DIR = "__snapshots__"


def model_dir_name(given: str) -> str:
    """A folder name for a model: the alias or spec as it is when it is a safe name (``tiny``), else made
    readable and safe plus a short hash of the original (``openai_gpt-4o-mini-1a2b3c4d``); a local checkpoint
    by folder name + hash of its path."""
    p = Path(given).expanduser()
    if p.is_dir():
        digest = hashlib.sha256(str(p.resolve()).encode("utf-8")).hexdigest()[:8]
        return f"{re.sub(r'[^A-Za-z0-9._-]+', '_', p.resolve().name)}-{digest}"
    name = re.sub(r"[^A-Za-z0-9._-]+", "_", given).strip("_.") or "model"
    if name != given:  # sanitising changed it: two specs (a/b, a_b; x/.., x) never share a folder
        name += "-" + hashlib.sha256(given.encode("utf-8")).hexdigest()[:8]
    return name


class VscSnapshotExtension(SingleFileSnapshotExtension):
    _write_mode = WriteMode.TEXT
    file_extension = "json"
    #: set by the plugin at configure time
    model_dir = "model"
    update = False

    @classmethod
    def dirname(cls, *, test_location: Any) -> str:
        base = Path(test_location.filepath).parent / SNAPSHOT_DIR / cls.model_dir
        return str(base / test_location.basename)

    def serialize(self, data: Any, **kwargs: Any) -> Any:
        return str(data)

    def matches(self, *, serialized_data: Any, snapshot_data: Any) -> bool:
        return bool(serialized_data == snapshot_data) if self.update else True

    @classmethod
    def write_snapshot(cls, **kwargs: Any) -> None:
        """syrupy's write, without its per-file warning that the model folder is not the test's basename
        (it is by design: ``<model>/<test file>/<case>.json``) and that ``/`` was stripped from the case id."""
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=r"\s*Can not relate snapshot")
            super().write_snapshot(**kwargs)


def snapshot_path(test_file: str | Path, model_dir: str, case_name: str) -> Path:
    """Where the extension keeps a case's file (``case_name``: syrupy's cleaned test name)."""
    return Path(test_file).parent / SNAPSHOT_DIR / model_dir / Path(test_file).stem / f"{case_name}.json"


# -- the suite's glue: each case's step, the files no case owns, syrupy's report folded into ours ----------


def _note_case_file(state: SuiteState, node: pytest.Item) -> None:
    from syrupy.location import PyTestLocation

    name = VscSnapshotExtension.get_snapshot_name(test_location=PyTestLocation(node))
    state.case_files.setdefault(node.path.stem, set()).add(name)


def _find_orphans(session: pytest.Session, state: SuiteState, cases: list[pytest.Item]) -> None:
    """Unused snapshot files: reported always; deleted by --snapshot-update on an unnarrowed run only."""
    from vscbench.suite.snapshots import orphans

    if state.snapshot_dir is None:
        return
    if any("::" in str(a) for a in session.config.args):
        state.narrowed = True
    for node in cases:
        _note_case_file(state, node)
    state.orphans = orphans(state.snapshot_dir, state.case_files)
    if state.orphans and getattr(session.config.option, "update_snapshots", False) and not state.narrowed:
        for path in state.orphans:
            path.unlink(missing_ok=True)
        state.orphans_deleted = True


def _find_orphans_from_ids(config: pytest.Config, state: SuiteState, ids: list[str]) -> None:
    """Under xdist: the controller collects nothing, so it names the unused snapshot files from the node ids
    the workers collected. Deselected cases never reach it, so a run narrowed by its options is not checked."""
    from types import SimpleNamespace

    from syrupy.location import PyTestLocation

    from vscbench.suite.snapshots import narrowed_by_options, orphans

    if not state.snapshots or state.snapshot_dir is None or not ids:
        return
    opt = config.getoption
    state.narrowed = state.narrowed or narrowed_by_options(
        [str(a) for a in config.args], keyword=opt("keyword"), markexpr=opt("markexpr"), sample=opt("vsc_sample"),
        last_misses=opt("vsc_last_misses"), last_failed=opt("lf", False), deselect=opt("deselect", None),
        stepwise=opt("stepwise", False),
    )  # fmt: skip
    if state.narrowed:
        return
    for nid in ids:
        file, _, rest = nid.partition("::")
        func, name = rest.split("::")[-1].split("[", 1)[0], rest.split("::")[-1]
        stub = SimpleNamespace(
            path=Path(config.rootpath) / file, obj=SimpleNamespace(__module__=Path(file).stem, __name__=func),
            name=name, nodeid=nid,
        )  # fmt: skip
        case = VscSnapshotExtension.get_snapshot_name(test_location=PyTestLocation(stub))  # type: ignore[arg-type]
        state.case_files.setdefault(Path(file).stem, set()).add(case)
    state.orphans = orphans(state.snapshot_dir, state.case_files)
    if state.orphans and getattr(config.option, "update_snapshots", False):
        for path in state.orphans:
            path.unlink(missing_ok=True)
        state.orphans_deleted = True


def _snapshot_step(request: pytest.FixtureRequest, state: SuiteState, item: Any, res: Any) -> str | None:
    """Compare the case with its snapshot (or write it under --snapshot-update); the engine decides
    (:func:`vscbench.suite.session.snapshot_step`). Returns why the case fails."""
    from vscbench.suite import snapshots as snap
    from vscbench.suite.session import snapshot_step

    new = snap.record(
        item, outcome=res.outcome, label=res.label.value if res.label else None, judge=res.judge_id,
        status=res.status.value if res.status else None, response=res.text, prompt=res.prompt,
        model=state.setup.model, model_revision=state.setup.revision,
        config_digest=snap.config_digest(state.setup.config, state.setup.calibrations),
    )  # fmt: skip
    assertion = request.getfixturevalue("snapshot").use_extension(VscSnapshotExtension)
    location = Path(assertion.extension.get_location(test_location=assertion.test_location, index=0))
    old_text = location.read_text(encoding="utf-8") if location.is_file() else None
    step = snapshot_step(
        old_text, str(location), new, compare=request.config.getoption("vsc_snapshot_compare"),
        update=VscSnapshotExtension.update, budget_zero=state.thresholds_budget_zero(),
    )  # fmt: skip
    request.node.user_properties.append((PROP_PREFIX + "snapshot", step.kind))
    if step.flip is not None:
        request.node.user_properties += [
            (PROP_PREFIX + "before", step.before),
            (PROP_PREFIX + "flip", step.flip.cls),
            (PROP_PREFIX + "before_response", step.flip.before_response[:2000]),
        ]
    if step.expect is not None:
        assert assertion == step.expect  # update: writes what changed; compare: marks the snapshot used
    return step.failure


class _FoldedSyrupyReport:
    lines: tuple[str, ...] = ()  # syrupy prints nothing: its counts are in our snapshot lines


def _fold_syrupy(config: pytest.Config, state: SuiteState) -> None:
    """Take syrupy's report into ours (the engine folds its lines: :func:`vscbench.suite.summary.fold_syrupy`)."""
    from vscbench.suite.summary import fold_syrupy

    session = getattr(config, "_syrupy", None)
    report = getattr(session, "report", None)
    if session is None or report is None or not state.snapshots:
        return
    update = bool(getattr(config.option, "update_snapshots", False))
    state.syrupy_lines = fold_syrupy([str(x) for x in report.lines], orphans=bool(state.orphans), update=update)
    session.report = _FoldedSyrupyReport()
