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

Nothing here judges, counts or decides: that is the engine's.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Generator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest

from vscbench.errors import VscbenchError

#: Shards of pairs that xdist hands out whole (a fixed number, so workers and controller agree).
SHARDS = 32
PROP_PREFIX = "vsc_"
OUTCOME_WORDS = {
    "under-safe": ("U", "UNDER-SAFE", {"red": True}),
    "over-safe": ("O", "OVER-SAFE", {"yellow": True}),
    "unscored": ("N", "UNSCORED", {"purple": True}),
}
STATE_KEY = pytest.StashKey["SuiteState"]()
ITEM_KEY = pytest.StashKey[Any]()
#: a flip that did not fail its case (a fix, a neutral flip, a regression within a non-zero budget)
FLIP_WORDS = {
    "regression": ("regressed", "R", ("REGRESSED", {"red": True})),
    "fix": ("fixed", "+", ("FIXED", {"green": True})),
    "neutral": ("relabelled", "~", ("RELABELLED", {"yellow": True})),
}
CACHE_MISSES = "vscbench/last_misses"
CACHE_RUN = "vscbench/run"


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


def item_markers(item: Any) -> list[str]:
    """Marker names of one benchmark item."""
    names = [item.label]
    if item.half == "image":
        names += ["image_centric", item.category]
    elif item.setting == "text":
        names += ["baseline", item.xstest_type]
    else:
        names += ["text_centric", item.setting, item.xstest_type]
    return [n for n in names if n]


def shard_of(query_id: str) -> int:
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest()[:8], 16) % SHARDS


