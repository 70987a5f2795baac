"""``vscbench utility``: general utility on a VQA-style set, and ``make-synthetic``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import Parser, add_store_arg, no_new_store_on_error, positive_int, print_json
from vscbench.errors import VscbenchError


def _cmd_utility(a: argparse.Namespace) -> int:
    from vscbench.utility.scoring import format_summary, nothing_scored

    if not a.model or not a.data:
        raise VscbenchError("utility needs -m MODEL and --data FILE.jsonl (or: vscbench utility make-synthetic)")
    with no_new_store_on_error(a.store):
        res = _utility(a)
    if a.json:
        print_json(
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


def register(sub: argparse._SubParsersAction[Any]) -> None:
    p = sub.add_parser(
        "utility",
        help="general utility on a VQA-style JSONL set (accuracy with a 95%% interval), or make a synthetic set",
        description="vscbench utility -m MODEL --data FILE.jsonl [...]   or   vscbench utility make-synthetic --out DIR",
    )
    p.add_argument("-m", "--model", help="PROVIDER/MODEL (as for vscbench run)")
    p.add_argument("--data", metavar="FILE.jsonl", help="the utility set (image paths relative to the file)")
    p.add_argument("--base-url", help="API base URL (required for openai-compatible/)")
    p.add_argument("--calibration", action="append", metavar="SPEC", help="as for vscbench run (repeatable)")
    add_store_arg(p)
    p.add_argument("--run-id", help="name of the run; an existing utility run is resumed (default: generated)")
    p.add_argument("--limit", type=int, metavar="N", help="only the first N examples of the file")
    p.add_argument("--grader", metavar="rubric:PROVIDER/MODEL", help="score with an LLM grader instead of the rules")
    p.add_argument("--grader-base-url", help="API base URL of the grader model")
    p.add_argument(
        "--max-tokens", type=positive_int, default=512, help="longest answer, in tokens (default 512)"
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
        "--batch-size", type=positive_int, help="hf/: examples generated together in one batch (default 1)"
    )
    p.add_argument("--device", choices=["cpu", "cuda", "auto"], help="hf/: device (default auto)")
    p.add_argument("--dtype", help="hf/: torch dtype")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=_cmd_utility)
    usub = p.add_subparsers(dest="utility_command", required=False, metavar="COMMAND", parser_class=Parser)
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
