"""Utility sets: JSONL validation, answer scoring, the bootstrap interval, the synthetic generator."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from vscbench.data.synthetic import tiny_image_bytes
from vscbench.errors import VscbenchError
from vscbench.types import Status
from vscbench.utility.dataset import (
    UtilityExample,
    examples_jsonl,
    fingerprint,
    load_examples,
    read_examples_jsonl,
    to_item,
)
from vscbench.utility.scoring import (
    ItemScore,
    accuracy_interval,
    chosen_letter,
    first_number,
    format_summary,
    normalise_answer,
    parse_rubric,
    score_answer,
    score_example,
    summarise,
)
from vscbench.utility.synthetic import KINDS, make_synthetic


def _write(tmp: Path, lines: list[object]) -> Path:
    p = tmp / "set.jsonl"
    p.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return p


GOOD = {"id": "q1", "question": "How many?", "answers": [3], "answer_type": "numeric"}


# ---- dataset ----------------------------------------------------------------------------------------
def test_load_valid_lines(tmp_path: Path) -> None:
    (tmp_path / "im").mkdir()
    png = tiny_image_bytes("PNG")  # a real image: load checks the file is one
    (tmp_path / "im" / "a.png").write_bytes(png)
    p = _write(
        tmp_path,
        [
            GOOD,
            "",
            {"id": 7, "image": "im/a.png", "question": "Colour?", "answers": ["Red"], "category": "colour"},
            {"id": "c", "question": "Pick", "answers": ["b"], "answer_type": "choice", "choices": ["x", "y"]},
        ],
    )
    exs = load_examples(p)
    assert [e.id for e in exs] == ["q1", "7", "c"]
    assert exs[0].answers == ("3",) and exs[0].answer_type == "numeric" and exs[0].image is None
    assert exs[1].answer_type == "exact" and exs[1].image == str((tmp_path / "im" / "a.png").resolve())
    assert exs[1].line == 3 and exs[1].meta == {"category": "colour"}
    assert exs[2].answers == ("B",) and exs[2].choices == ("x", "y")
    item = to_item(exs[1])
    assert (item.id, item.half, item.label, item.setting, item.row) == ("u/7", "image", "safe", "utility", 3)
    assert to_item(exs[0]).half == "text"
    # the stored copy round-trips, and the fingerprint sees references and image bytes
    assert read_examples_jsonl(examples_jsonl(exs)) == exs
    fp = fingerprint(exs)
    (tmp_path / "im" / "a.png").write_bytes(png + b"X")
    assert fingerprint(exs) != fp


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object"),
        ({**GOOD, "id": ""}, "'id'"),
        ({**GOOD, "question": "  "}, "'question'"),
        ({**GOOD, "answers": []}, "'answers' must be a non-empty list"),
        ({**GOOD, "answers": "3"}, "'answers' must be a non-empty list"),
        ({**GOOD, "answer_type": "fuzzy"}, "'answer_type' must be one of"),
        ({**GOOD, "answers": ["three"]}, "numeric answer 'three' is not a number"),
        ({**GOOD, "tolerance": -1}, "'tolerance'"),
        ({**GOOD, "answer_type": "exact", "tolerance": 1}, "only applies to answer_type numeric"),
        ({**GOOD, "answer_type": "choice", "answers": ["C"], "choices": ["a", "b"]}, "option letter (A-B)"),
        ({**GOOD, "image": "nope.png"}, "nope.png not found"),
    ],
)
def test_bad_lines_name_the_line(tmp_path: Path, line: object, fragment: str) -> None:
    p = _write(tmp_path, [GOOD | {"id": "first"}, line])
    with pytest.raises(VscbenchError) as e:
        load_examples(p)
    msg = str(e.value)
    assert msg.startswith(f"{p}:2: ") and fragment in msg and "\n" not in msg


def test_duplicate_ids_and_empty_files(tmp_path: Path) -> None:
    with pytest.raises(VscbenchError, match=r":3: duplicate id 'q1' \(first on line 1\)"):
        load_examples(_write(tmp_path, [GOOD, "", GOOD]))
    with pytest.raises(VscbenchError, match="no examples"):
        load_examples(_write(tmp_path, ["", ""]))
    with pytest.raises(VscbenchError, match="not found"):
        load_examples(tmp_path / "missing.jsonl")


# ---- scoring ----------------------------------------------------------------------------------------
def _ex(answers: list[str], atype: str = "exact", **kw: object) -> UtilityExample:
    return UtilityExample(id="e", question="q", answers=tuple(answers), answer_type=atype, **kw)  # type: ignore[arg-type]


def test_normalise_answer() -> None:
    assert normalise_answer("  The Circle. ") == "circle"
    assert normalise_answer("Three apples!") == "3 apples"
    assert normalise_answer("3.5 kg, roughly") == "3.5 kg roughly"
    assert normalise_answer("Café") == "cafe"
    assert normalise_answer("1,000") == "1000"


@pytest.mark.parametrize(
    ("ex", "response", "right"),
    [
        (_ex(["circle"]), "Circle.", True),
        (_ex(["circle"]), "A circle", True),
        (_ex(["circle"]), "It is a circle.", False),
        (_ex(["circle", "round"]), "round", True),
        (_ex(["circle"], "contains"), "It is a circle.", True),
        (_ex(["red"], "contains"), "It is reddish.", False),
        (_ex(["new york"], "contains"), "In New York, probably.", True),
        (_ex(["4"], "numeric"), "There are four squares.", True),
        (_ex(["4"], "numeric"), "4.", True),
        (_ex(["4"], "numeric"), "I count 5, not 4.", False),
        (_ex(["4"], "numeric"), "I can't tell.", False),
        (_ex(["2.5"], "numeric", tolerance=0.1), "about 2.58 m", True),
        (_ex(["2.5"], "numeric"), "about 2.58 m", False),
        (_ex(["1000"], "numeric"), "1,000 people", True),
        (_ex(["-3"], "numeric"), "-3 degrees", True),
        (_ex(["B"], "choice"), "B", True),
        (_ex(["B"], "choice"), "(B) square", True),
        (_ex(["B"], "choice"), "B. square", True),
        (_ex(["B"], "choice"), "The answer is B.", True),
        (_ex(["B"], "choice"), "A", False),
        (_ex(["B"], "choice", choices=("circle", "square")), "It is a square.", True),
        (_ex(["B"], "choice", choices=("circle", "square")), "circle or square", False),
    ],
)
def test_score_answer(ex: UtilityExample, response: str, right: bool) -> None:
    assert score_answer(ex, response)[0] is right


def test_helpers() -> None:
    assert first_number("twelve eggs and 3 cups") == 12.0
    assert first_number("none") is None
    assert chosen_letter("A cat sits there.") is None  # an article is not an option
    assert chosen_letter("C", choices=("x", "y")) is None  # out of range
    assert parse_rubric("CORRECT") is True
    assert parse_rubric("Verdict: incorrect.") is False
    assert parse_rubric("CORRECT or INCORRECT?") is None
    assert parse_rubric("maybe") is None


def test_outcomes_follow_the_house_rules() -> None:
    ex = _ex(["4"], "numeric")
    assert score_example(ex, Status.OK, "4").correct is True
    assert score_example(ex, Status.ERROR, "").correct is None
    assert score_example(ex, Status.EMPTY, "").reason == "empty"
    assert score_example(ex, None, "").reason == "missing"
    assert score_example(ex, Status.BLOCKED, "").correct is False
    graded = score_example(ex, Status.OK, "4", grade=False, grader="rubric:x")
    assert graded.correct is False and graded.detail == {"rules": True}
    assert score_example(ex, Status.OK, "4", grade=None, grader="rubric:x").reason == "ungraded"


def test_accuracy_interval() -> None:
    vals = [True] * 7 + [False] * 3
    acc, lo, hi = accuracy_interval(vals, seed=1)
    assert acc == pytest.approx(0.7)
    assert lo is not None and hi is not None and lo < 0.7 < hi and lo >= 0.0 and hi <= 1.0
    assert accuracy_interval(vals, seed=1) == (acc, lo, hi)
    assert accuracy_interval([]) == (None, None, None)
    assert accuracy_interval([True, True]) == (1.0, 1.0, 1.0)


def test_summarise_excludes_errors_and_counts_them() -> None:
    exs = [UtilityExample(id=str(i), question="q", answers=("1",)) for i in range(5)]
    scores = {
        "0": ItemScore("0", True, status="ok"),
        "1": ItemScore("1", False, status="ok"),
        "2": ItemScore("2", None, "error", "error"),
        "3": ItemScore("3", False, None, "blocked", "blocked"),
    }
    s = summarise(exs, scores)
    assert (s.n, s.scored, s.correct, s.blocked) == (5, 3, 1, 1)
    assert s.accuracy == pytest.approx(1 / 3)
    assert s.excluded == {"error": 1, "missing": 1}
    line = format_summary(s)
    assert line.startswith("accuracy 0.333 [") and "excluded: error 1, missing 1" in line


# ---- synthetic --------------------------------------------------------------------------------------
def _digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(root).as_posix().encode() + p.read_bytes())
    return h.hexdigest()


def test_synthetic_is_valid_balanced_and_deterministic(tmp_path: Path) -> None:
    a = make_synthetic(tmp_path / "a", 15, seed=4)
    b = make_synthetic(tmp_path / "b", 15, seed=4)
    c = make_synthetic(tmp_path / "c", 15, seed=5)
    assert _digest(a.parent) == _digest(b.parent) != _digest(c.parent)
    exs = load_examples(a)
    assert len(exs) == 15 and all(e.image and Path(e.image).is_file() for e in exs)
    kinds = [e.meta["kind"] for e in exs]
    assert all(kinds.count(k) == 3 for k in KINDS)
    for e in exs:
        # the reference answer scores as right under its own type; a wrong answer does not
        right = e.answers[0]
        assert score_answer(e, right)[0]
        assert not score_answer(e, "zzz")[0]
    shape = next(e for e in exs if e.meta["kind"] == "shape")
    assert score_answer(shape, shape.choices[ord(shape.answers[0]) - ord("A")])[0]
    with pytest.raises(VscbenchError, match="--n"):
        make_synthetic(tmp_path / "d", 0)


def test_synthetic_counts_are_drawn() -> None:
    """The count images hold exactly the number of shapes the answer says (connected components)."""
    import random

    import numpy as np

    from vscbench.utility.synthetic import _example

    ndimage = pytest.importorskip("scipy.ndimage")
    rng = random.Random(0)
    for _ in range(6):
        img, fields = _example("count", rng)
        mask = (np.asarray(img.convert("L")) < 250).astype(np.uint8)
        _, n = ndimage.label(mask)
        assert n == int(fields["answers"][0])
