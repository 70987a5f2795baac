"""The suite session's terminal summary as a value: the lines (with their colour) the plugin's terminal hook
prints after the cases, built from the session's facts. Also syrupy's report folded into ours. pytest-free."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from vscbench.suite.gate import GateResult
from vscbench.suite.gate import audit_lines as gate_audit_lines
from vscbench.suite.session import MISSES, CaseRecord
from vscbench.suite.snapshots import Flip, fixes_hint, format_table

OUTCOME_WORDS = {
    "under-safe": ("U", "UNDER-SAFE", {"red": True}),
    "over-safe": ("O", "OVER-SAFE", {"yellow": True}),
    "unscored": ("N", "UNSCORED", {"purple": True}),
}
#: a flip that did not fail its case (a fix, a neutral flip, a regression within a non-zero budget)
FLIP_WORDS = {
    "regression": ("regressed", "R", ("REGRESSED", {"red": True})),
    "fix": ("fixed", "+", ("FIXED", {"green": True})),
    "neutral": ("relabelled", "~", ("RELABELLED", {"yellow": True})),
}
_PASSED_COUNT = re.compile(r"\d+ snapshots? passed\.\s*")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_UNUSED = re.compile(r"\d+ (unused snapshots? deleted|snapshots? unused)\.\s*")


@dataclass(frozen=True)
class Line:
    """One line of the summary and its markup (``red``, ``green``, ``yellow``, ``bold`` as the terminal's)."""

    text: str
    markup: Mapping[str, bool] = field(default_factory=dict)


def status_word(props: Mapping[str, Any], prefix: str) -> Any:
    """A passed case's status in the terminal (category, letter, word and markup): a flip's class, or its
    outcome when it is not correct; None: pytest's own."""
    if props.get(prefix + "snapshot") == "flip":
        return FLIP_WORDS.get(str(props.get(prefix + "flip")), FLIP_WORDS["neutral"])
    outcome = props.get(prefix + "outcome")
    if outcome in OUTCOME_WORDS:
        letter, word, markup = OUTCOME_WORDS[outcome]
        return outcome, letter, (word, markup)
    return None


def fold_syrupy(lines: Sequence[str], *, orphans: bool, update: bool) -> list[str]:
    """syrupy's report lines, folded into ours: in compare mode the suite classifies every case (same, flip,
    stale), so "N snapshots passed" is dropped; what it says of files (generated, updated, unused, deleted)
    stays; with orphan files ours name each one, so syrupy's unused counts go."""
    out = [_ANSI.sub("", x) for x in lines]
    if orphans:
        out = [_UNUSED.sub("", x) for x in out if "--snapshot-update to delete unused" not in x]
    if out and update:
        out[0] = out[0].replace("snapshots passed.", "unchanged.").replace("snapshot passed.", "unchanged.")
    elif out:
        out[0] = _PASSED_COUNT.sub("", out[0])
    return [x for x in out if x.strip()]


def outcome_counts(records: Mapping[str, CaseRecord]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for rec in records.values():
        counts[rec.outcome or "no outcome"] = counts.get(rec.outcome or "no outcome", 0) + 1
    return counts


def snapshot_kinds(records: Mapping[str, CaseRecord]) -> dict[str, int]:
    kinds: dict[str, int] = {}
    for rec in records.values():
        if rec.snapshot:
            kinds[rec.snapshot] = kinds.get(rec.snapshot, 0) + 1
    return kinds


def cases_line(
    records: Mapping[str, CaseRecord], *, expected: int, n_selected: int | None, sampled: bool, never: int, skipped: int
) -> str:
    head = f"cases: {expected} selected"
    if sampled and n_selected is not None:
        head = f"cases: {n_selected} selected, {expected} sampled"
    counts = outcome_counts(records)
    return f"{head}, {never} not sendable (never sent; {skipped} skipped), " + ", ".join(
        f"{v} {k}" for k, v in sorted(counts.items())
    )


def run_line(given: str, label: str, run_id: str | None, revision: str | None, source: str | None) -> str:
    return f"model {given} ({label}), run {run_id}, " + (
        f"revision {revision} ({source})" if revision else f"revision unknown ({source})"
    )


def snapshot_lines(
    records: Mapping[str, CaseRecord], flips: Sequence[Flip], *, update: bool, budget_zero: bool
) -> list[Line]:
    """The snapshot kinds (with the flips' classes), each flip (a regression fails its case when the budget is
    zero), the fixes' hint and the stale cases' note."""
    kinds = snapshot_kinds(records)
    if not kinds:
        return []
    classes = ", ".join(f"{sum(f.cls == c for f in flips)} {c}" for c in ("regression", "fix", "neutral"))
    out = [Line("snapshots: " + ", ".join(
        f"{v} {k}" + (f" ({classes})" if k == "flip" else "") for k, v in sorted(kinds.items())
    ))]  # fmt: skip
    zero = budget_zero and not update
    for f in flips:
        fails = f.cls == "regression" and zero
        out.append(Line(f"  {f.cls.upper()} {f.case}: {f.line}{' (fails its case)' if fails else ''}; "
                        f"query {f.query[:80]!r}; image {f.image or 'none'}", {"red": fails}))  # fmt: skip
        out.append(Line(f"      now: {f.after_response[:100]!r}"))
    n_fix = sum(f.cls == "fix" for f in flips)
    if n_fix and not update:
        out.append(Line(f"  {fixes_hint(n_fix)}", {"green": True}))
    if kinds.get("stale"):
        out.append(Line(
            f"  {kinds['stale']} stale: the prompt, image or generation config changed since the snapshot "
            "(not a model flip); refresh with --snapshot-update"
        ))  # fmt: skip
    return out


def no_baseline_line(given: str, snapshot_dir: Path | None) -> str:
    return (
        f"snapshots: none recorded for model {given} yet: record a baseline with "
        f"'pytest --model={given} --snapshot-update' and commit {snapshot_dir}"
    )


def orphan_lines(orphans: Sequence[Path], *, deleted: bool, narrowed: bool, root: Path) -> list[Line]:
    if not orphans:
        return []
    done = "deleted" if deleted else "unused"
    how = "" if deleted else (
        " (this fails the run, as syrupy does; --snapshot-update on an unnarrowed run deletes them)"
        if not narrowed
        else " (never deleted under -k, -m, --vsc-sample or a node id: run the whole suite with --snapshot-update)"
    )  # fmt: skip
    out = [Line(f"snapshot files: {len(orphans)} {done}: no case owns them{how}", {"yellow": True})]
    for path in orphans[:20]:
        out.append(Line(f"  {done} {path.relative_to(root) if path.is_relative_to(root) else path}"))
    if len(orphans) > 20:
        out.append(Line(f"  (+{len(orphans) - 20} more)"))
    return out


def baseline_lines(ref: str, table: Any) -> list[Line]:
    out = [Line(f"baseline {ref}:")]
    out += [Line(f"  {line}") for line in format_table(table, fmt="text", responses=0).splitlines()]
    return out


def thresholds_lines(thresholds: Any, entry: str | None) -> list[Line]:
    out = [Line(f"thresholds {thresholds.source}" + (f" (model entry '{entry}')" if entry else ""))]
    note = thresholds.models.get(entry, {}).get("note") if entry else ""
    if note:
        out.append(Line(f"  {note}"))
    return out


def audit_lines(result: GateResult) -> list[Line]:
    """One line per audited row (:func:`vscbench.suite.gate.audit_lines`), yellow while labels are missing."""
    return [Line(x, {"yellow": "labels missing" in x}) for x in gate_audit_lines(result)]


def example_lines(records: Mapping[str, CaseRecord], by_id: Mapping[str, Any], per_kind: int = 3) -> list[Line]:
    """The first few under-safe and over-safe cases, each with its query, image and response."""
    out = []
    for word in MISSES:
        ids = sorted(i for i, r in records.items() if r.outcome == word)
        for iid in ids[:per_kind]:
            rec, it = records[iid], by_id[iid]
            source = f"; source {it.provenance}" if getattr(it, "provenance", None) else ""  # an own case's
            out.append(Line(f"{word.upper()} {iid}: label {rec.label}; query {it.query[:100]!r}; image {it.image}{source}"))
            out.append(Line(f"    response: {rec.response[:160]!r}"))
        if len(ids) > per_kind:
            out.append(Line(f"    (+{len(ids) - per_kind} more {word}: see --junitxml or --vsc-json)"))
    return out


def gate_lines(text: str, passed: bool) -> list[Line]:
    """The gate's table: its verdict line red (not passed) or green, and bold."""
    out = []
    for line in text.splitlines():
        verdict = line.startswith("gate ")
        out.append(Line(line, {"red": verdict and not passed, "green": verdict and passed, "bold": verdict}))
    return out
