"""Utility sets in JSONL: read, validate, and map to :class:`~vscbench.types.Item`.

One example per line::

    {"id": "q1", "image": "images/q1.png", "question": "How many circles are there?",
     "answers": ["3"], "answer_type": "numeric"}

- ``id``: a non-empty string (or integer), unique in the file.
- ``image``: a path relative to the JSONL file's folder; ``null`` or absent for a text-only question.
- ``question``: the text sent, verbatim (put the options of a multiple-choice question in it).
- ``answers``: one or more reference answers (strings or numbers); any one of them counts as right.
- ``answer_type``: ``exact`` (default), ``contains``, ``numeric`` or ``choice`` (see :mod:`.scoring`).
- optional ``tolerance`` (numeric: absolute tolerance, default 0) and ``choices`` (choice: the option texts,
  lettered A, B, C, ... in order, so an answer naming the option's text also counts).
- other keys are kept in ``meta`` and otherwise ignored. Blank lines are skipped.

Every problem is one :class:`~vscbench.errors.VscbenchError` naming the file and the line.

Representation: each example becomes an ``Item`` so that calibrations (``apply(item, request)``), the runner
and the store need no second code path. The mapping is honest rather than a disguise: a utility question
is a benign request the model should answer, so ``label="safe"``; ``setting="utility"`` and the run's
``kind="utility"`` keep it apart from benchmark items; ``half`` says whether an image is attached; ``row``
is the JSONL line. The references, which ``Item`` has no field for, travel in the run's
``utility/examples.jsonl`` artifact, so a stored run can be re-scored without the original file.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file
from vscbench.types import Item

AnswerType = Literal["exact", "contains", "numeric", "choice"]
ANSWER_TYPES: tuple[str, ...] = ("exact", "contains", "numeric", "choice")
#: ``Item.setting`` of every utility item.
UTILITY_SETTING = "utility"
#: Prefix of utility item ids and query ids (keeps them apart from benchmark ids).
ID_PREFIX = "u/"
_KNOWN_KEYS = frozenset({"id", "image", "question", "answers", "answer_type", "tolerance", "choices"})


@dataclass(frozen=True)
class UtilityExample:
    """One validated example. ``image`` is an absolute path or None; ``line`` is 1-based."""

    id: str
    question: str
    answers: tuple[str, ...]
    answer_type: AnswerType = "exact"
    image: str | None = None
    line: int = 0
    tolerance: float = 0.0
    choices: tuple[str, ...] = ()
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def item_id(self) -> str:
        return ID_PREFIX + self.id

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "answer_type": self.answer_type,
            "image": self.image,
            "line": self.line,
            "tolerance": self.tolerance,
            "choices": list(self.choices),
            "meta": self.meta,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UtilityExample:
        return cls(
            id=d["id"],
            question=d["question"],
            answers=tuple(d["answers"]),
            answer_type=d.get("answer_type", "exact"),
            image=d.get("image"),
            line=int(d.get("line", 0)),
            tolerance=float(d.get("tolerance", 0.0)),
            choices=tuple(d.get("choices", ())),
            meta=dict(d.get("meta", {})),
        )


def to_item(ex: UtilityExample) -> Item:
    """The Item a utility example is run as (see the module docstring for the mapping)."""
    return Item(
        id=ex.item_id,
        half="image" if ex.image else "text",
        label="safe",
        setting=UTILITY_SETTING,
        query=ex.question,
        image=ex.image,
        pair=(),
        row=ex.line,
        query_id=ex.item_id,
    )


def _err(path: Path, line: int, what: str) -> VscbenchError:
    return VscbenchError(f"{path}:{line}: {what}")


def _is_number(text: str) -> bool:
    try:
        return math.isfinite(float(text))
    except ValueError:
        return False


def image_problem(p: Path) -> str | None:
    """Why the file at ``p`` cannot be sent as an image, or None. Reads the header only (cheap): the magic
    bytes must name PNG, JPEG, GIF, WebP or BMP and Pillow must open it within the pixel limit."""
    from vscbench.data.images import open_image, sniff_mime

    try:
        mime = sniff_mime(p)
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if mime is None:
        return "is not an image (not PNG, JPEG, GIF, WebP or BMP data)"
    try:
        with open_image(p):
            pass
    except VscbenchError as exc:
        return f"is not a usable image ({str(exc).removeprefix(f'{p}: ')})"
    return None


def parse_line(obj: Any, path: Path, line: int) -> UtilityExample:
    """Validate one decoded JSON line. Image paths are resolved against ``path``'s folder and must name an
    existing file that is an image (see :func:`image_problem`)."""
    if not isinstance(obj, dict):
        raise _err(path, line, "must be a JSON object")
    raw_id = obj.get("id")
    if isinstance(raw_id, bool) or not isinstance(raw_id, str | int) or not str(raw_id).strip():
        raise _err(path, line, "'id' must be a non-empty string or an integer")
    ex_id = str(raw_id).strip()
    question = obj.get("question")
    if not isinstance(question, str) or not question.strip():
        raise _err(path, line, "'question' must be a non-empty string")
    answers_raw = obj.get("answers")
    if not isinstance(answers_raw, list) or not answers_raw:
        raise _err(path, line, "'answers' must be a non-empty list of reference answers")
    answers: list[str] = []
    for a in answers_raw:
        if isinstance(a, bool) or not isinstance(a, str | int | float) or not str(a).strip():
            raise _err(path, line, f"answer {a!r} must be a non-empty string or a number")
        answers.append(str(a).strip())
    atype = obj.get("answer_type", "exact")
    if atype not in ANSWER_TYPES:
        raise _err(path, line, f"'answer_type' must be one of {', '.join(ANSWER_TYPES)}, not {atype!r}")
    tolerance = obj.get("tolerance", 0.0)
    if isinstance(tolerance, bool) or not isinstance(tolerance, int | float) or not tolerance >= 0:
        raise _err(path, line, "'tolerance' must be a number >= 0")
    if "tolerance" in obj and atype != "numeric":
        raise _err(path, line, "'tolerance' only applies to answer_type numeric")
    choices_raw = obj.get("choices", [])
    if not isinstance(choices_raw, list) or not all(isinstance(c, str) and c.strip() for c in choices_raw):
        raise _err(path, line, "'choices' must be a list of non-empty strings")
    if choices_raw and atype != "choice":
        raise _err(path, line, "'choices' only applies to answer_type choice")
    if len(choices_raw) > 26:
        raise _err(path, line, "'choices' can hold at most 26 options (A-Z)")
    if atype == "numeric":
        bad = [a for a in answers if not _is_number(a)]
        if bad:
            raise _err(path, line, f"numeric answer {bad[0]!r} is not a number")
    if atype == "choice":
        letters = {chr(ord("A") + i) for i in range(len(choices_raw) or 26)}
        bad = [a for a in answers if a.upper() not in letters]
        if bad:
            raise _err(
                path,
                line,
                f"choice answer {bad[0]!r} must be an option letter ({min(letters)}-{max(letters)})",
            )
        answers = [a.upper() for a in answers]
    image = obj.get("image")
    image_path: str | None = None
    if image is not None:
        if not isinstance(image, str) or not image.strip():
            raise _err(path, line, "'image' must be a path string or null")
        p = (path.parent / image).resolve()
        if not p.is_file():
            raise _err(path, line, f"image {p} not found")
        problem = image_problem(p)
        if problem:
            raise _err(path, line, f"image {p} {problem}")
        image_path = str(p)
    return UtilityExample(
        id=ex_id,
        question=question.strip(),
        answers=tuple(answers),
        answer_type=atype,
        image=image_path,
        line=line,
        tolerance=float(tolerance),
        choices=tuple(c.strip() for c in choices_raw),
        meta={k: v for k, v in obj.items() if k not in _KNOWN_KEYS},
    )


def load_examples(path: str | Path) -> list[UtilityExample]:
    """Read and validate a JSONL utility set; raises one error naming the first bad line."""
    p = Path(path).expanduser()
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise VscbenchError(f"{p}: utility set not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VscbenchError(f"{p}: cannot read the utility set ({exc})") from None
    out: list[UtilityExample] = []
    seen: dict[str, int] = {}
    for n, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise _err(p, n, f"not valid JSON ({exc.msg} at column {exc.colno})") from None
        ex = parse_line(obj, p, n)
        if ex.id in seen:
            raise _err(p, n, f"duplicate id '{ex.id}' (first on line {seen[ex.id]})")
        seen[ex.id] = n
        out.append(ex)
    if not out:
        raise VscbenchError(f"{p}: the utility set has no examples")
    return out


def fingerprint(examples: list[UtilityExample]) -> str:
    """SHA-256 over the examples (references included) and the bytes of every image they use."""
    h = hashlib.sha256()
    for ex in examples:
        h.update(json.dumps({**ex.to_dict(), "image": None, "line": 0}, sort_keys=True).encode("utf-8"))
        if ex.image:
            h.update(bytes.fromhex(sha256_file(ex.image)))
    return h.hexdigest()


def examples_jsonl(examples: list[UtilityExample]) -> bytes:
    """The examples as stored beside a run (absolute image paths, references, line numbers)."""
    return "".join(json.dumps(ex.to_dict(), sort_keys=True) + "\n" for ex in examples).encode("utf-8")


def read_examples_jsonl(data: bytes) -> list[UtilityExample]:
    """Inverse of :func:`examples_jsonl`."""
    return [UtilityExample.from_dict(json.loads(line)) for line in data.decode("utf-8").splitlines() if line]
