"""``vscbench run`` (generate a model's responses, resumable) and ``vscbench runs`` (list the store's runs)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from vscbench.cli.common import (
    add_data_args,
    add_store_arg,
    flag_float,
    flag_int,
    no_new_store_on_error,
    print_json,
)

if TYPE_CHECKING:
    from vscbench.runner.run import RunResult, RunSpec


def _cmd_run(a: argparse.Namespace) -> int:
    from vscbench.runner.run import run

    with no_new_store_on_error(a.store):
        spec = _spec(a)
        result = run(spec, progress=False if a.no_progress else None)
    return _report_run(a, spec, result)


def _spec(a: argparse.Namespace) -> RunSpec:
    """The :class:`~vscbench.runner.run.RunSpec` the flags describe."""
    from vscbench.data import resolve_paths
    from vscbench.runner.core import Limits, RetryPolicy
    from vscbench.runner.run import ModelSetup, RunSpec
    from vscbench.runner.select import Selection
    from vscbench.types import GenConfig

    setup = ModelSetup(
        model=a.model,
        base_url=a.base_url,
        config=GenConfig(temperature=a.temperature, max_tokens=a.max_tokens, seed=a.seed, top_p=a.top_p),
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
    return RunSpec(
        setup,
        selection=selection,
        data=resolve_paths(a.root, a.metadata) if (a.root or a.metadata) else None,
        store=a.store,
        run_id=a.run_id,
        retry_errors=a.retry_errors,
    )


def _report_run(a: argparse.Namespace, spec: RunSpec, result: RunResult) -> int:
    from vscbench.runner.run import retry_command

    if a.json:
        print_json(result.to_dict())
    else:
        sys.stdout.write(result.summary())
    for note in result.notes:
        sys.stderr.write(f"vscbench: note: {note}\n")
    if not result.counts["error"]:
        return 0
    s = spec.setup
    hint = retry_command(
        s.model, result.run_id, base_url=s.base_url, root=a.root, metadata=a.metadata, store=a.store,
        config=s.config, calibrations=s.calibrations, device=s.device, dtype=s.dtype, batch_size=s.batch_size,
    )  # fmt: skip
    for line in result.error_lines(hint):
        sys.stderr.write(f"vscbench: {line}\n")
    return result.exit_code()


def _cmd_runs(a: argparse.Namespace) -> int:
    from vscbench.report.runs import runs_table
    from vscbench.runner.run import list_runs
    from vscbench.store import default_store_path

    runs = list_runs(a.store)
    if a.json:
        print_json(runs)
        return 0
    where = a.store or default_store_path()
    if not runs:
        sys.stdout.write(f"no runs yet in {where} (--store FILE or $VSCBENCH_STORE to look elsewhere)\n")
        return 0
    sys.stdout.write(f"runs in {where}\n")
    for line in runs_table(runs):
        sys.stdout.write(line + "\n")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
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
    add_data_args(p)
    add_store_arg(p)
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
        type=flag_int(1),
        metavar="N",
        help="a deterministic sample of N selected items, balanced over halves, categories/types and labels "
        "within each, image items in safe/unsafe pairs, text items as whole queries across the settings; "
        "a larger N extends a smaller one (sampled items that cannot be sent are counted as never sent)",
    )
    sel.add_argument("--sample-seed", type=int, default=0, help="seed of the --limit sample (default 0)")
    gen = p.add_argument_group("generation")
    gen.add_argument(
        "--max-tokens", type=flag_int(1), default=512, help="longest answer in tokens (default 512)"
    )
    gen.add_argument(
        "--temperature", type=flag_float(0), default=0.0, help="sampling temperature (default 0: greedy)"
    )
    gen.add_argument(
        "--top-p",
        type=flag_float(0, low_open=True, high=1),
        help="nucleus sampling, 0 < P <= 1 (default: not sent)",
    )
    gen.add_argument("--seed", type=int, default=0, help="sampling seed where the API takes one (default 0)")
    gen.add_argument(
        "--calibration", action="append", metavar="SPEC", help="e.g. reminder, fewshot:k=2 (repeatable)"
    )
    ex = p.add_argument_group("execution")
    ex.add_argument("--concurrency", type=flag_int(1), default=16, help="requests in flight (default 16)")
    ex.add_argument(
        "--rpm", type=flag_float(0, low_open=True), help="requests-per-minute budget (default: none)"
    )
    ex.add_argument(
        "--tpm",
        type=flag_float(0, low_open=True),
        help="tokens-per-minute budget, estimated before and settled after each request (default: none)",
    )
    ex.add_argument(
        "--timeout", type=flag_float(0), help="seconds per request, 0 = none (default 120; none for hf/)"
    )
    ex.add_argument("--max-attempts", type=flag_int(1), default=6, help="attempts per item (default 6)")
    ex.add_argument("--retry-errors", action="store_true", help="re-ask the items that ended in error")
    ex.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    hf = p.add_argument_group("hf/ models")
    hf.add_argument("--batch-size", type=flag_int(1), help="generation batch size (default 1)")
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
    add_store_arg(r)
    r.add_argument(
        "--json",
        action="store_true",
        help="print the runs as JSON (with calibrations and judges; default: a table)",
    )
    r.set_defaults(func=_cmd_runs)