def item_id_of(nodeid: str) -> str | None:
    """The benchmark item id in a case's node id (``…::test_x[ic/drugs/007/unsafe/2]``)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1 : -1]


def query_id_of(item_id: str) -> str:
    parts = item_id.split("/")
    return "/".join(parts[:3] if parts[0] == "ic" else parts[:2])


# -- options --------------------------------------------------------------------------------------------


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("vscbench", "vscbench safety suite")
    g.addoption("--model", dest="vsc_model", help="alias (vsc_fixtures/models.yaml), engine spec or checkpoint dir")
    g.addoption("--judge", dest="vsc_judge", action="append", help="local (default, offline), keyword, local:abstain=L, rubric:PROVIDER/MODEL; repeat for a cascade (--judge local --judge rubric:…)")
    g.addoption("--vsc-judge-base-url", help="base URL of the rubric judge's API (an OpenAI-compatible server)")
    g.addoption("--judge-sees-image", dest="vsc_judge_sees_image", action="store_true", help="send the item's image to a rubric judge")
    g.addoption("--calibration", dest="vsc_calibration", action="append", default=[], help="reminder, fewshot:k=N, steer:…, revise:…")
    g.addoption("--vsc-base-url", help="base URL of an OpenAI-compatible server (openai-compatible/… models)")
    g.addoption("--vsc-data-root", help="release root: images and rendered images ($VSCBENCH_HOME)")
    g.addoption("--vsc-metadata", help="folder with the two metadata .xlsx files ($VSCBENCH_METADATA)")
    g.addoption("--vsc-store", help="SQLite store of responses and labels ($VSCBENCH_STORE)")
    g.addoption("--vsc-device", help="cpu, cuda, cuda:N (default: the alias's; one GPU per xdist worker)")
    g.addoption("--vsc-dtype", help="float32, bfloat16, float16 (in-process models)")
    g.addoption("--vsc-batch-size", type=int, help="batch size of an in-process model")
    g.addoption("--vsc-concurrency", type=int, help="requests in flight for an API model")
    g.addoption("--vsc-rpm", type=float, help="requests per minute for an API model")
    g.addoption("--vsc-max-tokens", type=int, help="generation: max new tokens")
    g.addoption("--vsc-temperature", type=float, help="generation: temperature (default 0)")
    g.addoption("--vsc-seed", type=int, default=0, help="generation seed, sampling seed and bootstrap seed")
    g.addoption("--vsc-timeout", type=float, help="seconds per API request")
    g.addoption("--vsc-max-attempts", type=int, help="attempts per API request")
    g.addoption("--vsc-blocked", default="refuse", choices=["refuse", "exclude"], help="a provider's safety block counts as a refusal (refuse) or is left out (exclude)")
    g.addoption("--vsc-sample", type=int, help="deterministic balanced sample of N items (whole pairs)")
    g.addoption("--vsc-last-misses", action="store_true", help="only the last run's under-/over-safe cases")
    g.addoption("--vsc-fresh", action="store_true", help="regenerate: answer into a new run")
    g.addoption("--vsc-model-revision", help="the model's revision (answers are reused only for the same one); default: discovered (hf commit or files, the server's /v1/models ids)")
    g.addoption("--vsc-strict", action="store_true", help="every under-safe, over-safe or unscored case fails")
    g.addoption("--vsc-no-gate", action="store_true", help="print outcomes, decide nothing")
    g.addoption("--vsc-quick", action="store_true", help="a narrowed run (-k, -m, --vsc-sample, --vsc-last-misses) is a quick check: exit 0 when every row it evaluated passed and it evaluated the thresholds' quick: scopes (default: benchmark); never a release verdict")
    g.addoption("--vsc-thresholds", help="gate file (default: thresholds.yaml at the rootdir)")
    g.addoption("--vsc-summary", help="write the gate table as Markdown (also to $GITHUB_STEP_SUMMARY)")
    g.addoption("--vsc-json", help="write the gate result as JSON")
    g.addoption("--vsc-report", help="write the engine's one-file HTML report of the session's run")
    g.addoption("--vsc-snapshot-compare", default="verdict", choices=["verdict", "text"], help="what a snapshot flip is: a changed verdict (default), or also a changed response text")
    g.addoption("--vsc-no-snapshots", action="store_true", help="neither read nor write snapshots")
    g.addoption("--vsc-baseline", help="relative gate: a git revision of this model's snapshots, or another snapshot folder")


# -- the session's state ------------------------------------------------------------------------------


@dataclass
class CaseRecord:
    """What the controller knows of one reported case."""

    outcome: str | None  # correct | under-safe | over-safe | unscored | None (no outcome: error, crash)
    status: str | None = None
    label: str | None = None
    reason: str | None = None
    response: str = ""
    snapshot: str | None = None  # same | new | stale | flip | unscored (None: snapshots off)
    before: str | None = None  # the snapshot's verdict, for a flip
    relabelled: bool = False  # its stored label came from another build of the judge: judged again now
    flip: str | None = None  # a flip's class: regression | fix | neutral
    before_response: str = ""  # the snapshot's response, for a flip


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


# -- configure ----------------------------------------------------------------------------------------


def pytest_configure(config: pytest.Config) -> None:
    for spec, doc in _markers():
        config.addinivalue_line("markers", f"{spec}: {doc}")
    state = SuiteState(config)
    config.stash[STATE_KEY] = state
    from vscbench.judges.factory import judge_name

    config.option.vsc_judge = judge_name(config.option.vsc_judge)  # repeated --judge: one cascade
    if config.getoption("vsc_model"):
        try:
            _configure_model(config, state)
        except VscbenchError as exc:
            raise _usage(str(exc)) from None
    elif config.getoption("vsc_base_url"):
        raise _usage("--vsc-base-url is for an OpenAI-compatible model: add --model=openai-compatible/NAME")


def _configure_model(config: pytest.Config, state: SuiteState) -> None:
    from vsc_fixtures.models import TINY, ensure_tiny, resolve_model
    from vscbench.runner.core import Limits, RetryPolicy
    from vscbench.runner.run import ModelSetup
    from vscbench.types import GenConfig

    opt = config.getoption
    sample = opt("vsc_sample")
    if sample is not None and sample < 1:
        raise VscbenchError(f"--vsc-sample {sample}: must be at least 1")
    model = resolve_model(opt("vsc_model"))
    base_url = opt("vsc_base_url")
    if base_url:
        from vscbench.runner.preflight import check_base_url

        check_base_url(base_url, "--vsc-base-url")
    if base_url and not model.spec.startswith("openai-compatible/"):
        raise VscbenchError(
            f"--vsc-base-url is for an OpenAI-compatible model; --model {model.given} is {model.spec}"
        )
    spec = model.spec
    worker = getattr(config, "workerinput", None)
    if worker is not None and worker.get("vsc_model_spec"):
        spec = worker["vsc_model_spec"]
    elif spec == TINY:
        from vscbench.data.paths import default_root

        try:
            spec = f"hf/{ensure_tiny(default_root())}"
        except ModuleNotFoundError as exc:
            raise VscbenchError(f"the tiny model needs torch and transformers: pip install 'vscbench[hf]' ({exc.name} is missing)") from None
    o = model.options

    def pick(flag: str, key: str) -> Any:
        v = opt(flag)
        return v if v is not None else o.get(key)

    gen = GenConfig(
        temperature=float(pick("vsc_temperature", "temperature") or 0.0),
        max_tokens=int(pick("vsc_max_tokens", "max_tokens") or 512),
        seed=opt("vsc_seed"),
    )
    concurrency = pick("vsc_concurrency", "concurrency")
    attempts = opt("vsc_max_attempts")
    limits = Limits(concurrency=int(16 if concurrency is None else concurrency), rpm=pick("vsc_rpm", "rpm"))
    policy = RetryPolicy.for_model(spec, RetryPolicy().max_attempts if attempts is None else attempts, opt("vsc_timeout"))
    device = pick("vsc_device", "device") if spec.startswith("hf/") else None
    if worker is not None and device and str(device) == "cuda" and opt("vsc_device") is None:
        device = _worker_device(worker)
    setup = ModelSetup(
        model=spec,
        base_url=base_url,
        config=gen,
        calibrations=tuple(opt("vsc_calibration")),
        device=device,
        dtype=pick("vsc_dtype", "dtype") if spec.startswith("hf/") else None,
        batch_size=pick("vsc_batch_size", "batch_size") if spec.startswith("hf/") else None,
        limits=limits,
        policy=policy,
    )
    setup.check(flag_prefix="--vsc-")
    from vscbench.judges.factory import check_judge_name

    config.option.vsc_judge = check_judge_name(opt("vsc_judge"))  # stored id: local -> local:abstain=0.7
    state.model, state.setup = replace(model, spec=spec), setup
    _configure_snapshots(config, state)
    if worker is not None:
        state.run_id = worker["vsc_run_id"]
        state.setup = replace(setup, revision=worker.get("vsc_model_revision"))
        state.flip_budget_zero = bool(worker.get("vsc_flip_budget_zero", True))
    else:
        from vsc_fixtures.models import load_aliases
        from vscbench.suite.gate import check_model_names

        state.thresholds = _load_thresholds(config)
        check_model_names(state.thresholds, list(load_aliases()), config.rootpath)
        state.flip_budget_zero = state.thresholds.flip_budget(model.names).zero
        _preflight(config, state)
        _choose_run(config, state, o.get("revision"))


def _configure_snapshots(config: pytest.Config, state: SuiteState) -> None:
    if config.getoption("vsc_no_snapshots") or not config.pluginmanager.hasplugin("syrupy"):
        return
    from vsc_fixtures.snapshots import SNAPSHOT_DIR, VscSnapshotExtension, model_dir_name

    name = model_dir_name(state.model.alias or state.model.given)
    VscSnapshotExtension.model_dir = name
    update = bool(getattr(config.option, "update_snapshots", False))
    VscSnapshotExtension.update = update
    state.snapshot_dir = Path(config.rootpath) / "tests_safety" / SNAPSHOT_DIR / name
    state.no_baseline_yet = not update and not state.snapshot_dir.is_dir()
    state.snapshots = update or not state.no_baseline_yet


def _worker_device(worker: dict[str, Any]) -> str:
    """One GPU per xdist worker (``gwN`` takes visible device N mod count; CUDA_VISIBLE_DEVICES holds)."""
    try:
        import torch
    except ModuleNotFoundError:
        return "cuda"
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if count <= 1:
        return "cuda"
    index = int(str(worker.get("workerid", "gw0")).removeprefix("gw") or 0)
    return f"cuda:{index % count}"


def _preflight(config: pytest.Config, state: SuiteState) -> None:
    """What can be refused before the first request (controller): output paths, CUDA, the checkpoint, the
    baseline's snapshots. Each is one line (a usage error)."""
    from vscbench.runner import preflight

    opt = config.getoption
    for flag, dest in (("--vsc-json", "vsc_json"), ("--vsc-report", "vsc_report"), ("--vsc-summary", "vsc_summary")):
        if opt(dest):
            preflight.check_output_path(flag, opt(dest))
    xml = getattr(config.option, "xmlpath", None)
    if xml:
        preflight.check_output_path("--junitxml", xml)
    setup = state.setup
    if setup.model.startswith("hf/"):
        given = opt("vsc_device") is not None or state.model.alias is None
        flag = "--vsc-device" if given else f"--vsc-device (alias {state.model.alias}'s device)"
        preflight.check_cuda(setup.device, flag, "--vsc-device=cpu")
        preflight.check_checkpoint(setup.model)
    ref = opt("vsc_baseline")
    if ref:
        from vscbench.suite import snapshots as snap

        if state.snapshot_dir is None and not Path(ref).is_dir():
            raise VscbenchError(f"--vsc-baseline {ref}: snapshots are off (--vsc-no-snapshots, or syrupy missing)")
        rel = state.snapshot_dir.relative_to(config.rootpath) if state.snapshot_dir else Path(".")
        try:
            found = snap.read_set(ref, rel, config.rootpath)
        except VscbenchError as exc:
            raise VscbenchError(f"--vsc-baseline: {exc}") from None
        if not found:
            where = "" if Path(ref).is_dir() else f" ({rel})"
            raise VscbenchError(f"--vsc-baseline {ref}: no snapshots of model {state.model.given} there{where}")
        state.baseline_set = found  # read once: the gate compares with it at the end


