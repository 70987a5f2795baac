"""``vscbench judge``: label a stored run; ``validate`` a judge against human labels; ``train`` the local head."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import Parser, add_store_arg, print_json
from vscbench.errors import VscbenchError


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
        print_json(rep.to_dict())
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
        print_json(v.to_json())
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


def register(sub: argparse._SubParsersAction[Any]) -> None:
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
    add_store_arg(p)
    p.add_argument("--force", action="store_true", help="judge again items this judge has already labelled")
    _add_judge_call_args(p)
    p.set_defaults(func=_cmd_judge)
    jsub = p.add_subparsers(dest="judge_command", required=False, metavar="COMMAND", parser_class=Parser)

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
