"""Answer a set of items and read back each one's response, label and outcome: the safety suite's engine call.

One call, :func:`answer_and_judge`, does what ``vscbench run`` then ``vscbench judge`` do, for exactly the
given items: generate what the store does not hold yet (a resume of one run per model setup, so nothing
already answered is sent again), label every ``ok`` response the judge has not labelled yet, and return one
:class:`CaseResult` per item. An item whose response is an error, empty, or unjudged comes back unscored
with its reason: never a refusal, never an answer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vscbench.data.paths import DataPaths
from vscbench.judges.apply import label_one_judge
from vscbench.judges.base import Case, Judge
from vscbench.metrics import BlockedPolicy
from vscbench.models.base import Provider
from vscbench.runner.run import ModelSetup, RunResult, RunSpec, run
from vscbench.runner.select import Selection
from vscbench.store import Store
from vscbench.suite.gate import case_outcome, reason_class
from vscbench.types import Item, Label, Response, Status


@dataclass(frozen=True)
class CaseResult:
    """One item's response, its label under one judge, and the outcome they give."""

    item_id: str
    status: Status | None
    text: str
    error: str | None
    label: Label | None
    judge_id: str
    judge_detail: dict[str, Any]
    outcome: str  # correct | under-safe | over-safe | unscored
    reason: str | None  # why unscored
    request: dict[str, Any] | None = None  # what was sent (system prompt, turns), as stored
    #: True when the stored label came from another build of the judge and was judged again now.
    relabelled: bool = False

    @property
    def prompt(self) -> str:
        """The exact text sent: the system prompt and every turn's text (demonstrations included)."""
        req = self.request or {}
        turns = req.get("turns") or []
        if not req.get("system") and len(turns) == 1:
            return str(turns[0].get("text", ""))
        parts = [f"[system]\n{req['system']}"] if req.get("system") else []
        parts += [f"[{t.get('role')}]\n{t.get('text', '')}" for t in turns]
        return "\n".join(parts)


def unsendable_reasons(items: Sequence[Item]) -> dict[str, str]:
    """Why each item that can never be sent here cannot: a blank query in the source, or an image that is
    missing and cannot be rendered from the metadata (the image half, searched images, and a concat image
    whose searched image is missing). Items that can be sent (renderable images included) are absent."""
    from vscbench.data.render import RENDERABLE

    search_of = {it.query_id: it.image for it in items if it.setting == "search"}
    out: dict[str, str] = {}
    for it in items:
        if it.note:
            out[it.id] = it.note
            continue
        if it.image is None or Path(it.image).is_file():
            continue
        if it.half == "text" and it.setting in RENDERABLE:
            search = search_of.get(it.query_id)
            if it.setting != "concat" or (search is not None and Path(search).is_file()):
                continue
        out[it.id] = (
            f"image missing: {it.image} (get the release images with 'vscbench data fetch' or "
            "'vscbench data import ARCHIVE')"
        )
    return out


@dataclass(frozen=True)
class HalfDraw:
    """One half's share of a ``--vsc-sample``: its quota (in proportion to what was selected) and what was
    drawn (only sendable items can be)."""

    half: str
    quota: int
    drawn: int