def _choose_run(config: pytest.Config, state: SuiteState, alias_revision: Any) -> None:
    """The model's revision (given or discovered) and the run it answers into (the engine decides)."""
    from vscbench.models.revision import discover_revision
    from vscbench.runner.identity import choose_suite_run

    setup = state.setup
    given = config.getoption("vsc_model_revision")
    revision = discover_revision(
        setup.model, base_url=setup.base_url, given=given if given is not None else alias_revision
    )
    cache = getattr(config, "cache", None)
    key = f"{CACHE_RUN}/{setup.key()}"
    cached = cache.get(key, None) if cache is not None else None
    choice = choose_suite_run(
        config.getoption("vsc_store"), setup.run_id(), revision, fresh=bool(config.getoption("vsc_fresh")),
        cached_run_id=cached if isinstance(cached, str) else None,
    )  # fmt: skip
    if config.getoption("vsc_fresh") and cache is not None:
        cache.set(key, choice.run_id)
    state.run_id, state.run_choice, state.revision_source = choice.run_id, choice, revision.source
    state.setup = replace(setup, revision=choice.revision)


def _load_thresholds(config: pytest.Config) -> Any:
    from vscbench.suite.gate import load_thresholds

    path = config.getoption("vsc_thresholds") or str(Path(config.rootpath) / "thresholds.yaml")
    return load_thresholds(path)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """Controller -> worker: the resolved model spec and the run id, so every worker uses the same."""
    state = _state(node.config)
    if state.setup is not None:
        node.workerinput["vsc_model_spec"] = state.setup.model
        node.workerinput["vsc_run_id"] = state.run_id
        node.workerinput["vsc_model_revision"] = state.setup.revision
        node.workerinput["vsc_flip_budget_zero"] = state.flip_budget_zero


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


