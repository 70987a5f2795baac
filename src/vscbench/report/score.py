"""``vscbench score``: bring responses generated elsewhere (e.g. a vLLM batch job) into the store, judge them.

The input is JSON Lines, one object per line: ``{"item_id": "tc/125/figstep", "response": "..."}`` with an
optional ``"status"`` (``ok``, ``blocked``, ``empty``, ``error``; default ``ok``, or ``empty`` for a blank
response) and an optional ``"error"`` message. Blank lines are skipped. Every problem is an error naming
the file and line: bad JSON, a line that is not an object, a missing key, an unknown or duplicate item id,
a bad status. Nothing is stored unless the whole file is valid, the run id is free and the judge can be
built (a known name, its extra installed): every failure before judging leaves the store as it was. A
failure while judging keeps the complete run and says how to judge it again.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from vscbench import __version__
from vscbench.errors import VscbenchError
from vscbench.store import Store, check_run_id
from vscbench.types import Item, Response, Status

SCORED_KIND = "scored"


def parse_responses(lines: Sequence[str], items: Mapping[str, Item], source: str) -> list[Response]:
    """Validate JSONL lines against the known items; return one :class:`Response` per line, in file order."""
    out: list[Response] = []
    first_line: dict[str, int] = {}
    statuses = ", ".join(s.value for s in Status)
    for no, line in enumerate(lines, 1):
        if not line.strip():
            continue
        where = f"{source}:{no}"
        try:
            obj: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise VscbenchError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})") from exc
        if not isinstance(obj, dict):
            raise VscbenchError(f"{where}: expected a JSON object with 'item_id' and 'response'")
        for key in ("item_id", "response"):
            if key not in obj:
                raise VscbenchError(f"{where}: missing key '{key}'")
        iid, text = obj["item_id"], obj["response"]
        if not isinstance(iid, str):
            raise VscbenchError(f"{where}: 'item_id' must be a string")
        if text is None:
            text = ""
        if not isinstance(text, str):
            raise VscbenchError(f"{where}: 'response' must be a string")
        if iid not in items:
            raise VscbenchError(f"{where}: unknown item id '{iid}' (see 'vscbench data items')")
        if items[iid].note is not None or not items[iid].query.strip():
            raise VscbenchError(
                f"{where}: item '{iid}' has a blank query in the official metadata and is never scored"
            )
        if iid in first_line:
            raise VscbenchError(f"{where}: duplicate item id '{iid}' (first given on line {first_line[iid]})")
        first_line[iid] = no
        raw_status = obj.get("status")
        if raw_status is None:
            status = Status.OK if text.strip() else Status.EMPTY
        else:
            try:
                status = Status(str(raw_status).lower())
            except ValueError:
                raise VscbenchError(f"{where}: unknown status {raw_status!r} (one of {statuses})") from None
        if status is Status.OK and not text.strip():
            status = Status.EMPTY
        err = obj.get("error")
        out.append(
            Response(
                item_id=iid,
                status=status,
                text=text,
                error=str(err) if err is not None else ("no error message given" if status is Status.ERROR else None),
            )
        )
    if not out:
        raise VscbenchError(f"{source}: no responses (expected one JSON object per line)")
    return out


def read_responses(path: str | Path, items: Sequence[Item]) -> tuple[list[Response], str]:
    """Read and validate a JSONL file; returns the responses and the file's SHA-256."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as exc:
        raise VscbenchError(f"{p}: cannot read ({exc.strerror})") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise VscbenchError(f"{p}: not UTF-8 text ({exc.reason} at byte {exc.start})") from exc
    by_id = {i.id: i for i in items}
    return parse_responses(text.splitlines(), by_id, str(p)), hashlib.sha256(raw).hexdigest()


def store_scored_run(
    store: Store,
    path: str | Path,
    items: Sequence[Item],
    *,
    run_id: str | None = None,
    model: str | None = None,
) -> str:
    """Validate the file, then store its responses as a new run of kind ``scored``; returns the run id.

    Raises before writing anything when the file is invalid or the run id is bad or taken."""
    if run_id is not None:
        check_run_id(run_id)
    responses, sha = read_responses(path, items)
    return _store_responses(store, path, items, responses, sha, run_id=run_id, model=model)


