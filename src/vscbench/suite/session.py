"""A suite session's bookkeeping, pytest-free: case ids and shards, what each reported case said, the
accounting the gate is given (scored, missing, results), the snapshot step's decision, the gate documents and
the terminal summary as lines. The pytest plugin (``vsc_fixtures``) only gathers the facts and prints.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.suite import snapshots as snap
from vscbench.types import Label, Status

#: Shards of pairs that xdist hands out whole (a fixed number, so workers and controller agree).
SHARDS = 32
MISSES = ("under-safe", "over-safe")


def item_markers(item: Any) -> list[str]:
    """Marker names of one benchmark item."""
    names = [item.label]
    if item.half == "image":
        names += ["image_centric", item.category]
    elif item.setting == "text":
        names += ["baseline", item.xstest_type]
    else:
        names += ["text_centric", item.setting, item.xstest_type]
    return [n for n in names if n]


def shard_of(query_id: str) -> int:
    return int(hashlib.sha256(query_id.encode("utf-8")).hexdigest()[:8], 16) % SHARDS


def item_id_of(nodeid: str) -> str | None:
    """The benchmark item id in a case's node id (``…::test_x[ic/drugs/007/unsafe/2]``)."""
    if not nodeid.endswith("]") or "[" not in nodeid:
        return None
    return nodeid[nodeid.index("[") + 1 : -1]


def query_id_of(item_id: str) -> str:
    parts = item_id.split("/")
    return "/".join(parts[:3] if parts[0] == "ic" else parts[:2])


@dataclass
class CaseRecord:
    """What the controller knows of one reported case."""

    outcome: str | None  # correct | under-safe | over-safe | unscored | None (no outcome: error, crash)
    status: str | None = None
    label: str | None = None
    reason: str | None = None
    response: str = ""
    snapshot: str | None = None  # same | new | stale | flip | unscored (None: snapshots off)
    before: str | None = None  # the snapshot's verdict, for a flip
    relabelled: bool = False  # its stored label came from another build of the judge: judged again now
    flip: str | None = None  # a flip's class: regression | fix | neutral
    before_response: str = ""  # the snapshot's response, for a flip


def record_of(props: Mapping[str, Any], prefix: str) -> CaseRecord:
    """A case record from a report's user properties (``prefix`` + key)."""

    def text(key: str) -> str | None:
        v = props.get(prefix + key)
        return None if v is None else str(v)

    return CaseRecord(
        text("outcome"), text("status"), text("label"), text("reason"), text("response") or "",
        text("snapshot"), text("before"), props.get(prefix + "relabelled") is True,
        text("flip"), text("before_response") or "",
    )  # fmt: skip


# -- the accounting the gate is given -----------------------------------------------------------------------


@dataclass(frozen=True)
class Accounting:
    """Scored cases (in report order), missing ones (never reported, no outcome, crashed), and each scored
    case's (status, label)."""

    scored: list[str]
    missing: list[str]
    results: dict[str, tuple[Status | None, Label | None]]


def account(
    expected: set[str], records: Mapping[str, CaseRecord], skipped: Iterable[str], crashed: set[str]
) -> Accounting:
    """missing = expected − reported − skipped, then the cases with no outcome, then the crashed ones (a worker
    died on them: incomplete even if rerun). Fails closed: nothing unreported counts as scored."""
    scored = [iid for iid, rec in records.items() if rec.outcome is not None]
    missing = sorted(expected - set(records) - set(skipped))
    missing += sorted(iid for iid, rec in records.items() if rec.outcome is None)
    missing += sorted(crashed - set(missing))
    results: dict[str, tuple[Status | None, Label | None]] = {}
    for iid in scored:
        status, label = records[iid].status, records[iid].label
        results[iid] = (Status(status) if status else None, Label(label) if label else None)
    return Accounting(scored, missing, results)


def last_misses(records: Mapping[str, CaseRecord]) -> list[str]:
    """The under-/over-safe cases, for ``--vsc-last-misses``."""
    return sorted(iid for iid, rec in records.items() if rec.outcome in MISSES)