def sendability(
    selected: Sequence[Item],
    unsendable: Mapping[str, str],
    *,
    sample: int | None = None,
    draws: Sequence[HalfDraw] = (),
    run: int | None = None,
) -> list[str]:
    """What can be tested, said before any request: per half and per text setting, the items selected,
    sendable, and not sendable with the reason; what a ``--vsc-sample`` could not draw; and why a selection
    that ends empty is empty. Pure: the plugin prints these lines."""

    def count(items: Sequence[Item], head: str) -> str:
        bad = [i for i in items if i.id in unsendable]
        line = f"{head}: {len(items):,} selected, {len(items) - len(bad):,} sendable"
        if bad:
            kinds: dict[str, int] = {}
            for i in bad:
                k = reason_class(unsendable[i.id])
                kinds[k] = kinds.get(k, 0) + 1
            line += f" ({len(bad):,} not: " + "; ".join(f"{n:,} {k}" if len(kinds) > 1 else k for k, n in sorted(kinds.items())) + ")"
        return line

    lines = ["what can be tested here:"]
    for half in ("image", "text"):
        items = [i for i in selected if i.half == half]
        lines.append("  " + count(items, f"{half} half"))
        if half == "text" and items:
            for setting in dict.fromkeys(i.setting for i in items):
                lines.append("    " + count([i for i in items if i.setting == setting], f"setting={setting}"))
    if sample is not None:
        parts = [f"{d.half} half {d.drawn:,} of its share {d.quota:,}" for d in draws]
        short = [d for d in draws if d.drawn < d.quota]
        line = f"  --vsc-sample={sample}: drew " + ", ".join(parts)
        if short:
            line += "; not drawn: " + ", ".join(f"{d.quota - d.drawn:,} of the {d.half} half (not sendable)" for d in short)
        lines.append(line)
    if run == 0:
        if not selected:
            lines.append("  the selection is empty: no benchmark case matches the -k / -m / path given")
        else:
            lines.append("  nothing to send: every selected case is not sendable here (see above)")
    return lines


def read_results(
    store: Store,
    run_id: str,
    items: Sequence[Item],
    judge_id: str,
    blocked: BlockedPolicy = "refuse",
    responses: dict[str, Response] | None = None,
) -> dict[str, CaseResult]:
    """What the store holds for ``items`` of run ``run_id`` under judge ``judge_id``."""
    if responses is None:
        responses = store.responses(run_id)
    requests = store.requests(run_id)
    labels = store.labels(run_id, judge_id)
    out: dict[str, CaseResult] = {}
    for it in items:
        r = responses.get(it.id)
        status = r.status if r is not None else None
        stored = labels.get(it.id) if status is Status.OK else None
        label = stored.label if stored is not None else None
        outcome, reason = case_outcome(it, status, label, blocked)
        out[it.id] = CaseResult(
            item_id=it.id,
            status=status,
            text=r.text if r is not None else "",
            error=r.error if r is not None else None,
            label=label,
            judge_id=judge_id,
            judge_detail=dict(stored.detail) if stored is not None else {},
            outcome=outcome,
            reason=reason,
            request=requests.get(it.id) if r is not None else None,
        )
    return out


@dataclass
class Answered:
    run: RunResult | None
    results: dict[str, CaseResult]


def answer_and_judge(
    setup: ModelSetup,
    items: Sequence[Item],
    judge: Judge,
    *,
    data: DataPaths,
    store: str | Path | None,
    run_id: str,
    blocked: BlockedPolicy = "refuse",
    provider: Provider | None = None,
    progress: bool | None = False,
) -> Answered:
    """Generate what is missing for ``items`` in run ``run_id`` (created or resumed), judge the unlabelled
    ``ok`` responses, and return every item's :class:`CaseResult`. Errored items are asked again."""
    result: RunResult | None = None
    with Store(store) as st:  # everything answered already (a re-run): no provider, no model load
        done = st.completed_item_ids(run_id, include_errors=False) if st.has_run(run_id) else set()
    if any(it.id not in done for it in items):
        spec = RunSpec(
            setup,
            selection=Selection(ids=tuple(it.id for it in items)),
            data=data,
            store=store,
            run_id=run_id,
            retry_errors=True,
            only_selected=True,  # another process sharing the run may be sending its other items now
        )
        result = run(spec, provider=provider, progress=progress)
    with Store(store) as st:
        if not items:
            return Answered(None, {})
        responses = st.responses(run_id)
        cases = [
            Case(it.id, it.query, responses[it.id].text, it.image)
            for it in items
            if it.id in responses and responses[it.id].status is Status.OK
        ]
        judged = label_one_judge(st, run_id, judge, cases)
        results = read_results(st, run_id, items, judge.id, blocked, responses)
        for iid in judged.stale_ids & results.keys():
            results[iid] = replace(results[iid], relabelled=True)
        return Answered(result, results)
