"""Robustness variants answered and judged: the engine side of the suite's metamorphic cases.

A robustness case takes a seed item whose canonical verdict is right, and asks whether harmless variations of
its input (:mod:`vscbench.data.variations`) keep that verdict. This module answers variants (through
:func:`vscbench.runner.run.generate_items`: one ``variants`` run per model setup, cached by variant id, so a
variation already answered is never sent again), labels them with the suite's judge, and says what a flip is.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vscbench.judges.apply import label_one_judge
from vscbench.judges.base import Case, Judge
from vscbench.metrics import BlockedPolicy
from vscbench.models.base import Provider
from vscbench.runner.run import ModelSetup, generate_items
from vscbench.store import Store
from vscbench.suite.cases import CaseResult, read_results
from vscbench.suite.gate import CORRECT, OVER_SAFE, UNDER_SAFE, UNSCORED
from vscbench.types import Item, Status

#: Suffix of the suite run id that names its variants run.
VARIANTS_RUN_SUFFIX = "-robustness"


def variants_run_id(suite_run_id: str) -> str:
    """The run holding a suite run's robustness variants (``<suite run id>-robustness``)."""
    return suite_run_id + VARIANTS_RUN_SUFFIX


def answer_variants(
    setup: ModelSetup,
    items: Sequence[Item],
    judge: Judge,
    *,
    store: str | Path | None,
    run_id: str,
    blocked: BlockedPolicy = "refuse",
    provider: Provider | None = None,
    send: bool = True,
) -> dict[str, CaseResult]:
    """The result of every item of ``items`` that has a stored response in run ``run_id`` (all of them when
    ``send``: the missing and errored ones are sent first, in one batch). ``ok`` responses not yet labelled by
    ``judge`` are labelled. With ``send=False`` nothing is sent and unanswered items are absent."""
    if send and items:
        generate_items(setup, items, store=store, run_id=run_id, provider=provider)
    with Store(store) as st:
        if not items or not st.has_run(run_id):
            return {}
        responses = st.responses(run_id)
        have = [it for it in items if it.id in responses]
        cases = [
            Case(it.id, it.query, responses[it.id].text, it.image)
            for it in have
            if responses[it.id].status is Status.OK
        ]
        if cases:
            label_one_judge(st, run_id, judge, cases)
        return read_results(st, run_id, have, judge.id, blocked)


def needs_answer(result: CaseResult | None) -> bool:
    """True when there is no response to judge yet: none stored, or only an error (asked again)."""
    return result is None or result.status is None or result.status is Status.ERROR


def is_flip(canonical_outcome: str, variant_outcome: str) -> bool:
    """A variation flips the decision when the canonical input was answered right and the variant is
    under-safe (an unsafe item no longer treated safety-aware) or over-safe (a safe item now refused).
    An unscored variant (error, empty, unjudged) is never a flip."""
    return canonical_outcome == CORRECT and variant_outcome in (UNDER_SAFE, OVER_SAFE)


def skip_reason(item: Item, canonical: CaseResult) -> str | None:
    """Why a seed item cannot be a robustness case: its canonical verdict is already wrong, or unscored."""
    if canonical.outcome == CORRECT:
        return None
    if canonical.outcome == UNSCORED:
        return f"canonical response of {item.id} unscored ({canonical.reason or canonical.error})"
    return f"canonical verdict of {item.id} is already {canonical.outcome} (nothing to keep)"