def flip_counts(records: Mapping[str, CaseRecord], update: bool) -> tuple[int, int] | None:
    """(regressions, compared) for the flip budget; None when no case compared a snapshot or under update."""
    kinds = [rec.snapshot for rec in records.values() if rec.snapshot]
    if not kinds or update:  # the budget counts regressions only
        return None
    regressions = sum(rec.flip == "regression" for rec in records.values())
    return regressions, kinds.count("flip") + kinds.count("same")


def skipped_unsendable(
    skipped: Iterable[str], unsendable: Mapping[str, str], by_id: Mapping[str, Any]
) -> dict[Any, str]:
    """Under xdist the controller collects nothing: the never sendable items are the skipped cases'."""
    skipped = list(skipped)
    reasons = unsendable if skipped else {}
    return {by_id[i]: reasons[i] for i in skipped if i in reasons}


def baseline_results(base: Mapping[str, Mapping[str, Any]]) -> dict[str, tuple[Status | None, Label | None]]:
    """A baseline snapshot set's scored verdicts by case."""
    return {
        cid: (Status(r["status"]) if r.get("status") else None, Label(r["label"]) if r.get("label") else None)
        for cid, r in base.items()
        if r.get("outcome") != "unscored"
    }


def current_set(records: Mapping[str, CaseRecord], scored: Sequence[str], by_id: Mapping[str, Any]) -> dict[str, Any]:
    """This session's verdicts as snapshot records (to diff against a baseline set)."""
    out = {}
    for iid in scored:
        rec = records[iid]
        out[iid] = snap.record(
            by_id[iid], outcome=str(rec.outcome), label=rec.label, judge="", status=rec.status,
            response=rec.response, prompt="", model="", model_revision=None, config_digest="",
        )  # fmt: skip
    return out


def session_flips(records: Mapping[str, CaseRecord], by_id: Mapping[str, Any]) -> list[snap.Flip]:
    """This session's snapshot flips, with each case's query and image."""
    out = []
    for iid, rec in records.items():
        if rec.snapshot != "flip" or not rec.flip or iid not in by_id:
            continue
        it = by_id[iid]
        before, _, before_label = (rec.before or "").partition("/")
        out.append(snap.Flip(
            iid, rec.flip, before, None if before_label in ("", "None") else before_label, str(rec.outcome),
            rec.label, it.query, Path(it.image).name if it.image else None, rec.before_response, rec.response,
        ))  # fmt: skip
    return snap.ordered_flips(out)


def gate_document(gate_json: str | None, **meta: Any) -> dict[str, Any]:
    """The ``--vsc-json`` document: the gate's JSON (``NOT RUN`` without a gate) and the session's facts."""
    gate = json.loads(gate_json) if gate_json is not None else {"status": "NOT RUN"}
    return dict(gate | meta)


# -- the snapshot step ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotStep:
    """What one case's snapshot step decided: its kind (or ``broken``), the text syrupy is shown (None: no
    assertion), why the case fails (None: it does not), and a flip's before verdict and class."""

    kind: str
    expect: str | None = None
    failure: str | None = None
    flip: snap.Flip | None = None
    before: str | None = None


def snapshot_step(
    old_text: str | None, source: str, new: Mapping[str, Any], *, compare: str, update: bool, budget_zero: bool
) -> SnapshotStep:
    """Compare a case with its snapshot file's text (or write it under update). A flip fails the case when it
    is a regression and the flip budget is zero; a corrupt file fails it unless update replaces it; an
    unscored case (an API error) never replaces a stored verdict."""
    try:
        old = snap.loads(old_text, source) if old_text is not None else None
    except VscbenchError as exc:
        if not update:
            return SnapshotStep("broken", failure=f"vscbench: {exc}")
        old = None  # --snapshot-update replaces a corrupt file
    kind = snap.classify(old, new, compare)
    flip = snap.Flip.of(old, new) if kind == snap.FLIP and old is not None else None
    before = f"{old.get('outcome')}/{old.get('label')}" if flip is not None and old is not None else None
    if update:
        keep_old = kind == snap.UNSCORED and old_text is not None
        return SnapshotStep(kind, old_text if keep_old else snap.dumps(new), None, flip, before)
    if old_text is None:
        return SnapshotStep(kind, None, None, flip, before)  # a new case: --snapshot-update records it
    failure = None
    if flip is not None and flip.cls == snap.REGRESSION and budget_zero and old is not None:
        failure = snap.describe_flip(old, new)  # first line: what failed
    return SnapshotStep(kind, snap.dumps(new), failure, flip, before)


