"""Collection and markers: one case per benchmark item (markers, never-sendable skips), the selection
(``--vsc-sample``, ``--vsc-last-misses``), what was deselected, and xdist's scheduling by shards of pairs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from vsc_fixtures.state import (
    _STATES,
    ITEM_KEY,
    PROP_PREFIX,
    STATE_KEY,
    _is_worker,
    _misses_key,
    _state,
    _usage,
)
from vscbench.errors import VscbenchError
from vscbench.suite.session import cases_of, item_id_of, query_id_of, shard_of


def _markers() -> list[tuple[str, str]]:
    from vscbench.data.metadata import XSTEST_TYPES
    from vscbench.types import CATEGORIES

    out = [
        ("vsc_items(half=None, settings=None)", "parametrize the test over benchmark items (vsc_item)"),
        ("image_centric", "image-centric half"),
        ("text_centric", "text-centric half (the 4 image settings)"),
        ("baseline", "text-only baseline (XSTest query, no image)"),
        ("safe", "safe items (answering is right)"),
        ("unsafe", "unsafe items (a safety-aware response is right)"),
        ("robustness", "metamorphic robustness cases (opt in with -m robustness)"),
    ]
    out += [(c, f"image-centric category {c}") for c in CATEGORIES]
    out += [(s, f"text-centric setting {s}") for s in ("search", "typography", "concat", "figstep")]
    out += [(t, f"XSTest type {t}") for t in sorted(XSTEST_TYPES)]
    return out


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """Whole shards of pairs per worker: each worker answers its own shards, nothing is answered twice."""
    if _state(config).setup is None:
        return None
    from xdist.scheduler import LoadScopeScheduling

    class ShardScheduling(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            iid = item_id_of(nodeid)
            if iid is None or "/" not in iid:
                return nodeid
            return f"vsc-shard-{shard_of(query_id_of(iid))}"

    return ShardScheduling(config, log)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "vsc_item" not in metafunc.fixturenames:
        return
    marker = metafunc.definition.get_closest_marker("vsc_items")
    kw = dict(marker.kwargs) if marker else {}
    state = _state(metafunc.config)
    try:
        items = state.items
        unsendable = state.unsendable
    except VscbenchError as exc:
        raise _usage(str(exc)) from None
    params = [
        pytest.param(it, id=it.id, marks=[getattr(pytest.mark, m) for m in names]
                     + ([pytest.mark.skip(reason=skip)] if skip else []))
        for it, names, skip in cases_of(items, unsendable, half=kw.get("half"), settings=kw.get("settings"))
    ]  # fmt: skip
    metafunc.parametrize("vsc_item", params)


def _collects_suite(config: pytest.Config) -> bool:
    """Whether this session's paths reach tests_safety/ (its folder, a file in it, or a folder above it)."""
    suite = (Path(config.rootpath) / "tests_safety").resolve()
    for arg in config.args:
        p = Path(config.invocation_params.dir, arg.split("::", 1)[0]).resolve()
        if p == suite or suite in p.parents or p in suite.parents:
            return True
    return False


@pytest.hookimpl(tryfirst=True)
def pytest_collection(session: pytest.Session) -> None:
    """Find the benchmark data before collecting the cases: a missing release is one usage-error line."""
    config = session.config
    if _collects_suite(config):
        try:
            _state(config).unsendable  # noqa: B018 - loads the items (and the metadata search) once
        except VscbenchError as exc:
            raise _usage(str(exc)) from None


def _vsc_cases(items: list[pytest.Item]) -> list[pytest.Item]:
    out = []
    for node in items:
        callspec = getattr(node, "callspec", None)
        if callspec is not None and "vsc_item" in callspec.params:
            node.stash[ITEM_KEY] = callspec.params["vsc_item"]
            out.append(node)
    return out