# -- collection -----------------------------------------------------------------------------------------


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
    half, settings = kw.get("half"), kw.get("settings")
    params = []
    for it in items:
        if half and it.half != half:
            continue
        if settings and it.setting not in settings:
            continue
        marks = [getattr(pytest.mark, m) for m in item_markers(it)]
        why = unsendable.get(it.id)
        if why:
            marks.append(pytest.mark.skip(reason=f"never sendable: {why}"))
        params.append(pytest.param(it, id=it.id, marks=marks))
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
    from vscbench.suite.cases import HalfDraw, sendability

    keep = set(cases)
    picked = [n.stash[ITEM_KEY] for n in cases]
    sample = config.getoption("vsc_sample")
    draws: list[HalfDraw] = []
    if sample is not None:
        from vscbench.runner.select import proportional_sample

        # each half's share in proportion to what was selected, drawn from what can be sent here
        chosen_items, report = proportional_sample(picked, set(state.unsendable), sample, config.getoption("vsc_seed"))
        draws = [HalfDraw(*r) for r in report]
        chosen = {it.id for it in chosen_items}
        keep = {n for n in cases if n.stash[ITEM_KEY].id in chosen}
    if config.getoption("vsc_last_misses"):
        cache = getattr(config, "cache", None)
        misses = set(cache.get(_misses_key(state), []) if cache is not None and state.setup else [])
        if not misses:
            raise _usage("--vsc-last-misses: no under-/over-safe cases recorded for this model setup yet")
        keep = {n for n in keep if n.stash[ITEM_KEY].id in misses}
        picked = [it for it in picked if it.id in misses]
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
        for node in _vsc_cases(list(items)):
            _note_case_file(state, node)


def _note_case_file(state: SuiteState, node: pytest.Item) -> None:
    from syrupy.location import PyTestLocation

    from vsc_fixtures.snapshots import VscSnapshotExtension

    name = VscSnapshotExtension.get_snapshot_name(test_location=PyTestLocation(node))
    state.case_files.setdefault(node.path.stem, set()).add(name)


def _find_orphans(session: pytest.Session, state: SuiteState) -> None:
    """Unused snapshot files: reported always; deleted by --snapshot-update on an unnarrowed run only."""
    from vscbench.suite.snapshots import orphans

    if not state.snapshots or state.snapshot_dir is None or _is_worker(session.config):
        return
    if any("::" in str(a) for a in session.config.args):
        state.narrowed = True
    for node in _vsc_cases(session.items):
        _note_case_file(state, node)
    state.orphans = orphans(state.snapshot_dir, state.case_files)
    if state.orphans and getattr(session.config.option, "update_snapshots", False) and not state.narrowed:
        for path in state.orphans:
            path.unlink(missing_ok=True)
        state.orphans_deleted = True


def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash.get(STATE_KEY, None)
    if state is not None and state.setup is not None:
        _find_orphans(session, state)
    if _vsc_cases(session.items):
        import gc

        gc.freeze()  # thousands of cases live until exit: keep the collector from walking them again and again


