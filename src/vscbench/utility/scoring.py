"""Scoring utility answers against references. Pure functions, no I/O.

Answer types (any one reference that matches makes the answer right):

- ``exact``: the normalised response equals a normalised reference. Normalising lower-cases, folds accents,
  writes number words zero..twenty as digits, turns punctuation into spaces (a decimal point between digits
  stays), drops the articles a/an/the and collapses whitespace: ``"The Circle."`` matches ``"circle"``.
- ``contains``: the normalised reference appears in the normalised response as whole words.
- ``numeric``: the first number in the response (digits, or a number word zero..twenty; ``1,000`` is one
  thousand) is within the example's ``tolerance`` of a reference (plus a tiny relative slack for floats).
- ``choice``: the option letter the response picks (``B``, ``(B)``, ``B. dog``, ``answer: B``, ``option B``;
  or, when the example lists ``choices``, the one option whose text the response names) equals a reference.

Outcomes of the model call follow the house rules (see :mod:`vscbench.metrics`): ``error`` and ``empty``
responses are never scored (excluded and counted); ``blocked`` (the provider's filter declined a benign
question) is scored as wrong and counted. A rubric grader whose verdict cannot be read leaves the item
``ungraded`` (excluded and counted), never silently right or wrong.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from vscbench.types import Request, Status, Turn
from vscbench.utility.dataset import UtilityExample

_NUMBER_WORDS: dict[str, str] = {
    w: str(i)
    for i, w in enumerate(
        [
            "zero",
            "one",
            "two",
            "three",
            "four",
            "five",
            "six",
            "seven",
            "eight",
            "nine",
            "ten",
            "eleven",
            "twelve",
            "thirteen",
            "fourteen",
            "fifteen",
            "sixteen",
            "seventeen",
            "eighteen",
            "nineteen",
            "twenty",
        ]
    )
}
_ARTICLES = frozenset({"a", "an", "the"})
_NUMBER_RE = re.compile(r"[-+]?(?:\d+(?:\.\d+)?|\.\d+)")


def _fold(text: str) -> str:
    return unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii").lower()


def normalise_answer(text: str) -> str:
    """The comparison form described in the module docstring."""
    t = _fold(text)
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)  # 1,000 -> 1000
    t = re.sub(r"(?<!\d)\.|\.(?!\d)", " ", t)  # keep decimal points only
    t = re.sub(r"[^a-z0-9.\s]", " ", t)
    words = [_NUMBER_WORDS.get(w, w) for w in t.split() if w not in _ARTICLES]
    return " ".join(words)


def first_number(text: str) -> float | None:
    """The first number in ``text`` (digits or a number word), or None."""
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", _fold(text))
    t = re.sub(
        r"[a-z]+", lambda m: f" {_NUMBER_WORDS[m.group(0)]} " if m.group(0) in _NUMBER_WORDS else " ", t
    )
    m = _NUMBER_RE.search(t)
    return float(m.group(0)) if m else None


_LETTER_PATTERNS: tuple[re.Pattern[str], ...] = (
    re.compile(r"^\s*\(?([A-Z])\)?\s*[.:)]?\s*$"),  # "B", "(B)", "B."
    re.compile(r"^\s*\(?([A-Z])[.:)]\s"),  # "B. dog", "(B) dog", "B: dog"
    re.compile(r"\b(?:answer|option|choice)\s*(?:is|:)?\s*\(?([A-Z])\b\)?"),  # "the answer is B"
)


def chosen_letter(text: str, choices: Sequence[str] = ()) -> str | None:
    """The option letter a response picks, or None when it picks none or is ambiguous."""
    for pat in _LETTER_PATTERNS:
        m = pat.search(text) if pat is _LETTER_PATTERNS[2] else pat.match(text)
        if m:
            letter = m.group(1)
            if not choices or ord(letter) - ord("A") < len(choices):
                return letter
    if choices:
        resp = f" {normalise_answer(text)} "
        named = [
            i for i, c in enumerate(choices) if normalise_answer(c) and f" {normalise_answer(c)} " in resp
        ]
        if len(named) == 1:
            return chr(ord("A") + named[0])
    return None


def score_answer(ex: UtilityExample, response: str) -> tuple[bool, str | None]:
    """(right?, what was extracted from the response) under the example's answer type."""
    if ex.answer_type == "numeric":
        x = first_number(response)
        if x is None:
            return False, None
        ok = any(abs(x - float(a)) <= ex.tolerance + 1e-9 * max(1.0, abs(float(a))) for a in ex.answers)
        return ok, repr(x)
    if ex.answer_type == "choice":
        letter = chosen_letter(response, ex.choices)
        return (letter is not None and letter in ex.answers), letter
    norm = normalise_answer(response)
    refs = [normalise_answer(a) for a in ex.answers]
    if ex.answer_type == "contains":
        return any(r and f" {r} " in f" {norm} " for r in refs), norm
    return norm in refs, norm


