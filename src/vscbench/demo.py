"""``python -m vscbench.demo`` (``make demo``): the whole pipeline, offline, in a few minutes on a laptop.

1. finds the benchmark metadata by the search every command uses (``--metadata``, ``$VSCBENCH_METADATA``,
   the release root, then ``../shared/data/vscbench`` beside the project);
2. renders the text-centric images that the metadata alone determines (typography, FigStep) under
   ``OUT/data``;
3. runs a model through the same code path as ``vscbench run`` on a balanced sample of the text half in the
   settings that need no image archive (text-only, typography, FigStep). The model is ``$VSCBENCH_DEMO_MODEL``
   (or ``--model``, e.g. ``hf/HuggingFaceTB/SmolVLM-256M-Instruct`` where the hub is reachable); if none is
   given or it cannot be loaded, a tiny randomly initialised VLM is built on the spot, and the demo says so in
   its output and in a banner on the report: its numbers are meaningless;
4. labels the responses with the offline ``local`` judge;
5. writes ``OUT/report.html`` (one self-contained file) and ends by printing its path.

The run is stored as ``demo`` in the default store (``$VSCBENCH_STORE``, else ``./vscbench_runs/vscbench.sqlite``;
``--store`` to change it), so ``vscbench runs`` and ``vscbench report --run demo`` see it with no flag. Running
the demo again replaces that run and leaves every other run in the store alone.

The image half and the search/concat settings need the official image archive (``vscbench data fetch``),
which an offline machine does not have; the demo leaves them out and says so.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from vscbench.errors import VscbenchError, require

DEMO_SETTINGS: tuple[str, ...] = ("text", "typography", "figstep")
DEFAULT_LIMIT = 60
TINY_BANNER = "random tiny model: numbers are meaningless, this demonstrates the pipeline"
RUN_ID = "demo"
MODEL_ENV = "VSCBENCH_DEMO_MODEL"
#: Manifest mark of the demo's own run: only a run carrying it is replaced when the demo runs again.
MADE_BY_KEY = "made_by"
MADE_BY = "vscbench.demo"


def _say(msg: str) -> None:
    sys.stdout.write(f"demo: {msg}\n")
    sys.stdout.flush()


def _quiet_transformers() -> None:
    """No weight-loading progress bars in the demo's output (they say nothing about the benchmark)."""
    try:
        tf_logging = require("transformers.utils.logging", "hf")
    except VscbenchError:
        return
    tf_logging.disable_progress_bar()


def find_metadata(explicit: str | None = None) -> Path:
    """The metadata folder, by the search every command uses (:func:`vscbench.data.paths.find_metadata`)."""
    from vscbench.data.paths import find_metadata as find

    return find(explicit)


def _tiny_spec(out: Path) -> str:
    return f"hf/{out / 'tiny-vlm'}"


def _forget_demo_run(store_path: Path, out: Path, *, force: bool = False) -> None:
    """Drop the previous demo's run from the store so the demo starts afresh; keep every other run.

    A run with the demo's id that the demo did not make is refused, not replaced: the demo's runs carry the
    ``made_by`` mark once finished, or (an interrupted demo) the tiny model of this ``out``. ``force``: the
    run was made by this very invocation (a model that failed to load)."""
    from vscbench.store import Store

    if not store_path.is_file():
        return
    with Store(store_path, create=False) as st:
        if not st.has_run(RUN_ID):
            return
        info = st.get_run(RUN_ID)
        if not force and info.manifest.get(MADE_BY_KEY) != MADE_BY and info.model != _tiny_spec(out):
            raise VscbenchError(
                f"{store_path}: already holds a run '{RUN_ID}' that the demo did not make; "
                "pass --store FILE to write the demo elsewhere"
            )
        with st.transaction() as db:
            for table in ("labels", "responses", "artifacts", "run_items", "runs"):
                db.execute(f"DELETE FROM {table} WHERE run_id = ?", (RUN_ID,))


def _run(model: str, *, root: Path, metadata: Path, store: Path, limit: int, max_tokens: int) -> str:
    from vscbench.data.paths import DataPaths
    from vscbench.runner.run import ModelSetup, RunSpec, run
    from vscbench.runner.select import Selection
    from vscbench.types import GenConfig

    setup = ModelSetup(
        model, config=GenConfig(temperature=0.0, max_tokens=max_tokens, seed=0), device="cpu", batch_size=4
    )
    spec = RunSpec(
        setup,
        selection=Selection(half="text", settings=DEMO_SETTINGS, limit=limit),
        data=DataPaths(root=root, metadata=metadata),
        store=store,
        run_id=RUN_ID,
    )
    res = run(spec, progress=None)
    c = res.counts
    _say(f"run '{res.run_id}': {c.get('ok', 0)} ok, {c.get('error', 0)} errors, {c.get('empty', 0)} empty, "
         f"{c.get('blocked', 0)} blocked of {c.get('items', 0)} items")
    return res.run_id