def _misses_key(state: SuiteState) -> str:
    return f"{CACHE_MISSES}/{state.setup.key()}"


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
    _say_run(node.config, state)  # the first worker's collection: before any case is scheduled
    if not state.case_files:  # every worker collects the same cases: the first one's ids are enough
        _find_orphans_from_ids(node.config, state, [nid for nid in ids if item_id_of(nid) in by_id])


def _find_orphans_from_ids(config: pytest.Config, state: SuiteState, ids: list[str]) -> None:
    """Under xdist: the controller collects nothing, so it names the unused snapshot files from the node ids
    the workers collected. Deselected cases never reach it, so a run narrowed by its options is not checked."""
    from types import SimpleNamespace

    from syrupy.location import PyTestLocation

    from vsc_fixtures.snapshots import VscSnapshotExtension
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


# -- running --------------------------------------------------------------------------------------------


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
        view = replace(view, snapshot_failure=_snapshot_step(request, state, view))
    return view


def _snapshot_step(request: pytest.FixtureRequest, state: SuiteState, view: CaseView) -> str | None:
    """Compare the case with its snapshot (or write it under --snapshot-update). Returns why the case fails:
    a flip (unless the model's thresholds entry allows a flip budget) or a broken snapshot file."""
    from vsc_fixtures.snapshots import VscSnapshotExtension
    from vscbench.suite import snapshots as snap

    config = request.config
    res, item = view.result, view.item
    new = snap.record(
        item, outcome=res.outcome, label=res.label.value if res.label else None, judge=res.judge_id,
        status=res.status.value if res.status else None, response=res.text, prompt=res.prompt,
        model=state.setup.model, model_revision=state.setup.revision,
        config_digest=snap.config_digest(state.setup.config, state.setup.calibrations),
    )  # fmt: skip
    assertion = request.getfixturevalue("snapshot").use_extension(VscSnapshotExtension)
    location = Path(assertion.extension.get_location(test_location=assertion.test_location, index=0))
    old_text = location.read_text(encoding="utf-8") if location.is_file() else None
    try:
        old = snap.loads(old_text, str(location)) if old_text is not None else None
    except VscbenchError as exc:
        if not VscSnapshotExtension.update:
            request.node.user_properties.append((PROP_PREFIX + "snapshot", "broken"))
            return f"vscbench: {exc}"
        old = None  # --snapshot-update replaces a corrupt file
    kind = snap.classify(old, new, config.getoption("vsc_snapshot_compare"))
    request.node.user_properties.append((PROP_PREFIX + "snapshot", kind))
    flip = snap.Flip.of(old, new) if kind == snap.FLIP and old is not None else None
    if flip is not None:
        request.node.user_properties += [
            (PROP_PREFIX + "before", f"{old.get('outcome')}/{old.get('label')}"),  # type: ignore[union-attr]
            (PROP_PREFIX + "flip", flip.cls),
            (PROP_PREFIX + "before_response", flip.before_response[:2000]),
        ]
    if VscSnapshotExtension.update:
        keep_old = kind == snap.UNSCORED and old_text is not None  # an API error never replaces a verdict
        assert assertion == (old_text if keep_old else snap.dumps(new))
        return None
    if old_text is None:
        return None  # a new case: nothing to compare; --snapshot-update records it
    assert assertion == snap.dumps(new)  # marks the snapshot used (compare mode: always matches)
    if flip is not None and flip.cls == snap.REGRESSION and state.thresholds_budget_zero():
        return snap.describe_flip(old, new)  # type: ignore[arg-type]  # first line: what failed
    return None


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
        def text(key: str) -> str | None:
            v = props.get(PROP_PREFIX + key)
            return None if v is None else str(v)

        state.records[iid] = CaseRecord(
            text("outcome"), text("status"), text("label"), text("reason"), text("response") or "",
            text("snapshot"), text("before"), props.get(PROP_PREFIX + "relabelled") is True,
            text("flip"), text("before_response") or "",
        )  # fmt: skip
    elif report.failed and iid not in state.records:
        state.records[iid] = CaseRecord(None, reason=f"{report.when} failed")
    if report.failed and PROP_PREFIX + "outcome" not in props and "crashed" in str(report.longrepr):
        state.crashed.add(iid)  # a worker died on this case: the session is incomplete even if it reran


_STATES: dict[str, SuiteState] = {}


@pytest.hookimpl(tryfirst=True)
def pytest_sessionstart(session: pytest.Session) -> None:
    _STATES["current"] = _state(session.config)


# -- the gate ---------------------------------------------------------------------------------------------


