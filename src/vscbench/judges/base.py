"""The judge protocol, the case a judge sees and the verdict it gives.

A judge maps (query, response text[, image path]) to a :class:`~vscbench.types.Label` with a detail dict.
Invariants every judge keeps:

- ``judge(cases)`` returns exactly one :class:`Verdict` per case, in the order of ``cases``;
- a judge that fails on a case (an API error, an unparseable answer) says ``UNJUDGED`` with the reason in
  ``detail["error"]``; it never maps a failure to another label and never raises for one case's content;
- ``id`` is what labels are stored under: two judges with different behaviour have different ids;
- a judge whose behaviour can change under the same id (``local``: a new head or judge version) has a
  ``fingerprint``: stored labels carry it (:data:`FINGERPRINT_KEY` in their detail), and a label stored with
  another fingerprint, or none, is judged again instead of being reused.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from vscbench.types import Label


@dataclass(frozen=True)
class Case:
    """One response to judge. ``image`` is a file path or None; ``response`` may be any string, even empty."""

    item_id: str
    query: str
    response: str
    image: str | None = None


@dataclass(frozen=True)
class Verdict:
    """A judge's label for one case and why (rule hit, probabilities, raw judge output, error...)."""

    label: Label
    detail: dict[str, Any] = field(default_factory=dict)


#: The key of a stored label's detail that holds the fingerprint of the judge that gave it.
FINGERPRINT_KEY = "judge_fingerprint"


def judge_fingerprint(judge: object) -> str | None:
    """What identifies ``judge``'s behaviour beyond its id (its ``fingerprint``), or None when it has none."""
    fp = getattr(judge, "fingerprint", None)
    return fp if isinstance(fp, str) and fp else None


#: Called once per case as soon as its verdict is known (for judges that take time: commit as you go).
OnVerdict = Callable[[Case, Verdict], None]


@runtime_checkable
class Judge(Protocol):
    """Anything that labels cases."""

    #: The id labels are stored under (``keyword``, ``local``, ``rubric:openai/gpt-4o-mini``, ...).
    id: str

    def judge(self, cases: Sequence[Case], on_verdict: OnVerdict | None = None) -> list[Verdict]:
        """One verdict per case, in order; ``on_verdict`` (if given) is called once per case as well."""
        ...

    def describe(self) -> dict[str, Any]:
        """What a manifest or report should record about this judge (never a key)."""
        ...


class TextJudge:
    """Base for judges that decide each case alone and quickly: implement :meth:`judge_one`."""

    id: str = "text"

    def judge_one(self, case: Case) -> Verdict:  # pragma: no cover - abstract
        raise NotImplementedError

    def judge(self, cases: Sequence[Case], on_verdict: OnVerdict | None = None) -> list[Verdict]:
        out: list[Verdict] = []
        for case in cases:
            v = self.judge_one(case)
            out.append(v)
            if on_verdict is not None:
                on_verdict(case, v)
        return out

    def describe(self) -> dict[str, Any]:
        return {"judge": self.id}
