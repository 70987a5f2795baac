"""``python -m vscbench.demo`` (``make demo``): the whole pipeline, offline, in a few minutes on a laptop.

1. finds the benchmark metadata (``--metadata``, ``$VSCBENCH_METADATA``, the default release root, or the
   ``shared/data/vscbench`` folder next to the checkout);
2. renders the text-centric images that the metadata alone determines (typography, FigStep) under
   ``OUT/data``;
3. runs a model through the same code path as ``vscbench run`` on a balanced sample of the text half in the
   settings that need no image archive (text-only, typography, FigStep). The model is ``$VSCBENCH_DEMO_MODEL``
   (or ``--model``, e.g. ``hf/HuggingFaceTB/SmolVLM-256M-Instruct`` where the hub is reachable); if none is
   given or it cannot be loaded, a tiny randomly initialised VLM is built on the spot, and the demo says so in
   its output and in a banner on the report: its numbers are meaningless;
4. labels the responses with the offline ``local`` judge;
5. writes ``OUT/report.html`` (one self-contained file) and ends by printing its path.

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
    """The first folder holding both metadata files, among the documented candidates."""
    from vscbench.data.paths import IMAGE_CENTRIC_XLSX, TEXT_CENTRIC_XLSX, default_root

    repo = Path(__file__).resolve().parents[2]
    env = os.environ.get("VSCBENCH_METADATA")
    if explicit:
        candidates = [Path(explicit).expanduser()]
    elif env:
        candidates = [Path(env).expanduser()]
    else:
        candidates = [
            default_root(),
            repo.parent / "shared" / "data" / "vscbench",
            Path.cwd().parent / "shared" / "data" / "vscbench",
        ]
    for c in candidates:
        if (c / IMAGE_CENTRIC_XLSX).is_file() and (c / TEXT_CENTRIC_XLSX).is_file():
            return c.resolve()
    if explicit or env:
        where = f"--metadata {explicit}" if explicit else f"VSCBENCH_METADATA={env}"
        raise VscbenchError(f"{where}: no {IMAGE_CENTRIC_XLSX} and {TEXT_CENTRIC_XLSX} there")
    raise VscbenchError(
        "benchmark metadata not found: pass --metadata DIR (the folder with the two .xlsx files), "
        "set VSCBENCH_METADATA, or run 'vscbench data fetch'"
    )


def _run(model: str, *, root: Path, metadata: Path, store: Path, limit: int, max_tokens: int) -> str:
    from vscbench.runner.run import run_generation
    from vscbench.runner.select import Selection
    from vscbench.types import GenConfig

    res = run_generation(
        model,
        root=str(root),
        metadata=str(metadata),
        store=store,
        run_id=RUN_ID,
        selection=Selection(half="text", settings=DEMO_SETTINGS, limit=limit),
        config=GenConfig(temperature=0.0, max_tokens=max_tokens, seed=0),
        device="cpu",
        batch_size=4,
        progress=None,
    )
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
    limit: int = DEFAULT_LIMIT,
    max_tokens: int = 48,
) -> Path:
    """Run the demo into ``out`` and return the path of the HTML report."""
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
    store_path = out / "demo.sqlite"
    for p in (store_path, store_path.with_name(store_path.name + "-wal"), store_path.with_name(store_path.name + "-shm")):
        p.unlink(missing_ok=True)
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
            store_path.unlink(missing_ok=True)
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
        run_id = _run(f"hf/{tiny}", root=root, metadata=meta, store=store_path, limit=limit, max_tokens=max_tokens)

    from vscbench.store import Store

    if banner:
        with Store(store_path) as st:
            st.update_manifest(run_id, {"banner": banner})
    _say("judging with the offline 'local' judge")
    _judge(store_path, run_id)

    from vscbench.report import build_report, render, write_report

    with Store(store_path) as st:
        rep = build_report(st, [run_id], judge="local", ci=True, n_boot=1000, seed=0)
    sys.stdout.write(render(rep, "table", color=sys.stdout.isatty()))
    html = write_report(rep, "html", out / "report.html")[0]
    _say(f"store: {store_path} (try: vscbench report --run {run_id} --store {store_path} --format md)")
    _say(f"finished in {time.monotonic() - t0:.0f} s")
    if banner:
        _say(f"NOTE: {TINY_BANNER}")
    return html


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m vscbench.demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--out", default="demo_out", help="output folder (default: demo_out)")
    ap.add_argument("--model", help=f"provider/model to run (default: ${MODEL_ENV}, else a tiny random model)")
    ap.add_argument("--metadata", help="folder with the two metadata .xlsx files")
    ap.add_argument("--limit", type=int, default=DEFAULT_LIMIT, help=f"items to run (default {DEFAULT_LIMIT})")
    ap.add_argument("--max-tokens", type=int, default=48, help="tokens per answer (default 48)")
    a = ap.parse_args(argv)
    try:
        path = run_demo(Path(a.out), model=a.model, metadata=a.metadata, limit=a.limit, max_tokens=a.max_tokens)
    except VscbenchError as exc:
        sys.stderr.write(f"demo: error: {exc}\n")
        return exc.exit_code
    sys.stdout.write(f"report: {path}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
