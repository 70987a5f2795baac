"""``vscbench calibrate fit``: fit a steering direction for an ``hf/`` model."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import Parser, add_data_args, positive_int, print_json
from vscbench.errors import VscbenchError


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
        print_json({"path": str(res.path), "sha256": res.sha256, "provenance": p})
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


def register(sub: argparse._SubParsersAction[Any]) -> None:
    cal = sub.add_parser("calibrate", help="fit what activation calibrations (steer, revise) need")
    csub = cal.add_subparsers(dest="calibrate_command", required=True, metavar="COMMAND", parser_class=Parser)
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
    p.add_argument("--batch-size", type=positive_int, default=8, help="inputs per forward pass (default 8)")
    p.add_argument("--json", action="store_true", help="print the path, sha256 and provenance as JSON")
    add_data_args(p)
    p.set_defaults(func=_cmd_calibrate_fit)
