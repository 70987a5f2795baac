"""A cascade of judges: a calibrated abstention passes a case on to the next judge (``local,rubric:…``).

The first stage judges every case. The cases it left UNJUDGED *because it abstained* (``detail["abstained"]``:
``local:abstain=L`` when its calibrated confidence is under L) go to the second stage, and so on; the last stage's
verdict stands, whatever it is. Invariants:

- only an abstention is passed on: a stage's failure (an UNJUDGED verdict with an ``error``, e.g. an API error
  of a rubric stage) is the final verdict, with its error; a failure is never scored as a label and never
  hidden behind another judge's answer;
- one verdict per case, in order, and ``on_verdict`` is called exactly once per case, with the final verdict,
  as soon as it is known (a case stage 1 is sure of is committed before stage 2 starts);
- the final verdict's detail is the deciding stage's detail plus ``by`` (that stage's id), ``stage`` (its
  1-based position) and ``stage1`` (the first stage's detail, e.g. ``p_safety_aware``); so the stored labels
  alone say how many cases each stage saw (:meth:`PassedOn.of_details`);
- ``id`` is the stages' ids joined by ``,`` (``local:abstain=0.7,rubric:openai/gpt-4o-mini``).

Names are parsed by :func:`vscbench.judges.factory.make_judge` (a name with commas is a cascade).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.judges.base import Case, Judge, OnVerdict, Verdict, judge_fingerprint
from vscbench.types import Label


def abstained(v: Verdict) -> bool:
    """True for a verdict that is UNJUDGED because its judge abstained (not because it failed)."""
    return v.label is Label.UNJUDGED and "abstained" in v.detail and "error" not in v.detail


@dataclass(frozen=True)
class PassedOn:
    """How many of ``judged`` cases reached each later stage of a cascade (the abstention rate)."""

    judged: int
    #: (stage id, cases that reached it) for the second stage on.
    to: tuple[tuple[str, int], ...]

    @classmethod
    def of_details(cls, stage_ids: Sequence[str], details: Iterable[Mapping[str, Any]]) -> PassedOn:
        """From a cascade's final verdict details (e.g. its stored labels): a case reached stage k when the
        stage that decided it is k or later."""
        stages: list[int] = []
        for d in details:
            s = d.get("stage", 1)
            stages.append(s if isinstance(s, int) else 1)
        # the stage at 0-based position k was reached by the cases decided at 1-based stage k + 1 or later
        return cls(
            len(stages), tuple((sid, sum(s > k for s in stages)) for k, sid in enumerate(stage_ids) if k > 0)
        )

    @property
    def rate(self) -> float | None:
        """The share passed on by the first stage (its abstention rate); None with nothing judged."""
        return self.to[0][1] / self.judged if self.judged and self.to else None

    def text(self) -> str:
        """``31/120 (25.8%) passed to rubric:openai/gpt-4o-mini`` (one part per later stage, ``; ``-joined)."""
        return "; ".join(
            f"{n}/{self.judged} ({n / self.judged:.1%}) passed to {sid}"
            if self.judged
            else f"0/0 passed to {sid} (nothing judged)"
            for sid, n in self.to
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "judged": self.judged,
            "rate": None if self.rate is None else round(self.rate, 4),
            "to": [
                {"judge": sid, "n": n, "rate": round(n / self.judged, 4) if self.judged else None}
                for sid, n in self.to
            ],
        }


class CascadeJudge:
    """Judges in order; a case goes on to the next stage only when the current one abstained (see the module
    docstring). Counts what it judged and passed on, for :meth:`describe`."""

    def __init__(self, stages: Sequence[Judge]) -> None:
        if len(stages) < 2:
            raise VscbenchError("a judge cascade needs at least two judges")
        self.stages: list[Judge] = list(stages)
        self.id = ",".join(s.id for s in self.stages)
        #: The stages' fingerprints (a stage without one by its id), when any stage has one.
        fps = [judge_fingerprint(s) for s in self.stages]
        self.fingerprint = (
            ",".join(f or s.id for f, s in zip(fps, self.stages, strict=True)) if any(fps) else None
        )
        #: Cases judged so far, and how many of them each stage has seen (``reached[0] == judged``).
        self.reached = [0] * len(self.stages)
        self.unjudged = 0

    @property
    def passed_on(self) -> PassedOn:
        """What this judge has judged and passed on so far (this process)."""
        return PassedOn(
            self.reached[0], tuple((s.id, n) for s, n in zip(self.stages[1:], self.reached[1:], strict=True))
        )

    def describe(self) -> dict[str, Any]:
        """``judge``, ``stages`` (each stage's own describe()), ``judged``, ``passed_on`` (judged, rate = the
        first stage's abstention rate, and per later stage the count and share that reached it) and
        ``unjudged`` (final verdicts still UNJUDGED: the last stage abstained or a stage failed)."""
        return {
            "judge": self.id,
            "stages": [
                dict(s.describe()) if hasattr(s, "describe") else {"judge": s.id} for s in self.stages
            ],
            "judged": self.reached[0],
            "passed_on": self.passed_on.to_dict(),
            "unjudged": self.unjudged,
        }

    def judge(self, cases: Sequence[Case], on_verdict: OnVerdict | None = None) -> list[Verdict]:
        final: list[Verdict | None] = [None] * len(cases)
        first: list[dict[str, Any]] = [{} for _ in cases]
        last = len(self.stages) - 1

        def settle(i: int, k: int, v: Verdict) -> None:
            """Stage ``k``'s verdict on case ``i``: final unless it is an abstention with a stage left."""
            if k == 0:
                first[i] = dict(v.detail)
            if final[i] is not None or (k < last and abstained(v)):
                return
            detail = dict(v.detail) | {"by": self.stages[k].id, "stage": k + 1, "stage1": first[i]}
            final[i] = out = Verdict(v.label, detail)
            if out.label is Label.UNJUDGED:
                self.unjudged += 1
            if on_verdict is not None:
                on_verdict(cases[i], out)

        def run_stage(k: int, todo: list[int]) -> list[int]:
            """Stage ``k`` judges cases ``todo``; returns the ones it abstained on (for the next stage)."""
            stage = self.stages[k]
            self.reached[k] += len(todo)
            # fresh copies: a stage reports a case by the object it was given, so each index has its own
            sub = [replace(cases[i]) for i in todo]
            where = {id(c): i for c, i in zip(sub, todo, strict=True)}
            verdicts = stage.judge(sub, lambda c, v: settle(where[id(c)], k, v))
            if len(verdicts) != len(sub):
                raise VscbenchError(f"judge {stage.id} gave {len(verdicts)} verdicts for {len(sub)} cases")
            for i, v in zip(todo, verdicts, strict=True):
                settle(i, k, v)  # a no-op for a case its callback already settled
            return [i for i, v in zip(todo, verdicts, strict=True) if final[i] is None and abstained(v)]

        todo = list(range(len(cases)))
        for k in range(len(self.stages)):
            if not todo:
                break
            todo = run_stage(k, todo)
        out = [v for v in final if v is not None]
        assert len(out) == len(cases)
        return out


def passed_on_text(
    judge: object, store: str | Path | None, run_id: str | None, item_ids: Iterable[str]
) -> str:
    """For a cascade: how many of the stored labels of ``item_ids`` in ``run_id`` were passed on, as
    :meth:`PassedOn.text` (read from the store, so it counts every labelled case, judged in this process or
    not); ``""`` for any other judge or without a run."""
    if not isinstance(judge, CascadeJudge) or run_id is None:
        return ""
    from vscbench.store import Store

    with Store(store, create=False) as st:
        labels = st.labels(run_id, judge.id)
    wanted = set(item_ids)
    details = [lab.detail for iid, lab in labels.items() if iid in wanted]
    return PassedOn.of_details([s.id for s in judge.stages], details).text()
