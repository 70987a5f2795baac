"""Options and configuration: every flag, the model resolved and its revision fixed, the thresholds read and
everything refusable checked before the first request (a usage error, exit 4); what a worker is told."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from vsc_fixtures.collection import NoOwnCases, _collects_suite, _markers
from vsc_fixtures.state import CACHE_RUN, STATE_KEY, SuiteState, _state, _usage
from vscbench.errors import VscbenchError


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
    g.addoption("--vsc-cases", action="append", default=[], metavar="PATH", help="the team's own case files: a file or folder besides tests_safety/cases/ (repeatable); none: no own cases")
    g.addoption("--vsc-baseline", help="relative gate: a git revision of this model's snapshots, or another snapshot folder")


def pytest_configure(config: pytest.Config) -> None:
    for spec, doc in _markers():
        config.addinivalue_line("markers", f"{spec}: {doc}")
    state = SuiteState(config)
    config.stash[STATE_KEY] = state
    config.pluginmanager.register(NoOwnCases(), "vsc-no-own-cases")
    from vscbench.judges.factory import judge_name

    config.option.vsc_judge = judge_name(config.option.vsc_judge)  # repeated --judge: one cascade
    _configure_own_cases(config, state)
    if config.getoption("vsc_model"):
        try:
            _configure_model(config, state)
        except VscbenchError as exc:
            raise _usage(str(exc)) from None
    elif config.getoption("vsc_base_url"):
        raise _usage("--vsc-base-url is for an OpenAI-compatible model: add --model=openai-compatible/NAME")


def _configure_own_cases(config: pytest.Config, state: SuiteState) -> None:
    """The team's case files, loaded and validated by the engine before anything else (a bad one: one line,
    exit 4, nothing sent, the store never opened); a marker registered per tag."""
    from vscbench.data.own_cases import case_paths, load_items, tag_markers

    given = list(config.getoption("vsc_cases") or [])
    if not given and not _collects_suite(config):
        return
    try:
        state.own = load_items(case_paths(given, config.rootpath))
    except VscbenchError as exc:
        raise _usage(str(exc)) from None
    for name, doc in tag_markers(state.own):
        config.addinivalue_line("markers", f"{name}: {doc}")


def _configure_model(config: pytest.Config, state: SuiteState) -> None:
    from vsc_fixtures.models import TINY, ensure_tiny, resolve_model
    from vscbench.suite.setup import SETUP_FLAGS, check_base_url_model, check_sample, model_setup

    opt = config.getoption
    sample = opt("vsc_sample")
    check_sample(sample)
    model = resolve_model(opt("vsc_model"))
    base_url = opt("vsc_base_url")
    if base_url:
        from vscbench.runner.preflight import check_base_url

        check_base_url(base_url, "--vsc-base-url")
    check_base_url_model(base_url, model.given, model.spec)
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
    setup = model_setup(
        spec, base_url, {k: opt(k) for k in SETUP_FLAGS}, o,
        worker_gpu=(lambda: _worker_device(worker)) if worker is not None else None,
    )  # fmt: skip
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
    from vscbench.suite.snapshots import has_recorded

    state.no_baseline_yet = not update and not has_recorded(state.snapshot_dir)
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