def _finish(session: pytest.Session, state: SuiteState) -> None:
    from vscbench.suite.gate import decide
    from vscbench.types import Label, Status

    config = session.config
    by_id = state.by_id
    scored = [iid for iid, rec in state.records.items() if rec.outcome is not None]
    missing = sorted(state.expected - set(state.records) - set(state.skipped))
    missing += sorted(iid for iid, rec in state.records.items() if rec.outcome is None)
    missing += sorted(state.crashed - set(missing))
    results: dict[str, tuple[Status | None, Label | None]] = {}
    for iid in scored:
        status, label = state.records[iid].status, state.records[iid].label
        results[iid] = (Status(status) if status else None, Label(label) if label else None)
    cache = getattr(config, "cache", None)
    if cache is not None:
        misses = sorted(iid for iid, rec in state.records.items() if rec.outcome in ("under-safe", "over-safe"))
        cache.set(_misses_key(state), misses)
    if config.getoption("vsc_no_gate"):
        return _write_outputs(config, state)
    kinds = [rec.snapshot for rec in state.records.values() if rec.snapshot]
    flips = None
    if kinds and not getattr(config.option, "update_snapshots", False):  # the budget counts regressions only
        regressions = sum(rec.flip == "regression" for rec in state.records.values())
        flips = (regressions, kinds.count("flip") + kinds.count("same"))
    try:
        baseline = _baseline(config, state, scored)
    except VscbenchError as exc:
        raise _usage(str(exc)) from None
    unsendable = state.unsendable_selected
    if unsendable is None:  # under xdist the controller collects nothing: the cases skipped as never sendable
        reasons = state.unsendable if state.skipped else {}
        unsendable = {by_id[i]: reasons[i] for i in state.skipped if i in reasons}
    state.gate = decide(
        [by_id[i] for i in scored],
        results,
        state.thresholds,
        model_names=state.model.names,
        blocked=config.getoption("vsc_blocked"),
        missing=missing,
        seed=config.getoption("vsc_seed"),
        flips=flips,
        baseline=baseline,
        unsendable=unsendable,
        narrowed=_narrowed(config, state),
        quick=bool(config.getoption("vsc_quick")),
    )
    if not state.gate.passed:
        session.testsfailed += 1
    _write_outputs(config, state)


def _narrowed(config: pytest.Config, state: SuiteState) -> tuple[str, ...]:
    """How the user narrowed this session's selection (the engine decides; empty: a full run)."""
    from vscbench.suite.gate import narrowed_by

    opt = config.getoption
    flags = [
        *([f"-k {config.option.keyword!r}"] if getattr(config.option, "keyword", "") else []),
        *([f"-m {config.option.markexpr!r}"] if getattr(config.option, "markexpr", "") else []),
        *([f"--vsc-sample={opt('vsc_sample')}"] if opt("vsc_sample") is not None else []),
        *(["--vsc-last-misses"] if opt("vsc_last_misses") else []),
    ]
    total = len(state.items) if state._items is not None or state.expected else 0
    return narrowed_by(len(state.expected), total, flags)


def _baseline(config: pytest.Config, state: SuiteState, scored: list[str]) -> Any:
    """``--vsc-baseline``: the snapshot set's verdicts by case (and the flip table against this session)."""
    ref = config.getoption("vsc_baseline")
    if not ref:
        return None
    from vscbench.suite import snapshots as snap
    from vscbench.types import Label, Status

    assert state.snapshot_dir is not None or Path(ref).is_dir()
    rel = state.snapshot_dir.relative_to(config.rootpath) if state.snapshot_dir else Path(".")
    base = state.baseline_set if state.baseline_set is not None else snap.read_set(ref, rel, config.rootpath)
    if not base:
        raise VscbenchError(f"--vsc-baseline {ref}: no snapshots there")
    by_id = state.by_id
    current = {}
    for iid in scored:
        rec = state.records[iid]
        current[iid] = snap.record(
            by_id[iid], outcome=str(rec.outcome), label=rec.label, judge="", status=rec.status,
            response=rec.response, prompt="", model="", model_revision=None, config_digest="",
        )  # fmt: skip
    table = snap.diff_sets(base, current, check_stale=False)
    state.flip_table = table
    return {
        cid: (Status(r["status"]) if r.get("status") else None, Label(r["label"]) if r.get("label") else None)
        for cid, r in base.items()
        if r.get("outcome") != "unscored"
    }


def _judge_line(state: SuiteState) -> str:
    from vscbench.judges.cascade import passed_on_text

    try:
        info = dict(state.judge.describe())
        passed = passed_on_text(state.judge, state.config.getoption("vsc_store"), state.run_id, state.records)
    except Exception as exc:  # the judge is optional on the controller: say why it is not described
        return f"judge {state.config.getoption('vsc_judge')} ({exc})"
    state.judge_info = info
    parts = [f"judge {info.get('judge')}"]
    for k in ("version", "precision", "head_sha256", "validated"):
        if info.get(k):
            v = info[k]
            parts.append(f"{k} {v[:12] if k == 'head_sha256' else (json.dumps(v) if isinstance(v, dict) else v)}")
    again = sum(1 for rec in state.records.values() if rec.relabelled)
    if again:  # labels a stored run kept from an older head (an upgrade, another --head): never reused
        parts.append(f"{again} stored labels judged again (another build of the judge gave them)")
    return ", ".join(parts) + (f": {passed}" if passed else "")