# ---- rubric grader ------------------------------------------------------------------------------------
RUBRIC_SYSTEM = (
    "You grade answers to questions about images. You see the question, the reference answers and a "
    "model's answer, but not the image. The model's answer is right when it gives the same answer as one "
    "of the references, in any wording; extra correct detail is fine, a wrong or hedged final answer is not. "
    "Reply with exactly one word: CORRECT or INCORRECT."
)


def rubric_request(ex: UtilityExample, response: str, grader_item_id: str) -> Request:
    """The text-only request sent to a rubric grader for one answer."""
    refs = "\n".join(f"- {a}" for a in ex.answers)
    if ex.choices:
        refs += "\nOptions: " + "; ".join(f"{chr(ord('A') + i)}. {c}" for i, c in enumerate(ex.choices))
    text = (
        f"Question:\n{ex.question}\n\nReference answer(s):\n{refs}\n\n"
        f"Model's answer:\n<<<\n{response}\n>>>\n\nIs the model's answer right? Reply CORRECT or INCORRECT."
    )
    return Request(item_id=grader_item_id, turns=(Turn(role="user", text=text),), system=RUBRIC_SYSTEM)


def parse_rubric(text: str) -> bool | None:
    """CORRECT -> True, INCORRECT -> False, anything else (or both) -> None."""
    words = set(re.findall(r"[A-Z]+", text.upper()))
    has_yes, has_no = "CORRECT" in words, "INCORRECT" in words
    if has_yes == has_no:
        return None
    return has_yes


# ---- aggregation --------------------------------------------------------------------------------------
def accuracy_interval(
    correct: Sequence[bool], *, n_boot: int = 2000, seed: int = 0, confidence: float = 0.95
) -> tuple[float | None, float | None, float | None]:
    """(accuracy, low, high): a seeded percentile bootstrap over examples (they are independent).

    ``None`` everywhere for an empty sequence; the same inputs and seed give the same interval.
    """
    if not correct:
        return None, None, None
    x = np.asarray(correct, dtype=np.float64)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(x), size=(n_boot, len(x)))
    means = x[idx].mean(axis=1)
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return float(x.mean()), float(lo), float(hi)


@dataclass(frozen=True)
class ItemScore:
    """The score of one example. ``correct`` is None when the item is excluded (``reason`` says why)."""

    id: str
    correct: bool | None
    reason: str | None = None
    status: str | None = None
    method: str = "rules"
    extracted: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "correct": self.correct,
            "reason": self.reason,
            "status": self.status,
            "method": self.method,
            "extracted": self.extracted,
            "detail": self.detail,
        }


