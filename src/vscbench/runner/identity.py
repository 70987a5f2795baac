"""Which stored run a suite session answers into, given the model's revision: answers are reused only for
the same revision.

Invariants:
- a known revision R has its own run, ``<setup run id>-r<digest of R>``: another revision's answers are never
  read for it; when the setup's previous run holds another (or no) revision, the choice says so in a line;
- an unknown revision (an API model, a server that lists no model) keeps the setup's run; reusing its answers
  says so in a warning that names ``--vsc-fresh``;
- ``--vsc-fresh`` always starts a new run.
Nothing here sends a request or writes to the store.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vscbench.models.revision import Revision, revision_digest
from vscbench.store import RunInfo, Store

#: The kind of the runs beside a suite run (its own cases ``-own``, its robustness variants ``-robustness``;
#: ``vscbench.runner.run.VARIANTS_KIND``): never an earlier revision's run.
COMPANION_KIND = "variants"


@dataclass(frozen=True)
class RunChoice:
    """The run to answer into, the revision to record with it, and the lines to print before any request."""

    run_id: str
    revision: str | None
    lines: tuple[str, ...] = ()
    recorded_at: float | None = None  # when the reused run was created (None: a new run)
    warn: bool = False  # the lines are a warning (answers reused that cannot be checked)
    previous: dict[str, Any] = field(default_factory=dict)


def when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(ts)) if ts else "unknown"


def stored_revision(info: RunInfo) -> str | None:
    value = info.manifest.get("model_revision")
    return str(value) if value else None


def answering_models(st: Store, run_id: str, most: int = 3) -> list[str]:
    """The model names the run's responses carry (an API's dated name, e.g. ``gpt-4o-mini-2024-07-18``)."""
    names = sorted({r.model for r in st.responses(run_id).values() if r.model})
    return names[:most] + ([f"+{len(names) - most} more"] if len(names) > most else [])


def _answered(st: Store, run_id: str) -> int:
    return len(st.completed_item_ids(run_id, include_errors=False))


def choose_suite_run(
    store: str | Path | None,
    base_run_id: str,
    revision: Revision,
    *,
    fresh: bool = False,
    cached_run_id: str | None = None,
    now: float | None = None,
) -> RunChoice:
    """The run a suite session with setup run id ``base_run_id`` answers into (see the module invariants).
    ``cached_run_id``: the run the last ``--vsc-fresh`` of this setup made (pytest's cache)."""
    rev = revision.value
    if fresh:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(now))
        suffix = f"-r{revision_digest(rev)}" if rev else ""
        return RunChoice(f"{base_run_id}{suffix}-{stamp}", rev)
    with Store(store, create=False, missing_ok=True) as st:
        runs = {r.run_id: r for r in st.list_runs()}

        def latest_other() -> RunInfo | None:
            mine = [r for rid, r in runs.items() if rid == base_run_id or rid.startswith(base_run_id + "-")]
            mine = [r for r in mine if r.kind != COMPANION_KIND]  # a run's own cases or robustness variants
            mine = [r for r in mine if _answered(st, r.run_id)]
            return max(mine, key=lambda r: r.updated_at) if mine else None

        if rev is None:
            rid = cached_run_id if cached_run_id in runs else base_run_id
            info = runs.get(rid)
            if info is None or not _answered(st, rid):
                return RunChoice(rid, None)
            named = answering_models(st, rid)
            seen = f", answered by {', '.join(named)}" if named else ""
            line = (
                f"warning: model revision unknown ({revision.source}): answers stored in run {rid} "
                f"(recorded {when(info.created_at)}{seen}) are reused without knowing that the same model gave "
                "them; pass --vsc-fresh to ask again"
            )
            return RunChoice(rid, None, (line,), info.created_at, warn=True)
        if cached_run_id in runs and stored_revision(runs[cached_run_id]) == rev:
            return RunChoice(cached_run_id, rev, (), runs[cached_run_id].created_at)
        rid = f"{base_run_id}-r{revision_digest(rev)}"
        if rid in runs:
            return RunChoice(rid, rev, (), runs[rid].created_at)
        prev = latest_other()
        if prev is None:
            return RunChoice(rid, rev)
        old = stored_revision(prev)
        said = f"was {old}" if old else "was not recorded"
        line = (
            f"model revision changed: {rev} ({revision.source}); run {prev.run_id} (recorded "
            f"{when(prev.created_at)}) {said}: new run {rid}, every selected case is asked again"
        )
        return RunChoice(rid, rev, (line,), None, previous={"run_id": prev.run_id, "model_revision": old})


def stored_answers(store: str | Path | None, run_id: str, item_ids: set[str]) -> int:
    """How many of ``item_ids`` already have an answer (not an error) in run ``run_id``."""
    with Store(store, create=False, missing_ok=True) as st:
        if not st.has_run(run_id):
            return 0
        return len(st.completed_item_ids(run_id, include_errors=False) & item_ids)


def reuse_line(n: int, run_id: str, recorded_at: float | None) -> str:
    """``N answers from the store (run …, recorded …)``."""
    return f"{n} answers from the store (run {run_id}, recorded {when(recorded_at)})"


def mixed_models_line(store: str | Path | None, run_id: str, item_ids: set[str]) -> str | None:
    """A warning when the answers to ``item_ids`` name more than one model (an API's dated name changed
    between the stored answers and the new ones); None when they name one or none."""
    with Store(store, create=False, missing_ok=True) as st:
        if not st.has_run(run_id):
            return None
        counts: dict[str, int] = {}
        for iid, r in st.responses(run_id).items():
            if iid in item_ids and r.model and r.status.value != "error":
                counts[r.model] = counts.get(r.model, 0) + 1
    if len(counts) < 2:
        return None
    named = ", ".join(f"{m} ({n})" for m, n in sorted(counts.items(), key=lambda kv: -kv[1]))
    return f"warning: the answers of run {run_id} come from more than one model: {named}; pass --vsc-fresh to ask every case again"