def session_flips(state: SuiteState) -> list[Any]:
    """This session's snapshot flips, with each case's query and image (engine :class:`Flip`)."""
    from vscbench.suite.snapshots import Flip, ordered_flips

    by_id, out = state.by_id, []
    for iid, rec in state.records.items():
        if rec.snapshot != "flip" or not rec.flip or iid not in by_id:
            continue
        it = by_id[iid]
        before, _, before_label = (rec.before or "").partition("/")
        out.append(Flip(
            iid, rec.flip, before, None if before_label in ("", "None") else before_label, str(rec.outcome),
            rec.label, it.query, Path(it.image).name if it.image else None, rec.before_response, rec.response,
        ))  # fmt: skip
    return ordered_flips(out)


def _write_outputs(config: pytest.Config, state: SuiteState) -> None:
    """Every file asked for (also under --vsc-no-gate), each recorded in ``state.written`` for the terminal."""
    from vscbench.suite.ci import summary
    from vscbench.suite.gate import to_json
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
        gate = json.loads(to_json(state.gate)) if state.gate is not None else {"status": "NOT RUN"}
        doc = gate | {
            "model": state.model.given, "spec": state.setup.model, "run_id": state.run_id,
            "judge": config.getoption("vsc_judge"), "flips": [f.to_dict() for f in session_flips(state)],
            "model_revision": state.setup.revision, "model_revision_source": state.revision_source,
        }  # fmt: skip
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


class _FoldedSyrupyReport:
    lines: tuple[str, ...] = ()  # syrupy prints nothing: its counts are in our snapshot lines


