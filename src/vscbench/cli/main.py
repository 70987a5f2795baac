"""The ``vscbench`` command line. Thin: parse, call one stage function, print. No logic lives here.

Each command group has its own section below; stage functions are imported lazily so that
``vscbench --help`` stays fast and a missing optional extra only matters to the command that needs it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from vscbench import __version__
from vscbench.errors import VscbenchError

Handler = Callable[[argparse.Namespace], int]


class _Parser(argparse.ArgumentParser):
    """argparse that reports bad flags as one line and exit code 2 (its default) without the usage block."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument(
        "--metadata",
        metavar="DIR",
        help="folder holding the two metadata .xlsx files (default: $VSCBENCH_METADATA, else the root, else "
        "../shared/data/vscbench beside the project)",
    )


def _add_store_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--store", help="SQLite store (default: $VSCBENCH_STORE or ./vscbench_runs/vscbench.sqlite)"
    )


@contextmanager
def _no_new_store_on_error(store: str | None) -> Iterator[None]:
    """Rejected input leaves no debris: when the command fails with a user error and the store file (or its
    folder) did not exist before, a store it left holding no run is removed, with its side files."""
    from vscbench.store import Store, default_store_path

    path = Path(store) if store else default_store_path()
    had_file, had_dir = path.exists(), path.parent.exists()
    try:
        yield
    except VscbenchError:
        if not had_file and path.is_file():
            with Store(path, create=False) as st:
                unused = not st.list_runs()
            if unused:
                for p in (path, *(path.with_name(path.name + x) for x in ("-wal", "-shm", ".lock"))):
                    p.unlink(missing_ok=True)
                if not had_dir:
                    try:
                        path.parent.rmdir()
                    except OSError:
                        pass  # not empty: someone else's files
        raise


def _print_json(obj: Any) -> None:
    sys.stdout.write(json.dumps(obj, indent=2, ensure_ascii=False) + "\n")


# ==== data ==========================================================================================
def _cmd_data_items(a: argparse.Namespace) -> int:
    from vscbench.data import load_items, resolve_paths

    items = load_items(resolve_paths(a.root, a.metadata), half=a.half, settings=a.setting)
    if a.json:
        _print_json([i.to_dict() for i in items])
    else:
        for i in items:
            sys.stdout.write(f"{i.id}\t{i.label}\t{i.setting}\t{i.query[:80]!r}\n")
    return 0


