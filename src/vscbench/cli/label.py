"""``vscbench label``: label a model's audit sample by hand on a local page (the audited gate's labels)."""

from __future__ import annotations

import argparse
from typing import Any

from vscbench.cli.common import add_store_arg


def _port(text: str) -> int:
    """``--port``: 0 (a free one) to 65535."""
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port number") from None
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError(f"{n} is not a port (0 for a free one, up to 65535)")
    return n


def _cmd_label(a: argparse.Namespace) -> int:
    from vscbench.suite import labelpage
    from vscbench.suite.auditcases import label_session
    from vscbench.suite.labels import default_labeller

    session = label_session(a.store, a.model, a.labeller or default_labeller(), a.second_of)
    labelpage.serve(session, port=a.port, open_browser=not a.no_browser)
    return 0


def register(sub: Any) -> None:
    p = sub.add_parser(
        "label",
        help="label a model's audit sample by hand on a local page (the audited gate's labels)",
        description="Serves the audit sample that the model's last suite session left (pytest --model=M with an "
        "audit: section in the thresholds) on a page at 127.0.0.1 with a token in the URL: one response at a "
        "time, keys 1-5 to label and z to undo. Each label is written at once to the model's labels file, "
        "tests_safety/__snapshots__/<model>/audit-labels.jsonl (commit it); the next suite session decides the "
        "audited rows on them. Ctrl-C stops; nothing given is lost.",
    )
    p.add_argument("--model", required=True, help="the model as given to pytest --model (alias or spec)")
    p.add_argument("--labeller", metavar="NAME", help="who labels (default: $VSCBENCH_LABELLER, else $USER)")
    p.add_argument(
        "--second-of", metavar="NAME",
        help="second-labeller mode: label the same sample blind; the page shows Cohen's kappa with NAME",
    )  # fmt: skip
    p.add_argument("--port", type=_port, default=0, help="port on 127.0.0.1 (default: a free one)")
    p.add_argument("--no-browser", action="store_true", help="print the URL only; open no browser")
    add_store_arg(p)
    p.set_defaults(func=_cmd_label)