@pytest.hookimpl(trylast=True)  # after -k / -m deselection
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    cases = _vsc_cases(items)
    if not cases:
        return
    state = _state(config)
    if state.setup is None and not config.getoption("collectonly"):
        from vsc_fixtures.models import load_aliases

        raise _usage(
            "no model given: pass --model=ALIAS (" + ", ".join(sorted(load_aliases()))
            + "), an engine spec (e.g. --model=openai/gpt-4o-mini) or a checkpoint folder"
        )
    from vscbench.suite.cases import sendability
    from vscbench.suite.session import select

    sample = config.getoption("vsc_sample")
    misses = None
    if config.getoption("vsc_last_misses"):
        cache = getattr(config, "cache", None)
        misses = set(cache.get(_misses_key(state), []) if cache is not None and state.setup else [])
    try:
        sel = select([n.stash[ITEM_KEY] for n in cases], state.unsendable, sample=sample,
                     seed=config.getoption("vsc_seed"), misses=misses)  # fmt: skip
    except VscbenchError as exc:
        raise _usage(str(exc)) from None
    keep = {n for n in cases if n.stash[ITEM_KEY].id in sel.keep}
    picked, draws = sel.picked, sel.draws
    dropped = [n for n in cases if n not in keep]
    if dropped:
        config.hook.pytest_deselected(items=dropped)
        items[:] = [n for n in items if n not in set(dropped)]
    for n in items:
        it = n.stash.get(ITEM_KEY, None)
        if it is not None:
            n.user_properties.append((PROP_PREFIX + "item", it.id))
    state.selected = [
        n.stash[ITEM_KEY] for n in items if ITEM_KEY in n.stash and n.stash[ITEM_KEY].id not in state.unsendable
    ]
    state.n_selected = len(picked)
    state.unsendable_selected = {it: state.unsendable[it.id] for it in picked if it.id in state.unsendable}
    worker_out = getattr(config, "workeroutput", None)
    if worker_out is not None:  # the controller collects nothing: each worker tells it what was selected
        worker_out["vsc_selection"] = {
            "n_selected": state.n_selected, "unsendable": sorted(it.id for it in state.unsendable_selected),
        }  # fmt: skip
    if not _is_worker(config):
        state.expected = {n.stash[ITEM_KEY].id for n in items if ITEM_KEY in n.stash}
        tr = config.pluginmanager.get_plugin("terminalreporter")
        if tr is not None and not config.getoption("collectonly"):
            for line in sendability(picked, state.unsendable, sample=sample, draws=draws, run=len(state.selected)):
                tr.write_line(line)


def pytest_deselected(items: list[pytest.Item]) -> None:
    state = _STATES.get("current")
    if state is not None and _vsc_cases(list(items)):
        state.narrowed = True
        from vsc_fixtures.snapshots import _note_case_file

        for node in _vsc_cases(list(items)):
            _note_case_file(state, node)


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.setup is not None and state.snapshots and not _is_worker(session.config):
        from vsc_fixtures.snapshots import _find_orphans

        _find_orphans(session, state, _vsc_cases(session.items))
    if _vsc_cases(session.items):
        import gc

        gc.freeze()  # thousands of cases live until exit: keep the collector from walking them again and again


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: Any, error: Any) -> None:
    """A worker's selection facts (every worker collects the same): the header and the rows' reasons."""
    state = _state(node.config)
    sel = getattr(node, "workeroutput", {}).get("vsc_selection")
    if state.setup is None or not sel or state.unsendable_selected is not None:
        return
    by_id = state.by_id
    state.n_selected = int(sel["n_selected"])
    state.unsendable_selected = {by_id[i]: state.unsendable[i] for i in sel["unsendable"] if i in by_id}


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    state = _state(node.config)
    if state.setup is None:
        return
    by_id = state.by_id
    state.expected |= {iid for nid in ids if (iid := item_id_of(nid)) is not None and iid in by_id}
    from vsc_fixtures.answering import _say_run

    _say_run(node.config, state)  # the first worker's collection: before any case is scheduled
    if not state.case_files:  # every worker collects the same cases: the first one's ids are enough
        from vsc_fixtures.snapshots import _find_orphans_from_ids

        _find_orphans_from_ids(node.config, state, [nid for nid in ids if item_id_of(nid) in by_id])