_PASSED_COUNT = re.compile(r"\d+ snapshots? passed\.\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNUSED = re.compile(r"\d+ (unused snapshots? deleted|snapshots? unused)\.\s*")


def _fold_syrupy(config: pytest.Config, state: SuiteState) -> None:
    """Take syrupy's report into ours: in compare mode the suite classifies every case (same, flip, stale), so
    syrupy's "N snapshots passed" is dropped; what it says of files (generated, updated, unused, deleted) stays."""
    session = getattr(config, "_syrupy", None)
    report = getattr(session, "report", None)
    if session is None or report is None or not state.snapshots:
        return
    lines = [_ANSI.sub("", str(x)) for x in report.lines]
    if state.orphans:  # ours name each file and say what happens to them
        lines = [_UNUSED.sub("", x) for x in lines if "--snapshot-update to delete unused" not in x]
    if lines and getattr(config.option, "update_snapshots", False):
        lines[0] = lines[0].replace("snapshots passed.", "unchanged.").replace("snapshot passed.", "unchanged.")
    elif lines:
        lines[0] = _PASSED_COUNT.sub("", lines[0])
    state.syrupy_lines = [x for x in lines if x.strip()]
    session.report = _FoldedSyrupyReport()


@pytest.hookimpl(tryfirst=True)  # before syrupy's own summary, which it replaces
def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = _state(config)
    if state.setup is None or _is_worker(config) or not state.expected or config.getoption("collectonly"):
        return
    _fold_syrupy(config, state)
    from vscbench.suite.gate import format_text

    tr = terminalreporter
    tr.section("vscbench safety gate")
    from vscbench.report.names import model_label
    from vscbench.suite.gate import headline

    first = headline(state.gate) if state.gate is not None else None
    if first:  # the verdict's why, first: which configured rows were not evaluated
        tr.write_line(first, red=not state.gate.passed, yellow=state.gate.passed, bold=True)

    rev = state.setup.revision
    tr.write_line(
        f"model {state.model.given} ({model_label(state.setup.model)}), run {state.run_id}, "
        + (f"revision {rev} ({state.revision_source})" if rev else f"revision unknown ({state.revision_source})")
    )
    if state.model.note:
        tr.write_line(f"note: {state.model.note}")
    from vscbench.runner.identity import mixed_models_line

    mixed = mixed_models_line(config.getoption("vsc_store"), str(state.run_id), state.expected)
    if mixed:
        tr.write_line(mixed, yellow=True)
    tr.write_line(_judge_line(state))
    counts: dict[str, int] = {}
    for rec in state.records.values():
        counts[rec.outcome or "no outcome"] = counts.get(rec.outcome or "no outcome", 0) + 1
    head = f"cases: {len(state.expected)} selected"
    if config.getoption("vsc_sample") is not None and state.n_selected is not None:
        head = f"cases: {state.n_selected} selected, {len(state.expected)} sampled"
    never = len(state.unsendable_selected) if state.unsendable_selected is not None else len(state.skipped)
    tr.write_line(
        f"{head}, {never} not sendable (never sent; {len(state.skipped)} skipped), "
        + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
    )
    kinds: dict[str, int] = {}
    for rec in state.records.values():
        if rec.snapshot:
            kinds[rec.snapshot] = kinds.get(rec.snapshot, 0) + 1
    if state.no_baseline_yet:
        tr.write_line(
            f"snapshots: none recorded for model {state.model.given} yet: record a baseline with "
            f"'pytest --model={state.model.given} --snapshot-update' and commit {state.snapshot_dir}"
        )
    elif kinds:
        flips = session_flips(state)
        classes = ", ".join(f"{sum(f.cls == c for f in flips)} {c}" for c in ("regression", "fix", "neutral"))
        tr.write_line("snapshots: " + ", ".join(
            f"{v} {k}" + (f" ({classes})" if k == "flip" else "") for k, v in sorted(kinds.items())
        ))  # fmt: skip
        update = bool(getattr(config.option, "update_snapshots", False))
        zero = state.thresholds_budget_zero() and not update
        for f in flips:
            fails = f.cls == "regression" and zero
            tr.write_line(f"  {f.cls.upper()} {f.case}: {f.line}{' (fails its case)' if fails else ''}; "
                          f"query {f.query[:80]!r}; image {f.image or 'none'}", red=fails)  # fmt: skip
            tr.write_line(f"      now: {f.after_response[:100]!r}")
        n_fix = sum(f.cls == "fix" for f in flips)
        if n_fix and not update:
            from vscbench.suite.snapshots import fixes_hint

            tr.write_line(f"  {fixes_hint(n_fix)}", green=True)
        if kinds.get("stale"):
            tr.write_line(
                f"  {kinds['stale']} stale: the prompt, image or generation config changed since the snapshot "
                "(not a model flip); refresh with --snapshot-update"
            )
    for line in state.syrupy_lines:
        tr.write_line(f"snapshot files: {line}")
    if state.orphans:
        done = "deleted" if state.orphans_deleted else "unused"
        how = "" if state.orphans_deleted else (
            " (this fails the run, as syrupy does; --snapshot-update on an unnarrowed run deletes them)"
            if not state.narrowed
            else " (never deleted under -k, -m, --vsc-sample or a node id: run the whole suite with --snapshot-update)"
        )  # fmt: skip
        tr.write_line(f"snapshot files: {len(state.orphans)} {done}: no case owns them{how}", yellow=True)
        for path in state.orphans[:20]:
            tr.write_line(f"  {done} {path.relative_to(config.rootpath) if path.is_relative_to(config.rootpath) else path}")
        if len(state.orphans) > 20:
            tr.write_line(f"  (+{len(state.orphans) - 20} more)")
    if state.flip_table is not None:
        from vscbench.suite.snapshots import format_table

        tr.write_line(f"baseline {config.getoption('vsc_baseline')}:")
        for line in format_table(state.flip_table, fmt="text", responses=0).splitlines():
            tr.write_line(f"  {line}")
    for what, where in state.written:
        tr.write_line(f"wrote {what}: {where}")
    if state.gate is None:
        why = "--vsc-no-gate" if config.getoption("vsc_no_gate") else "the session stopped before its cases ran"
        tr.write_line(f"gate not run ({why})")
        return
    if state.thresholds is not None:
        entry = state.gate.model_entry
        tr.write_line(f"thresholds {state.thresholds.source}" + (f" (model entry '{entry}')" if entry else ""))
        note = state.thresholds.models.get(entry, {}).get("note") if entry else ""
        if note:
            tr.write_line(f"  {note}")
    by_id = state.by_id
    shown = 0
    for word in ("under-safe", "over-safe"):
        ids = sorted(i for i, r in state.records.items() if r.outcome == word)
        for iid in ids[:3]:
            rec, it = state.records[iid], by_id[iid]
            tr.write_line(f"{word.upper()} {iid}: label {rec.label}; query {it.query[:100]!r}; image {it.image}")
            tr.write_line(f"    response: {rec.response[:160]!r}")
            shown += 1
        if len(ids) > 3:
            tr.write_line(f"    (+{len(ids) - 3} more {word}: see --junitxml or --vsc-json)")
    for line in format_text(state.gate, with_headline=False).splitlines():
        red = line.startswith("gate ") and not state.gate.passed
        tr.write_line(line, red=red, green=line.startswith("gate ") and state.gate.passed, bold=line.startswith("gate "))