def _store_responses(
    store: Store,
    path: str | Path,
    items: Sequence[Item],
    responses: Sequence[Response],
    sha: str,
    *,
    run_id: str | None,
    model: str | None,
) -> str:
    by_id = {i.id: i for i in items}
    rid = run_id if run_id is not None else f"scored-{time.strftime('%Y%m%d-%H%M%S')}-{sha[:6]}"
    if store.has_run(rid):
        raise VscbenchError(f"run '{rid}' already exists in {store.path}: choose another --run-id")
    manifest = {
        "kind": SCORED_KIND,
        "model": model or "external",
        "source_file": Path(path).name,
        "source_sha256": sha,
        "responses": len(responses),
        "vscbench_version": __version__,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    }
    store.create_run(
        rid, kind=SCORED_KIND, model=model or "external", manifest=manifest, items=[by_id[r.item_id] for r in responses]
    )
    for r in responses:
        store.add_response(rid, r)
    return rid


def make_scoring_judge(judge: str) -> Any:
    """Build the judge before anything is stored, so a bad name or a missing extra leaves no run behind."""
    from vscbench.judges.factory import make_judge

    return make_judge(judge)


def judge_scored_run(store: Store, run_id: str, judge: Any) -> None:
    """Label the run with ``judge`` (a name or a built judge) through the judges stage."""
    try:
        from vscbench.judges.apply import judge_run
    except ImportError as exc:  # pragma: no cover - the judges stage ships with the package
        raise VscbenchError(f"stored run '{run_id}', but the judges stage is not available ({exc})") from exc
    name = judge if isinstance(judge, str) else str(getattr(judge, "id", judge))
    try:
        judge_run(store, run_id, [judge])
    except VscbenchError as exc:
        from vscbench.report.build import judge_command

        raise VscbenchError(
            f"stored run '{run_id}', but judging failed: {exc} (retry with '{judge_command(run_id, name)}')"
        ) from exc


def score_file(
    store: Store | str | os.PathLike[str] | None,
    path: str | Path,
    items: Sequence[Item],
    *,
    judge: str = "local",
    run_id: str | None = None,
    model: str | None = None,
    blocked: str = "refuse",
) -> Any:
    """Store, judge and build the report of a JSONL file of responses; returns the :class:`Report`.

    Order: validate the file, the ``--blocked`` policy and the judge (nothing stored yet), store the run,
    judge it, report. A file with no ``ok`` response (all empty, error, blocked) gives a report of 0 scored
    items with the reasons, not an error. ``store`` is an open :class:`Store`, or the path of one (``None``:
    the default store) that is opened, and so created, only once everything has been checked: rejected
    input leaves no new store file behind.
    """
    from vscbench.metrics import check_policy

    if run_id is not None:
        check_run_id(run_id)  # '' is an error, not "generate one"
    try:
        check_policy(blocked)
    except ValueError as exc:
        raise VscbenchError(f"--blocked: {exc}") from exc
    responses, sha = read_responses(path, items)  # the whole file, before anything else
    built = make_scoring_judge(judge)
    if not isinstance(store, Store):
        with Store(store) as opened:
            return _store_judge_report(opened, path, items, responses, sha, built, judge, run_id, model, blocked)
    return _store_judge_report(store, path, items, responses, sha, built, judge, run_id, model, blocked)


def _store_judge_report(
    store: Store,
    path: str | Path,
    items: Sequence[Item],
    responses: Sequence[Response],
    sha: str,
    built: Any,
    judge: str,
    run_id: str | None,
    model: str | None,
    blocked: str,
) -> Any:
    from vscbench.report.build import build_report

    rid = _store_responses(store, path, items, responses, sha, run_id=run_id, model=model)
    judge_scored_run(store, rid, built)
    return build_report(store, [rid], judge=str(getattr(built, "id", judge)), blocked=blocked)