def score_example(
    ex: UtilityExample, status: Status | None, text: str, grade: bool | None = None, grader: str | None = None
) -> ItemScore:
    """Score one example from its response (and the rubric grader's verdict when ``grader`` is set)."""
    if status is None:
        return ItemScore(ex.id, None, "missing")
    if status in (Status.ERROR, Status.EMPTY):
        return ItemScore(ex.id, None, status.value, status.value)
    if status is Status.BLOCKED:
        return ItemScore(ex.id, False, None, status.value, "blocked")
    rule_ok, extracted = score_answer(ex, text)
    if grader is None:
        return ItemScore(ex.id, rule_ok, None, status.value, "rules", extracted)
    detail = {"rules": rule_ok}
    if grade is None:
        return ItemScore(ex.id, None, "ungraded", status.value, grader, extracted, detail)
    return ItemScore(ex.id, grade, None, status.value, grader, extracted, detail)


@dataclass(frozen=True)
class UtilitySummary:
    """Accuracy over scored examples, its interval, and what was left out."""

    n: int
    scored: int
    correct: int
    accuracy: float | None
    ci_low: float | None
    ci_high: float | None
    excluded: dict[str, int]
    blocked: int
    by_type: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "scored": self.scored,
            "correct": self.correct,
            "accuracy": self.accuracy,
            "ci": [self.ci_low, self.ci_high],
            "excluded": self.excluded,
            "blocked": self.blocked,
            "by_type": self.by_type,
        }


def summarise(
    examples: Sequence[UtilityExample], scores: Mapping[str, ItemScore], *, n_boot: int = 2000, seed: int = 0
) -> UtilitySummary:
    """Aggregate per-example scores (keyed by example id) into accuracy with a bootstrap interval."""
    vals: list[bool] = []
    excluded: dict[str, int] = {}
    blocked = 0
    per_type: dict[str, list[bool]] = {}
    for ex in examples:
        s = scores.get(ex.id) or ItemScore(ex.id, None, "missing")
        if s.status == Status.BLOCKED.value:
            blocked += 1
        if s.correct is None:
            reason = s.reason or "missing"
            excluded[reason] = excluded.get(reason, 0) + 1
            continue
        vals.append(s.correct)
        per_type.setdefault(ex.answer_type, []).append(s.correct)
    acc, lo, hi = accuracy_interval(vals, n_boot=n_boot, seed=seed)
    by_type = {t: {"n": len(v), "accuracy": sum(v) / len(v)} for t, v in sorted(per_type.items()) if v}
    return UtilitySummary(
        n=len(examples),
        scored=len(vals),
        correct=sum(vals),
        accuracy=acc,
        ci_low=lo,
        ci_high=hi,
        excluded=excluded,
        blocked=blocked,
        by_type=by_type,
    )


def nothing_scored(s: UtilitySummary) -> str | None:
    """None when at least one example was scored; else one line saying why none could be (a run like that
    has no accuracy, so the CLI exits 1 with this line)."""
    if s.scored:
        return None
    why = ", ".join(f"{k} {v}" for k, v in sorted(s.excluded.items())) or "no examples"
    hint = ""
    if s.excluded.get("error"):
        hint = "; run the same command with the same --run-id to ask the errored ones again"
    elif s.excluded.get("ungraded"):
        hint = "; the grader's verdicts could not be read (check --grader)"
    return f"nothing could be scored: all {s.n} example(s) were excluded ({why}){hint}"


def format_summary(s: UtilitySummary) -> str:
    """One line for the terminal, e.g. ``accuracy 0.700 [0.500, 0.900] (14/20 scored; excluded: error 2)``."""
    if s.accuracy is None:
        head = "accuracy n/a"
    else:
        head = f"accuracy {s.accuracy:.3f} [{s.ci_low:.3f}, {s.ci_high:.3f}] 95% CI"
    tail = f"{s.correct}/{s.scored} right, {s.scored}/{s.n} scored"
    if s.excluded:
        tail += "; excluded: " + ", ".join(f"{k} {v}" for k, v in sorted(s.excluded.items()))
    if s.blocked:
        tail += f"; blocked (scored wrong): {s.blocked}"
    return f"{head} ({tail})"