def judge_line(info: Mapping[str, Any], passed: str | None, relabelled: int) -> str:
    """The judge's line: its id, version, precision, head, validation, the labels judged again, and what
    passed on text (a cascade)."""
    parts = [f"judge {info.get('judge')}"]
    for k in ("version", "precision", "head_sha256", "validated"):
        if info.get(k):
            v = info[k]
            parts.append(f"{k} {v[:12] if k == 'head_sha256' else (json.dumps(v) if isinstance(v, dict) else v)}")
    if relabelled:  # labels a stored run kept from an older head (an upgrade, another --head): never reused
        parts.append(f"{relabelled} stored labels judged again (another build of the judge gave them)")
    return ", ".join(parts) + (f": {passed}" if passed else "")


# -- the selection ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Selection:
    """What a session keeps of the collected cases: the kept item ids, the items the selection could test
    (before the sample; after ``--vsc-last-misses``), and each half's draw of the sample."""

    keep: set[str]
    picked: list[Any]
    draws: list[Any]  # vscbench.suite.cases.HalfDraw


def select(
    picked: Sequence[Any], unsendable: Mapping[str, str], *, sample: int | None, seed: int, misses: set[str] | None
) -> Selection:
    """``--vsc-sample N``: each half's share in proportion to what was selected, drawn (whole pairs) from what
    can be sent; ``--vsc-last-misses`` (``misses``, None when not asked): only the last run's under-/over-safe
    cases, and none recorded is an error."""
    from vscbench.runner.select import proportional_sample
    from vscbench.suite.cases import HalfDraw

    picked = list(picked)
    keep = {it.id for it in picked}
    draws: list[Any] = []
    if sample is not None:
        chosen_items, report = proportional_sample(picked, set(unsendable), sample, seed)
        draws = [HalfDraw(*r) for r in report]
        keep = {it.id for it in chosen_items}
    if misses is not None:
        if not misses:
            raise VscbenchError("--vsc-last-misses: no under-/over-safe cases recorded for this model setup yet")
        keep &= misses
        picked = [it for it in picked if it.id in misses]
    return Selection(keep, picked, draws)


def cases_of(
    items: Iterable[Any], unsendable: Mapping[str, str], *, half: str | None, settings: Sequence[str] | None
) -> list[tuple[Any, list[str], str | None]]:
    """The cases a ``vsc_items(half=, settings=)`` test runs: each item of that half and those settings, its
    marker names, and why it is skipped (never sendable; None: it is sent)."""
    out = []
    for it in items:
        if half and it.half != half:
            continue
        if settings and it.setting not in settings:
            continue
        why = unsendable.get(it.id)
        out.append((it, item_markers(it), f"never sendable: {why}" if why else None))
    return out


def note_report(
    records: dict[str, CaseRecord], skipped: dict[str, str], crashed: set[str], iid: str,
    props: Mapping[str, Any], prefix: str, *, when: str, result: str, longrepr: object,
) -> None:  # fmt: skip
    """What one report (``result``: passed, failed, skipped; ``when``: setup, call, teardown) tells of its
    case: a skip and why, the call's record, a failure with no outcome, a worker crash (the session is
    incomplete even if the case reran)."""
    if result == "skipped" and when in ("setup", "call"):
        skipped[iid] = str(longrepr[-1] if isinstance(longrepr, tuple) else longrepr)
        return
    if when == "call" and prefix + "outcome" in props:
        records[iid] = record_of(props, prefix)
    elif result == "failed" and iid not in records:
        records[iid] = CaseRecord(None, reason=f"{when} failed")
    if result == "failed" and prefix + "outcome" not in props and "crashed" in str(longrepr):
        crashed.add(iid)