def _judge(store_path: Path, run_id: str) -> None:
    from vscbench.judges.apply import judge_run
    from vscbench.store import Store

    with Store(store_path) as st:
        judge_run(st, run_id, ["local"])


def run_demo(
    out: Path,
    *,
    model: str | None = None,
    metadata: str | None = None,
    store: Path | None = None,
    limit: int = DEFAULT_LIMIT,
    max_tokens: int = 48,
) -> Path:
    """Run the demo and return the path of the HTML report.

    The run (id ``demo``) goes to ``store`` (default: the default store, where ``vscbench runs`` and
    ``vscbench report --run demo`` look), replacing the previous demo's run there and nothing else; rendered
    images, the tiny model and ``report.html`` go under ``out``."""
    from vscbench.store import default_store_path

    t0 = time.monotonic()
    out = out.resolve()
    meta = find_metadata(metadata)
    _say(f"metadata: {meta}")
    _say(
        "settings: text-only, typography and FigStep of the text-centric half (their images are rendered "
        "from the metadata); the image half and the search/concat settings need the official image archive "
        "('vscbench data fetch'), not available offline, so they are left out"
    )
    root = out / "data"
    store_path = store if store is not None else default_store_path()
    _forget_demo_run(store_path, out)
    out.mkdir(parents=True, exist_ok=True)

    spec = model or os.environ.get(MODEL_ENV) or ""
    banner: str | None = None
    run_id: str | None = None
    if spec:
        _say(f"model: {spec} (from {'--model' if model else MODEL_ENV})")
        try:
            run_id = _run(spec, root=root, metadata=meta, store=store_path, limit=limit, max_tokens=max_tokens)
        except VscbenchError as exc:
            _say(f"cannot use {spec}: {exc}")
            _say("falling back to a tiny randomly initialised model")
            _forget_demo_run(store_path, out, force=True)
    else:
        _say(f"no model given (set {MODEL_ENV}, e.g. hf/HuggingFaceTB/SmolVLM-256M-Instruct, where the hub is reachable)")
    if run_id is None:
        _quiet_transformers()
        from vscbench.models.tiny import build_tiny_vlm

        tiny = out / "tiny-vlm"
        if tiny.exists():
            shutil.rmtree(tiny)
        build_tiny_vlm(tiny)
        banner = TINY_BANNER
        _say(f"model: a tiny randomly initialised VLM built at {tiny}")
        _say(f"NOTE: {TINY_BANNER}")
        run_id = _run(_tiny_spec(out), root=root, metadata=meta, store=store_path, limit=limit, max_tokens=max_tokens)

    from vscbench.store import Store

    with Store(store_path) as st:
        st.update_manifest(run_id, {MADE_BY_KEY: MADE_BY, **({"banner": banner} if banner else {})})
    _say("judging with the offline 'local' judge")
    _judge(store_path, run_id)

    from vscbench.report import build_report, render, write_report

    with Store(store_path) as st:
        rep = build_report(st, [run_id], judge="local", ci=True, n_boot=1000, seed=0)
    sys.stdout.write(render(rep, "table", color=sys.stdout.isatty()))
    html = write_report(rep, "html", out / "report.html")[0]
    flag = "" if store is None else f" --store {store_path}"
    _say(f"store: {store_path} (try: vscbench runs{flag}; vscbench report --run {run_id}{flag} --format md)")
    _say(f"finished in {time.monotonic() - t0:.0f} s")
    if banner:
        _say(f"NOTE: {TINY_BANNER}")
    return html


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vscbench.demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    ap.add_argument("--model", help=f"provider/model to run (default: ${MODEL_ENV}, else a tiny random model)")
    ap.add_argument(
        "--metadata",
        metavar="DIR",
        help="folder with the two metadata .xlsx files (default: $VSCBENCH_METADATA, the release root, or "
        "../shared/data/vscbench beside the project)",
    )
    ap.add_argument(
        "--store",
        metavar="FILE",
        help="store for the demo's run 'demo' (default: $VSCBENCH_STORE or ./vscbench_runs/vscbench.sqlite, "
        "where 'vscbench runs' looks)",
    )
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"items to run (default {DEFAULT_LIMIT})")
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per answer (default 48)")
    a = ap.parse_args(argv)
    try:
        path = run_demo(
            Path(a.out),
            model=a.model,
            metadata=a.metadata,
            store=Path(a.store) if a.store else None,
            limit=a.limit,
            max_tokens=a.max_tokens,
        )
    except VscbenchError as exc:
        sys.stderr.write(f"demo: error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"report: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