def _cmd_data_render(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data import resolve_paths
    from vscbench.data.render import render_release

    s = render_release(
        resolve_paths(a.root, a.metadata), out=Path(a.out) if a.out else None, force=a.force, workers=a.jobs
    )
    if a.json:
        _print_json(s.to_dict())
        return 0
    for setting in s.written:
        sys.stdout.write(f"{setting}: {s.written[setting]} written, {s.kept[setting]} kept\n")
    if s.skipped_no_search:
        sys.stdout.write(f"concat: {len(s.skipped_no_search)} skipped (search image not present)\n")
    sys.stdout.write(f"images under {s.out} (font {s.font})\n")
    return 0


def _cmd_data_verify(a: argparse.Namespace) -> int:
    from vscbench.data import resolve_paths
    from vscbench.data.verify import verify_release

    report = verify_release(resolve_paths(a.root, a.metadata), max_pixels=a.max_pixels, workers=a.jobs)
    if a.json:
        _print_json(report.to_dict())
    else:
        sys.stdout.write("\n".join(report.lines()) + "\n")
    if not report.ok:
        sys.stderr.write(f"vscbench: the release under {report.root} is not whole: {report.shortfall()}\n")
    return 0 if report.ok else 1


def _cmd_data_fetch(a: argparse.Namespace) -> int:
    from vscbench.data.fetch import DRIVE_FILE_ID, RAW_BASE_URL, fetch_images, fetch_metadata
    from vscbench.data.paths import release_root

    root = release_root(a.root)
    for f in fetch_metadata(root, base_url=a.base_url or RAW_BASE_URL, force=a.force):
        sys.stdout.write(f"{f.name}: {f.action} ({f.path}, sha256 {f.sha256[:12]}… matches the pin)\n")
    if a.metadata_only:
        return 0
    s = fetch_images(root, drive_id=a.drive_id or DRIVE_FILE_ID)
    sys.stdout.write(f"images: {s.files} under {s.root}\n")
    return 0


def _cmd_data_import(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data.archive import import_archive
    from vscbench.data.paths import release_root

    s = import_archive(Path(a.archive), release_root(a.root))
    if a.json:
        _print_json(s.to_dict())
        return 0
    for folder, n in s.files.items():
        sys.stdout.write(f"{folder}: {n} files\n")
    for name in s.metadata:
        sys.stdout.write(f"{name}: installed (matches the pinned upstream copy)\n")
    for note in s.skipped:
        sys.stdout.write(f"skipped: {note}\n")
    sys.stdout.write(f"imported into {s.root}; check with: vscbench data verify --root {s.root}\n")
    return 0


def _cmd_data_export(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data import load_items, resolve_paths
    from vscbench.data.export import export_items

    items = load_items(resolve_paths(a.root, a.metadata), half=a.half, settings=a.setting)
    s = export_items(items, a.format, Path(a.out), embed=a.embed_images)
    note = f" ({s.note()})" if s.images_missing else ""
    sys.stdout.write(f"wrote {s.rows} items as {s.format} to {s.out}{note}\n")
    return 0


_SETTINGS = ("image", "text", "search", "typography", "concat", "figstep")


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a number of at least 1, got {v}")
    return v


def _register_data(sub: argparse._SubParsersAction[Any]) -> None:
    data = sub.add_parser("data", help="get, check, render and export the benchmark data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=_Parser)

    p = dsub.add_parser(
        "items",
        help="list the benchmark items",
        description="List the items the metadata defines, in canonical order, one per line: id, label "
        "(safe/unsafe), setting and the first 80 characters of the query. The image half has 1800 items "
        "(6 per query: 3 safe and 3 unsafe images); the text half 2250 (450 queries x text, search, "
        "typography, concat, figstep), the text-only baseline included. Reads only the two metadata files: "
        "images need not be present.",
    )
    _add_data_args(p)
    p.add_argument("--half", choices=["image", "text"], help="only this half")
    p.add_argument("--setting", action="append", choices=list(_SETTINGS), help="only this setting (repeatable)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects keyed by the Item field names")
    p.set_defaults(func=_cmd_data_items)

    p = dsub.add_parser(
        "render",
        help="build the typography, FigStep and concat images from the metadata",
        description="Render the 450 typography and 450 FigStep images (and concat images where the search "
        "image exists) into <out>/vscbench_text_centric_images/<setting>/. Output is byte-identical across runs.",
    )
    _add_data_args(p)
    p.add_argument("--out", help="write the images under this folder instead of the root (same layout)")
    p.add_argument("--force", action="store_true", help="re-render images that already exist")
    p.add_argument("--jobs", type=_positive_int, help="worker processes (default: the CPUs available)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=_cmd_data_render)

    p = dsub.add_parser(
        "verify",
        help="check the release: counts, missing/corrupt/mislabelled images, metadata quirks",
        description="Check every image the metadata names: present, decodable, within the pixel limit, and "
        "in the format its extension says. Reports counts per half/category/setting/label, blank-query rows, "
        "duplicate image names and which settings can run now. Exit 0 only when the release is whole, "
        "else 1 (each bad file is named).",
    )
    _add_data_args(p)
    p.add_argument("--json", action="store_true", help="the report as JSON with stable keys")
    p.add_argument(
        "--max-pixels", type=_positive_int, default=50_000_000, help="largest image accepted (width x height)"
    )
    p.add_argument("--jobs", type=_positive_int, help="threads decoding images (default: 2 x CPUs)")
    p.set_defaults(func=_cmd_data_verify)

    p = dsub.add_parser(
        "fetch",
        help="download the metadata (pinned, SHA-256 checked) and the image archive",
        description="Download the two metadata files from jiahuigeng/VSCBench at commit 426fa1f (checked "
        "against pinned SHA-256 hashes), then the image archive from the Google Drive link in the upstream "
        "README (needs the 'fetch' extra: pip install 'vscbench[fetch]'), extracted safely under the root.",
    )
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument("--metadata-only", action="store_true", help="download only the two metadata files")
    p.add_argument("--force", action="store_true", help="download the metadata even if a good copy exists")
    p.add_argument(
        "--drive-id", help="Google Drive file id of the image archive (default: the one in the upstream README)"
    )
    p.add_argument(
        "--base-url", help="fetch the metadata files from this mirror instead of raw.githubusercontent.com"
    )
    p.set_defaults(func=_cmd_data_fetch)

    p = dsub.add_parser(
        "import",
        help="install an image archive downloaded by hand (zip or tar), safely",
        description="Extract a zip/tar of the official release under the root: no absolute paths, no '..', "
        "no links or devices, per-file/total size and file-count limits; only the release folders (and "
        "metadata matching the pinned hashes) are installed.",
    )
    p.add_argument("archive", help="the .zip or .tar(.gz/.bz2/.xz) file")
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument("--json", action="store_true", help="print what was installed as JSON")
    p.set_defaults(func=_cmd_data_import)

    p = dsub.add_parser(
        "export",
        help="write the items for other harnesses (jsonl, parquet, Hugging Face datasets)",
        description="One row per item: id, half, label, category/xstest_type, setting, query, image path "
        "(hf: an Image feature with the bytes; parquet --embed-images: an image_bytes column).",
    )
    _add_data_args(p)
    p.add_argument("--format", required=True, choices=["jsonl", "parquet", "hf"], help="output format")
    p.add_argument("--out", required=True, help="output file (jsonl, parquet) or folder (hf)")
    p.add_argument("--half", choices=["image", "text"], help="only this half")
    p.add_argument("--setting", action="append", choices=list(_SETTINGS), help="only this setting (repeatable)")
    p.add_argument("--embed-images", action="store_true", help="parquet: add the image bytes")
    p.set_defaults(func=_cmd_data_export)


# ==== run / runs ====================================================================================
def _cmd_run(a: argparse.Namespace) -> int:
    from vscbench.types import GenConfig

    config = GenConfig(temperature=a.temperature, max_tokens=a.max_tokens, seed=a.seed, top_p=a.top_p)
    with _no_new_store_on_error(a.store):
        result = _generate(a, config)
    return _report_run(a, config, result)


def _generate(a: argparse.Namespace, config: Any) -> Any:
    from vscbench.data import resolve_paths
    from vscbench.runner.core import Limits, RetryPolicy
    from vscbench.runner.run import ModelSetup, generate
    from vscbench.runner.select import Selection

    setup = ModelSetup(
        model=a.model,
        base_url=a.base_url,
        config=config,
        calibrations=tuple(a.calibration or ()),
        device=a.device,
        dtype=a.dtype,
        batch_size=a.batch_size,
        limits=Limits(concurrency=a.concurrency, rpm=a.rpm, tpm=a.tpm),
        policy=RetryPolicy.for_model(a.model, a.max_attempts, a.timeout),
    )
    selection = Selection(
        half=a.half,
        settings=tuple(a.setting or ()),
        categories=tuple(a.category or ()),
        items_file=a.items,
        limit=a.limit,
        sample_seed=a.sample_seed,
    )
    return generate(
        setup,
        data=resolve_paths(a.root, a.metadata) if (a.root or a.metadata) else None,
        store=a.store,
        run_id=a.run_id,
        selection=selection,
        retry_errors=a.retry_errors,
        progress=False if a.no_progress else None,
    )


def _report_run(a: argparse.Namespace, config: Any, result: Any) -> int:
    from vscbench.runner.run import excluded_by_reason, exclusion_summary, retry_command

    c = result.counts
    if a.json:
        _print_json(
            {
                "run_id": result.run_id,
                "store": str(result.store_path),
                "counts": c,
                "sent": result.sent,
                "skipped": result.skipped,
                "skipped_errors": result.skipped_errors,
                "excluded": len(result.excluded),
                "excluded_by_reason": excluded_by_reason(result.excluded),
                "stats": result.stats.to_dict(),
            }
        )
    else:
        kept = f", errors not re-asked {result.skipped_errors}" if result.skipped_errors else ""
        sys.stdout.write(
            f"run {result.run_id}{' (resumed)' if result.resumed else ''}\n"
            f"store {result.store_path}\n"
            f"items {c['items']}: sent {result.sent}, already answered {result.skipped - result.skipped_errors}"
            f"{kept}, never sent {exclusion_summary(result.excluded)}\n"
            f"ok {c['ok']}  blocked {c['blocked']}  empty {c['empty']}  error {c['error']}  "
            f"pending {c['pending']}  ({result.stats.retries} retries, {result.stats.wall_s:.1f}s)\n"
        )
    for note in result.notes:
        sys.stderr.write(f"vscbench: note: {note}\n")
    if not c["error"]:
        return 0
    hint = retry_command(
        a.model, result.run_id, base_url=a.base_url, root=a.root, metadata=a.metadata, store=a.store,
        config=config, calibrations=a.calibration or (), device=a.device, dtype=a.dtype, batch_size=a.batch_size,
    )  # fmt: skip
    failed = result.sent > 0 and result.stats.errors == result.sent
    if failed:
        why = " ".join((result.error_example or "").split())
        why = f" (e.g. {why[:200]}{'...' if len(why) > 200 else ''})" if why else ""
        sys.stderr.write(
            f"vscbench: error: every one of the {result.sent} item(s) sent ended in error{why}\n"
        )
    sys.stderr.write(
        f"vscbench: {c['error']} item(s) of run {result.run_id} ended in error; re-ask them with '{hint}'\n"
    )
    return 1 if failed else 0


def _cmd_runs(a: argparse.Namespace) -> int:
    import datetime as dt

    from vscbench.report.names import model_label
    from vscbench.runner.run import list_runs
    from vscbench.store import default_store_path

    runs = list_runs(a.store)
    if a.json:
        _print_json(runs)
        return 0
    where = a.store or default_store_path()
    if not runs:
        sys.stdout.write(f"no runs yet in {where} (--store FILE or $VSCBENCH_STORE to look elsewhere)\n")
        return 0
    sys.stdout.write(f"runs in {where}\n")
    cols = ("run", "model", "kind", "created (UTC)", "items", "ok", "blocked", "empty", "error", "pending")
    rows = [
        (
            r["run_id"],
            model_label(r["model"]),
            r["kind"],
            dt.datetime.fromtimestamp(r["created_at"], dt.UTC).strftime("%Y-%m-%d %H:%M"),
            *(str(r["counts"][k]) for k in ("items", "ok", "blocked", "empty", "error", "pending")),
        )
        for r in runs
    ]
    widths = [max(len(x) for x in col) for col in zip(cols, *rows, strict=True)]
    for row in (cols, *rows):
        sys.stdout.write("  ".join(x.ljust(w) for x, w in zip(row, widths, strict=True)).rstrip() + "\n")
    return 0


def _flag_int(minimum: int) -> Callable[[str], int]:
    """An argparse ``type=``: a whole number of at least ``minimum`` (argparse names the flag)."""

    def parse(text: str) -> int:
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
        if v < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {v}")
        return v

    return parse


def _flag_float(low: float, *, low_open: bool = False, high: float | None = None) -> Callable[[str], float]:
    """An argparse ``type=``: a finite number >= ``low`` (> with ``low_open``), and <= ``high`` if given."""

    def parse(text: str) -> float:
        try:
            v = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if v != v or v in (float("inf"), float("-inf")):
            raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
        if v < low or (low_open and v == low) or (high is not None and v > high):
            rule = f"above {low:g}" if low_open else ("zero or more" if low == 0 else f"at least {low:g}")
            rule += f" and at most {high:g}" if high is not None else ""
            raise argparse.ArgumentTypeError(f"must be {rule}, got {text}")
        return v

    return parse


def _register_run(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "run",
        help="generate a model's responses to the benchmark items (resumable)",
        description=(
            "Send the selected benchmark items to a model and store each response the moment it arrives. "
            "Run it again with the same --run-id to resume: answered items are never sent again "
            "(--retry-errors re-asks the ones that ended in error); the model, base URL, generation "
            "options and calibrations must be the same. Items whose query is blank in the source, or that "
            "a steering direction was fitted on, are never sent and are listed in the run's manifest."
        ),
    )
    p.add_argument(
        "-m",
        "--model",
        required=True,
        help="PROVIDER/MODEL: openai/, openai-compatible/, anthropic/, google/, hf/",
    )
    p.add_argument(
        "--base-url", help="API base URL (required for openai-compatible/, e.g. http://localhost:8000/v1)"
    )
    _add_data_args(p)
    _add_store_arg(p)
    p.add_argument("--run-id", help="name of the run; an existing id is resumed (default: generated)")
    sel = p.add_argument_group("selection")
    sel.add_argument("--half", choices=["image", "text"], help="only this half (default: both)")
    sel.add_argument(
        "--setting",
        action="append",
        choices=["image", "text", "search", "typography", "concat", "figstep"],
        help="only this setting (repeatable; default: all)",
    )
    sel.add_argument(
        "--category",
        action="append",
        help="only this image category or XSTest type (repeatable; default: all)",
    )
    sel.add_argument("--items", metavar="FILE", help="item ids, one per line (or a JSON list)")
    sel.add_argument(
        "--limit",
        type=_flag_int(1),
        metavar="N",
        help="a deterministic sample of N selected items, balanced over halves, categories/types and labels "
        "within each, image items in safe/unsafe pairs, text items as whole queries across the settings; "
        "a larger N extends a smaller one (sampled items that cannot be sent are counted as never sent)",
    )
    sel.add_argument("--sample-seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--max-tokens", type=_flag_int(1), default=512, help="longest answer in tokens (default 512)"
    )
    gen.add_argument(
        "--temperature", type=_flag_float(0), default=0.0, help="sampling temperature (default 0: greedy)"
    )
    gen.add_argument(
        "--top-p",
        type=_flag_float(0, low_open=True, high=1),
        help="nucleus sampling, 0 < P <= 1 (default: not sent)",
    )
    gen.add_argument("--seed", type=int, default=0, help="sampling seed where the API takes one (default 0)")
    gen.add_argument(
        "--calibration", action="append", metavar="SPEC", help="e.g. reminder, fewshot:k=2 (repeatable)"
    )
    ex = p.add_argument_group("execution")
    ex.add_argument("--concurrency", type=_flag_int(1), default=16, help="requests in flight (default 16)")
    ex.add_argument(
        "--rpm", type=_flag_float(0, low_open=True), help="requests-per-minute budget (default: none)"
    )
    ex.add_argument(
        "--tpm",
        type=_flag_float(0, low_open=True),
        help="tokens-per-minute budget, estimated before and settled after each request (default: none)",
    )
    ex.add_argument(
        "--timeout", type=_flag_float(0), help="seconds per request, 0 = none (default 120; none for hf/)"
    )
    ex.add_argument("--max-attempts", type=_flag_int(1), default=6, help="attempts per item (default 6)")
    ex.add_argument("--retry-errors", action="store_true", help="re-ask the items that ended in error")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    hf = p.add_argument_group("hf/ models")
    hf.add_argument("--batch-size", type=_flag_int(1), help="generation batch size (default 1)")
    hf.add_argument("--device", choices=["cpu", "cuda", "auto"], help="where the model runs (default auto)")
    hf.add_argument(
        "--dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="weights dtype (default float32 on CPU, bfloat16 on CUDA; auto = the checkpoint's)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_run)

    r = sub.add_parser(
        "runs",
        help="list the runs in the store with their counts",
        description=(
            "List every run in the store (generation, utility and scored runs) with its model, kind, "
            "creation time and response counts (ok, blocked, empty, error, pending)."
        ),
    )
    _add_store_arg(r)
    r.add_argument(
        "--json",
        action="store_true",
        help="print the runs as JSON (with calibrations and judges; default: a table)",
    )
    r.set_defaults(func=_cmd_runs)


# ==== judge =========================================================================================
def _judge_options(a: argparse.Namespace) -> dict[str, Any]:
    return {
        "base_url": a.base_url,
        "sees_image": a.judge_sees_image or None,
        "concurrency": a.concurrency,
        "head": getattr(a, "head", None),
    }


def _cmd_judge(a: argparse.Namespace) -> int:
    if not a.run:
        raise VscbenchError("judge: give --run ID (label a stored run), or 'validate' or 'train'")
    from vscbench.judges.apply import format_run_report, judge_run, nothing_labelled
    from vscbench.store import Store

    with Store(a.store, create=False) as store:
        rep = judge_run(store, a.run, a.judge or ["local"], force=a.force, options=_judge_options(a))
    if a.json:
        _print_json(rep.to_dict())
    else:
        sys.stdout.write(format_run_report(rep) + "\n")
    failed = nothing_labelled(rep)
    for line in failed:
        sys.stderr.write(f"vscbench: {line}\n")
    return 1 if failed else 0


def _cmd_judge_validate(a: argparse.Namespace) -> int:
    from vscbench.judges.factory import make_judge
    from vscbench.judges.validate import format_validation, validate

    v = validate(make_judge(a.judge, **_judge_options(a)), a.gold, a.format)
    if a.json:
        _print_json(v.to_json())
    else:
        sys.stdout.write(format_validation(v) + "\n")
    return 0


def _cmd_judge_train(a: argparse.Namespace) -> int:
    from vscbench.hashing import sha256_file
    from vscbench.judges.train import train

    path = train(a.data, a.out)
    digest = sha256_file(path)
    sys.stdout.write(f"wrote {path} (sha256 {digest})\n")
    return 0


def _add_judge_call_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-url", help="API base URL for a rubric judge (e.g. a local OpenAI-compatible server)")
    p.add_argument("--judge-sees-image", action="store_true", help="send the item's image to a rubric judge")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight for a rubric judge (default 8)")
    p.add_argument("--head", help="a local-judge head file other than the shipped one")
    p.add_argument("--json", action="store_true", help="print the result as JSON")


def _register_judge(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "judge",
        help="label a stored run with judges (keyword, local, rubric:PROVIDER/MODEL); validate; train",
        description="Label a stored run: vscbench judge --run ID [--judge NAME ...]. "
        "Sub-commands: validate (score a judge against human labels), train (rebuild the local judge's head).",
    )
    p.add_argument("--run", metavar="ID", help="the stored run to label")
    p.add_argument(
        "--judge",
        action="append",
        metavar="NAME",
        help="keyword, local (default), local:abstain=L, rubric:PROVIDER/MODEL, or a cascade "
        "'local,rubric:PROVIDER/MODEL' (what local abstains on goes to the rubric judge; the share passed on is "
        "printed); repeat for several judges (kappa is printed)",
    )
    _add_store_arg(p)
    p.add_argument("--force", action="store_true", help="judge again items this judge has already labelled")
    _add_judge_call_args(p)
    p.set_defaults(func=_cmd_judge)
    jsub = p.add_subparsers(dest="judge_command", required=False, metavar="COMMAND", parser_class=_Parser)

    v = jsub.add_parser(
        "validate",
        help="score a judge against human labels (XSTest or MSTS CSV)",
        description="Run a judge on every row of a human-labelled CSV and print accuracy and balanced "
        "accuracy (safety-aware vs not), four-class macro-F1, Cohen's kappa with the humans and the confusion "
        "matrix. xstest: columns completion, final_label; msts: response, final_taxonomy (1.Z/2.Z rows are "
        "left out and counted). A file the local judge was trained on is flagged (in-sample figures; "
        "leave-one-model-out figures come from benchmarks/judge_quality.py).",
    )
    v.add_argument("--gold", required=True, metavar="FILE", help="CSV with human labels")
    v.add_argument("--format", required=True, choices=["xstest", "msts"], help="the gold file's format")
    v.add_argument(
        "--judge",
        default="local",
        metavar="NAME",
        help="the judge to score (default: local); a cascade 'local,rubric:PROVIDER/MODEL' also prints the share "
        "passed on",
    )
    _add_judge_call_args(v)
    v.set_defaults(func=_cmd_judge_validate)

    t = jsub.add_parser(
        "train",
        help="rebuild the local judge's head from the judge-dev sets (same labels, weights within 1e-4 on any CPU)",
        description="Fit the local judge's head (logistic regressions over a MiniLM embedding and lexical "
        "features) on the two XSTest completion files, the MSTS dev file and the project's own examples; the "
        "same data and package versions give the same bytes as the shipped head. Needs the 'local-judge' extra.",
    )
    t.add_argument(
        "--data",
        metavar="DIR",
        help="the judge-dev folder (default: $VSCBENCH_JUDGE_DEV, else ../shared/data/judge-dev from the "
        "current folder, else beside the source checkout)",
    )
    t.add_argument("--out", metavar="PATH", help="where to write the head (default: the shipped asset)")
    t.set_defaults(func=_cmd_judge_train)


# ==== report / plot / score =========================================================================
def _build_report(a: argparse.Namespace, run_ids: list[str]) -> Any:
    from vscbench.report import build_report
    from vscbench.store import Store

    with Store(a.store, create=False) as store:
        return build_report(
            store, run_ids, judge=a.judge, blocked=a.blocked, ci=a.ci, seed=a.seed, n_boot=a.resamples
        )


def _cmd_report(a: argparse.Namespace) -> int:
    from vscbench.report import render, write_report

    rep = _build_report(a, a.run)
    if a.out:
        for p in write_report(rep, a.format, a.out, thumbnails=not a.no_thumbnails):
            sys.stdout.write(f"wrote {p}\n")
    else:
        color = a.format == "table" and sys.stdout.isatty()
        sys.stdout.write(render(rep, a.format, color=color, thumbnails=not a.no_thumbnails))
    return 0


def _cmd_plot(a: argparse.Namespace) -> int:
    from vscbench.report.plot import write_plots

    for p in write_plots(_build_report(a, a.run), a.out, a.format):
        sys.stdout.write(f"wrote {p}\n")
    return 0


def _cmd_score(a: argparse.Namespace) -> int:
    from vscbench.data import load_items, resolve_paths
    from vscbench.report import render
    from vscbench.report.score import score_file

    items = load_items(resolve_paths(a.root, a.metadata))
    # the store is opened (created) only once the file and the judge are checked: no debris on bad input
    rep = score_file(a.store, a.file, items, judge=a.judge, run_id=a.run_id, model=a.model, blocked=a.blocked)
    sys.stdout.write(render(rep, "table", color=sys.stdout.isatty()))
    sys.stdout.write(f"run id: {rep.runs[0].run_id}\n")
    return 0


def _add_report_metric_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--blocked",
        choices=["refuse", "exclude"],
        default="refuse",
        help="how responses blocked by the provider's safety filter are scored (default: refuse = as REFUSE)",
    )
    p.add_argument("--ci", action="store_true", help="95%% intervals by cluster bootstrap over queries")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=1000, help="bootstrap resamples (default 1000)")
    _add_store_arg(p)


def _register_report(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "report",
        help="the paper's scores for stored, judged runs (table, md, latex, csv, json, html)",
        description="Score stored runs with one judge's labels: SRA_s, SRA_u, overall, helpful_s, pair accuracy "
        "and consistency, per category, setting and XSTest type, with coverage (what was left out and why). "
        "The first --run is the baseline: every later run is compared with it on the items both scored "
        "(paired difference, exact McNemar test). Calibrated runs add a safety-utility trade-off table. "
        "Needs no model or judge call; a run with no response a judge could label is reported as 0 scored.",
    )
    p.add_argument("--run", action="append", required=True, metavar="ID", help="run id (repeatable; first = baseline)")
    p.add_argument(
        "--format",
        choices=["table", "md", "latex", "csv", "json", "html"],
        default="table",
        help="table (terminal, default), md, latex (booktabs fragments), csv or json (one row per run, group "
        "and metric), html (one self-contained file with charts and an item browser)",
    )
    p.add_argument("--out", metavar="PATH", help="write to this file instead of standard output")
    p.add_argument("--judge", metavar="NAME", help="whose labels to score (default: local, else the only one stored)")
    p.add_argument("--no-thumbnails", action="store_true", help="html: leave item images out")
    _add_report_metric_args(p)
    p.set_defaults(func=_cmd_report)

    p = sub.add_parser(
        "plot",
        help="the report's figures as PNG or SVG (needs the 'report' extra)",
        description="Write the report's figures into --out: calibration_plane (x = SRA_s, y = SRA_u, one point "
        "per run), sra_by_category (image half) and sra_by_setting (text half) as grouped bars. A group with "
        "no scored item is marked n/a; --ci adds interval whiskers. Needs matplotlib (pip install "
        "'vscbench[report]').",
    )
    p.add_argument("--run", action="append", required=True, metavar="ID", help="run id (repeatable)")
    p.add_argument("--out", required=True, metavar="DIR", help="folder for the figures")
    p.add_argument(
        "--format", choices=["png", "svg"], default="png", help="png (default) or svg (text kept as text)"
    )
    p.add_argument("--judge", metavar="NAME", help="whose labels to score (default: local, else the only one stored)")
    _add_report_metric_args(p)
    p.set_defaults(func=_cmd_plot)

    p = sub.add_parser(
        "score",
        help="store, judge and report responses generated elsewhere (JSONL)",
        description="Bring responses made outside vscbench (e.g. a vLLM batch job) into the store as a new run, "
        "label them with --judge and print the report. One JSON object per line: item_id, response, and "
        "optionally status (ok, blocked, empty, error) and error. The whole file and the judge are checked "
        "first: on any error nothing is stored.",
    )
    p.add_argument("file", metavar="FILE.jsonl", help='one {"item_id": ..., "response": ...} object per line')
    p.add_argument("--judge", default="local", metavar="NAME", help="judge to label with (default: local)")
    p.add_argument("--run-id", metavar="ID", help="id for the new run (default: generated)")
    p.add_argument("--model", metavar="NAME", help="name of the model that wrote the responses (recorded)")
    p.add_argument(
        "--blocked",
        choices=["refuse", "exclude"],
        default="refuse",
        help="how responses with status 'blocked' are scored (default: refuse)",
    )
    _add_data_args(p)
    _add_store_arg(p)
    p.set_defaults(func=_cmd_score)


# ==== calibrate / utility ===========================================================================
def _cmd_calibrate_fit(a: argparse.Namespace) -> int:
    from vscbench.calibration.steering import direction_destination, fit
    from vscbench.data import resolve_paths
    from vscbench.models.base import parse_model_spec

    provider_name, model = parse_model_spec(a.model)
    if provider_name != "hf":
        raise VscbenchError(f"-m {a.model}: activation directions need an hf/ model (weights in this process)")
    from vscbench.models.hf import HFProvider

    direction_destination(model, a.layer, a.out, force=a.force)  # refuse before the model loads
    paths = resolve_paths(a.root, a.metadata)  # and find the data before it loads, too
    provider = HFProvider(model, device=a.device, batch_size=a.batch_size, dtype=a.dtype)
    res = fit(
        provider, paths, a.layer, out=a.out, n_queries=a.n, seed=a.seed,
        half=a.half, settings=a.setting, force=a.force,
    )  # fmt: skip
    for line in res.warnings:
        sys.stderr.write(f"vscbench: warning: {line}\n")
    p = res.provenance
    if a.json:
        _print_json({"path": str(res.path), "sha256": res.sha256, "provenance": p})
        return 0
    ps, pu = p["projection_safe"], p["projection_unsafe"]
    held = ", ".join(f"{h['held_out']} of {h['queries']} {half}-half" for half, h in p["held_out"].items())
    sys.stdout.write(
        f"direction  {res.path}\n"
        f"sha256     {res.sha256}\n"
        f"model      {p['model']}  layer {p['layer']} of 0..{p['num_layers'] - 1}  hidden {p['hidden_size']}\n"
        f"fitted on  {p['n_queries']} queries ({p['n_safe']} safe, {p['n_unsafe']} unsafe inputs), seed {p['seed']}\n"
        f"norm       {p['norm']:.4g}\n"
        f"projection safe {ps['mean']:.4g} ± {ps['std']:.3g}   unsafe {pu['mean']:.4g} ± {pu['std']:.3g}"
        f"   suggested revise threshold {p['suggested_threshold']:.4g}\n"
        f"held out   {held} queries: runs with this direction leave their items out of evaluation\n"
        f"use it     --calibration steer:layer={p['layer']},alpha=-4,direction={res.path}\n"
    )
    return 0


def _register_calibration(sub: argparse._SubParsersAction[Any]) -> None:
    cal = sub.add_parser("calibrate", help="fit what activation calibrations (steer, revise) need")
    csub = cal.add_subparsers(dest="calibrate_command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = csub.add_parser(
        "fit",
        help="fit a steering direction (mean unsafe - mean safe activation at one layer) for an hf/ model",
        description="Draw --n whole queries with --seed (both labels), take the output of decoder layer --layer "
        "at the last prompt token, and save mean(unsafe) - mean(safe) with its provenance as a .safetensors "
        "file. Every run that uses the direction leaves the items of those queries out of evaluation (the "
        "command says how many per half). An existing direction file is never replaced silently: the command "
        "refuses unless --force (or give a new --out).",
    )
    p.add_argument("-m", "--model", required=True, help="hf/<hub id or local folder>")
    p.add_argument("--layer", type=int, required=True, help="decoder layer whose output is steered (0-based)")
    p.add_argument(
        "--out",
        help="direction file (default: $VSCBENCH_HOME/directions/<model>.layer<L>.safetensors); "
        "an existing file is refused unless --force",
    )
    p.add_argument(
        "--force", action="store_true", help="overwrite an existing direction file (runs that used it will not resume)"
    )
    p.add_argument(
        "--n",
        type=int,
        default=32,
        help="calibration queries to draw, at least 2 and at most those with usable items (default 32); "
        "they are held out of every run that uses the direction",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the calibration split (default 0)")
    p.add_argument("--half", choices=["image", "text"], help="draw only from one half")
    p.add_argument(
        "--setting",
        action="append",
        choices=["image", "text", "search", "typography", "concat", "figstep"],
        help="draw only from these settings (repeatable)",
    )
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], default="auto", help="default auto")
    p.add_argument(
        "--dtype",
        choices=["auto", "float32", "float16", "bfloat16"],
        help="torch dtype (default float32 on CPU, bfloat16 on CUDA)",
    )
    p.add_argument("--batch-size", type=_positive_int, default=8, help="inputs per forward pass (default 8)")
    p.add_argument("--json", action="store_true", help="print the path, sha256 and provenance as JSON")
    _add_data_args(p)
    p.set_defaults(func=_cmd_calibrate_fit)
    _register_utility(sub)


def _cmd_utility(a: argparse.Namespace) -> int:
    from vscbench.utility.scoring import format_summary, nothing_scored

    if not a.model or not a.data:
        raise VscbenchError("utility needs -m MODEL and --data FILE.jsonl (or: vscbench utility make-synthetic)")
    with _no_new_store_on_error(a.store):
        res = _utility(a)
    if a.json:
        _print_json(
            {"run_id": res.run_id, "store": str(res.store_path), "sent": res.sent, "counts": res.counts}
            | {"scorer": res.grader or "rules", "utility": res.summary.to_dict()}
        )
    else:
        sys.stdout.write(
            f"run {res.run_id}{' (resumed)' if res.resumed else ''}\nstore {res.store_path}\n"
            f"{format_summary(res.summary)}\n"
        )
    why = nothing_scored(res.summary)
    if why:
        sys.stderr.write(f"vscbench: run {res.run_id}: {why}\n")
        return 1
    return 0


def _utility(a: argparse.Namespace) -> Any:
    from vscbench.runner.core import Limits, RetryPolicy
    from vscbench.types import GenConfig
    from vscbench.utility.run import run_utility

    return run_utility(
        a.model,
        a.data,
        calibrations=a.calibration or (),
        base_url=a.base_url,
        store=a.store,
        run_id=a.run_id,
        limit=a.limit,
        grader=a.grader,
        grader_base_url=a.grader_base_url,
        config=GenConfig(temperature=a.temperature, max_tokens=a.max_tokens, seed=a.seed),
        limits=Limits(concurrency=a.concurrency),
        policy=RetryPolicy.for_model(a.model, a.max_attempts, a.timeout),
        device=a.device,
        batch_size=a.batch_size,
        dtype=a.dtype,
        progress=False if a.no_progress else None,
    )


def _cmd_utility_make_synthetic(a: argparse.Namespace) -> int:
    from vscbench.utility.synthetic import make_synthetic

    path = make_synthetic(a.out, a.n, seed=a.seed)
    sys.stdout.write(f"{path}\n")
    return 0


def _register_utility(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "utility",
        help="general utility on a VQA-style JSONL set (accuracy with a 95%% interval), or make a synthetic set",
        description="vscbench utility -m MODEL --data FILE.jsonl [...]   or   vscbench utility make-synthetic --out DIR",
    )
    p.add_argument("-m", "--model", help="PROVIDER/MODEL (as for vscbench run)")
    p.add_argument("--data", metavar="FILE.jsonl", help="the utility set (image paths relative to the file)")
    p.add_argument("--base-url", help="API base URL (required for openai-compatible/)")
    p.add_argument("--calibration", action="append", metavar="SPEC", help="as for vscbench run (repeatable)")
    _add_store_arg(p)
    p.add_argument("--run-id", help="name of the run; an existing utility run is resumed (default: generated)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N examples of the file")
    p.add_argument("--grader", metavar="rubric:PROVIDER/MODEL", help="score with an LLM grader instead of the rules")
    p.add_argument("--grader-base-url", help="API base URL of the grader model")
    p.add_argument(
        "--max-tokens", type=_positive_int, default=512, help="longest answer, in tokens (default 512)"
    )
    p.add_argument(
        "--temperature", type=float, default=0.0, help="sampling temperature (default 0: greedy, repeatable)"
    )
    p.add_argument("--seed", type=int, default=0, help="sampling seed where the API takes one (default 0)")
    p.add_argument("--concurrency", type=int, default=16, help="requests in flight (default 16)")
    p.add_argument("--timeout", type=float, help="seconds per request, 0 = none (default 120; none for hf/)")
    p.add_argument("--max-attempts", type=int, default=6, help="attempts per item (default 6)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    p.add_argument(
        "--batch-size", type=_positive_int, help="hf/: examples generated together in one batch (default 1)"
    )
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="hf/: device (default auto)")
    p.add_argument("--dtype", help="hf/: torch dtype")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_utility)
    usub = p.add_subparsers(dest="utility_command", required=False, metavar="COMMAND", parser_class=_Parser)
    s = usub.add_parser(
        "make-synthetic",
        help="write a checkable synthetic set (counts, colours, shapes, words, positions)",
        description="Write DIR/data.jsonl and DIR/images/: five kinds of question in rotation, each with an "
        "answer known by construction: count (how many shapes), colour (of the one shape), shape (four "
        "lettered options), word (the word written) and position (is one shape left of the other: yes/no). "
        "The same --n and --seed give the same files.",
    )
    s.add_argument("--out", required=True, metavar="DIR", help="folder for data.jsonl and images/")
    s.add_argument("--n", type=int, default=100, help="number of examples (default 100)")
    s.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    s.set_defaults(func=_cmd_utility_make_synthetic)


# ==== snapshots ======================================================================================
def _cmd_snapshots_diff(a: argparse.Namespace) -> int:
    from vscbench.suite.snapshots import REGRESSION, diff_sets, format_table, read_pair

    before, after = read_pair(a.before, a.after, a.path, a.repo)
    table = diff_sets(before, after)
    sys.stdout.write(format_table(table, fmt=a.format, responses=a.top))
    return 1 if a.fail_on == "regression" and table.classes[REGRESSION] else 0


def _cmd_snapshots_trend(a: argparse.Namespace) -> int:
    import json

    from vscbench.suite.trend import format_trend, plot, trend

    points = trend(a.path, a.repo, a.since)
    if a.format == "json":
        sys.stdout.write(json.dumps([p.to_dict() for p in points], indent=2) + "\n")
    else:
        sys.stdout.write(format_trend(points, a.format))
    if a.out:
        for path in plot(points, a.out, title=f"{a.path}"):
            sys.stderr.write(f"wrote {path}\n")
    return 0


def _register_snapshots(sub: Any) -> None:
    snap = sub.add_parser("snapshots", help="the safety suite's snapshot files: what changed between two sets")
    ssub = snap.add_subparsers(dest="snapshots_command", required=True, metavar="COMMAND", parser_class=_Parser)
    p = ssub.add_parser(
        "diff",
        help="flip table between two snapshot sets (two folders, or two git revisions of --path)",
        description="Per scope, how many cases regressed (correct -> under-/over-safe, or between the two), "
        "were fixed (-> correct) or changed label only (neutral), then each flipped case, regressions "
        "first, with its query, image and old and new response. BEFORE and AFTER are snapshot folders "
        "(e.g. tests_safety/__snapshots__/qwen-vl) or git revisions (then --path names the folder).",
    )
    p.add_argument("before", metavar="BEFORE", help="a snapshot folder or a git revision")
    p.add_argument("after", metavar="AFTER", help="a snapshot folder or a git revision")
    p.add_argument("--path", help="one model's snapshot folder, read at each revision (tests_safety/__snapshots__/MODEL)")
    p.add_argument("--repo", default=".", help="the git repository (default: here)")
    p.add_argument("--format", choices=["text", "md", "html", "json"], default="text", help="text, md (a PR comment), html or json")
    p.add_argument("--fail-on", choices=["regression"], help="exit 1 when any case regressed (for CI)")
    p.add_argument("--top", type=int, default=20, help="flipped cases shown with their responses (default 20)")
    p.set_defaults(func=_cmd_snapshots_diff)
    t = ssub.add_parser(
        "trend",
        help="under- and over-safety per commit of a model's snapshot folder, with regressions and fixes",
        description="Walks the git history of --path: per commit that changed it, under-safety and over-safety "
        "with 95%% Wilson intervals, and the regressions and fixes against the previous such commit. A table "
        "(text, md or json); --out DIR also writes trend.png and trend.svg.",
    )
    t.add_argument("--path", required=True, help="one model's snapshot folder (tests_safety/__snapshots__/MODEL)")
    t.add_argument("--since", metavar="REF", help="only commits after this revision")
    t.add_argument("--repo", default=".", help="the git repository (default: here)")
    t.add_argument("--format", choices=["text", "md", "json"], default="text")
    t.add_argument("--out", metavar="DIR", help="write trend.png and trend.svg there")
    t.set_defaults(func=_cmd_snapshots_trend)


# ==== main ==========================================================================================
def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="vscbench",
        description="Measure whether a vision-language model is safety-calibrated (VSCBench).",
    )
    parser.add_argument("--version", action="version", version=f"vscbench {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND", parser_class=_Parser)
    _register_data(sub)
    _register_run(sub)
    _register_judge(sub)
    _register_report(sub)
    _register_calibration(sub)
    _register_snapshots(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except VscbenchError as exc:
        sys.stderr.write(f"vscbench: error: {exc}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("vscbench: interrupted; everything already stored is kept\n")
        return 130
    except BrokenPipeError:
        return 0
    return code


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
