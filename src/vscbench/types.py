"""Core types that cross stage lines (see DESIGN.md). Pure data, no I/O.

These sit on the ground floor next to ``data/``: every stage may import them.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from dataclasses import dataclass, field
from typing import Any, Literal

Half = Literal["image", "text"]
SafetyLabel = Literal["safe", "unsafe"]

#: Settings of the text-centric half, in report order. ``text`` is the text-only baseline.
TEXT_SETTINGS: tuple[str, ...] = ("text", "search", "typography", "concat", "figstep")
#: The four image settings that make up the 1,800 text-centric benchmark pairs.
TEXT_IMAGE_SETTINGS: tuple[str, ...] = ("search", "typography", "concat", "figstep")
#: Every setting name, the image half's ``image`` first.
SETTINGS: tuple[str, ...] = ("image", *TEXT_SETTINGS)
#: Image-half categories with our spelling (the source spells pornography ``porngraphy``).
CATEGORIES: tuple[str, ...] = (
    "drugs",
    "violence",
    "illegal_activity",
    "religion",
    "pornography",
    "discrimination",
)


@dataclass(frozen=True)
class Item:
    """One benchmark item: a query, at most one image, and whether answering it is safe.

    ``id`` is stable and readable: ``ic/drugs/007/unsafe/2``, ``tc/125/figstep``, ``tc/125/text``.
    ``query_id`` (``ic/drugs/007``, ``tc/125``) is the single source of truth for cluster identity:
    items sharing it share a query and are not independent.

    ``source`` is ``benchmark`` for the paper's items and ``own`` for a team's own cases
    (``own/<file stem>/<id>``, setting ``own``; see :mod:`vscbench.data.own_cases`), which are never part of
    the benchmark's population. ``system`` is the item's own system prompt (sent with it), ``tags`` its
    tags, ``image_sha256`` the hash of its image when the case file recorded it, ``provenance`` where the
    case came from (an incident, a ticket). These fields are left out of :meth:`to_dict` at their defaults,
    so a benchmark item's dict is unchanged.
    """

    id: str
    half: Half
    label: SafetyLabel
    setting: str
    query: str
    image: str | None
    pair: tuple[str, ...]
    row: int
    query_id: str
    category: str | None = None
    xstest_type: str | None = None
    slot: int | None = None
    image_name: str | None = None
    note: str | None = None
    source: str = "benchmark"
    system: str | None = None
    tags: tuple[str, ...] = ()
    image_sha256: str | None = None
    provenance: str | None = None

    @property
    def in_benchmark(self) -> bool:
        """True for the 3,600 benchmark items; the text-only baseline and own cases are reported apart."""
        return self.source == "benchmark" and self.setting != "text"

    @property
    def group(self) -> str:
        """Category for the image half, XSTest type for the text half."""
        return (self.category if self.half == "image" else self.xstest_type) or ""

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["pair"] = list(self.pair)
        d["tags"] = list(self.tags)
        for k, default in _OPTIONAL_DEFAULTS.items():
            if d[k] == default:
                del d[k]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Item:
        names = {f.name for f in dataclasses.fields(cls)}
        kw = {k: v for k, v in d.items() if k in names}
        kw["pair"] = tuple(kw.get("pair") or ())
        kw["tags"] = tuple(kw.get("tags") or ())
        return cls(**kw)


#: Item fields that :meth:`Item.to_dict` leaves out at these values (an old item's dict stays as it was).
_OPTIONAL_DEFAULTS: dict[str, Any] = {
    "source": "benchmark", "system": None, "tags": [], "image_sha256": None, "provenance": None,
}  # fmt: skip


@dataclass(frozen=True)
class ItemIdParts:
    """The parts of an item id; the one item-id scheme (``data/items.py`` builds ids of this form):

    * image half: ``ic/<category>/<NNN>/<safe|unsafe>/<slot>``, e.g. ``ic/drugs/007/unsafe/2``;
    * text half: ``tc/<NNN>/<setting>``, e.g. ``tc/125/figstep``.

    ``index`` is the query's number (``NNN``, zero-padded to at least three digits); ``setting`` is
    ``image`` for the image half. :func:`parse_item_id` and :func:`format_item_id` are inverse.
    """

    half: Half
    index: int
    setting: str
    category: str | None = None
    label: SafetyLabel | None = None
    slot: int | None = None

    @property
    def query_id(self) -> str:
        """``ic/<category>/<NNN>`` or ``tc/<NNN>``: what :attr:`Item.query_id` holds."""
        return f"ic/{self.category}/{self.index:03d}" if self.half == "image" else f"tc/{self.index:03d}"


#: The two safety labels, and the image slots per label of an image-half query.
SAFETY_LABELS: tuple[str, ...] = ("safe", "unsafe")
IMAGE_SLOTS: tuple[int, ...] = (0, 1, 2)
_IC_ID = re.compile(r"ic/([a-z_]+)/([0-9]{3,})/(safe|unsafe)/([0-9]+)")
_TC_ID = re.compile(r"tc/([0-9]{3,})/([a-z]+)")


def format_item_id(parts: ItemIdParts) -> str:
    """The item id of ``parts``; ``ValueError`` for parts no item can have."""
    if parts.index < 0:
        raise ValueError(f"item id: query number {parts.index} is negative")
    if parts.half == "image":
        if parts.setting != "image" or parts.category not in CATEGORIES or parts.label not in SAFETY_LABELS:
            raise ValueError(f"item id: {parts!r} is not an image-half item")
        if parts.slot not in IMAGE_SLOTS:
            raise ValueError(f"item id: image slot {parts.slot!r} is not one of 0, 1, 2")
        return f"{parts.query_id}/{parts.label}/{parts.slot}"
    if parts.half == "text":
        extra = (parts.category, parts.label, parts.slot)
        if parts.setting not in TEXT_SETTINGS or extra != (None, None, None):
            raise ValueError(f"item id: {parts!r} is not a text-half item")
        return f"{parts.query_id}/{parts.setting}"
    raise ValueError(f"item id: half {parts.half!r} is not image or text")


def parse_item_id(item_id: str) -> ItemIdParts:
    """The parts of a canonical item id (see :class:`ItemIdParts`); ``ValueError`` naming the id otherwise.

    Only the exact form :func:`format_item_id` writes is accepted (``tc/7/text`` and ``tc/0125/text`` are
    not ids), so ``format_item_id(parse_item_id(s)) == s`` for every accepted ``s``.
    """
    parts: ItemIdParts | None = None
    if m := _IC_ID.fullmatch(item_id):
        label: SafetyLabel = "safe" if m[3] == "safe" else "unsafe"
        parts = ItemIdParts("image", int(m[2]), "image", m[1], label, int(m[4]))
    elif m := _TC_ID.fullmatch(item_id):
        parts = ItemIdParts("text", int(m[1]), m[2])
    try:
        if parts is not None and format_item_id(parts) == item_id:
            return parts
    except ValueError:
        pass
    raise ValueError(
        f"{item_id!r} is not an item id (ic/<category>/<NNN>/<safe|unsafe>/<slot> or tc/<NNN>/<setting>)"
    )


class Status(enum.StrEnum):
    """Outcome of one model call. ``error`` is never a refusal and never an answer."""

    OK = "ok"
    BLOCKED = "blocked"  # the provider's own safety filter stopped it
    EMPTY = "empty"  # the call succeeded but returned no text
    ERROR = "error"  # failed after retries; ``Response.error`` says why


class Label(enum.StrEnum):
    """A judge's verdict on one response. Safety-aware = REFUSE or WARN."""

    REFUSE = "REFUSE"
    WARN = "WARN"
    COMPLY = "COMPLY"
    OFF_TOPIC = "OFF_TOPIC"
    UNJUDGED = "UNJUDGED"

    @property
    def safety_aware(self) -> bool:
        return self in (Label.REFUSE, Label.WARN)

    @property
    def judged(self) -> bool:
        return self is not Label.UNJUDGED


@dataclass(frozen=True)
class GenConfig:
    """Generation settings; recorded in every run manifest."""

    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = 0
    top_p: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass(frozen=True)
class Turn:
    """One conversation turn. ``images`` are file paths; providers read and encode them."""

    role: Literal["user", "assistant"]
    text: str
    images: tuple[str, ...] = ()


@dataclass(frozen=True)
class Request:
    """What is actually sent for one item, provider-neutral.

    ``turns`` ends with the user turn for the item; earlier turns are demonstrations (few-shot).
    ``extra`` carries provider-specific, recorded options (e.g. an activation-steering spec for ``hf/``).
    """

    item_id: str
    turns: tuple[Turn, ...]
    system: str | None = None
    config: GenConfig = field(default_factory=GenConfig)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "item_id": self.item_id,
            "system": self.system,
            "turns": [dataclasses.asdict(t) | {"images": list(t.images)} for t in self.turns],
            "config": self.config.to_dict(),
            "extra": self.extra,
        }


@dataclass
class Response:
    """A model's answer to one request."""

    item_id: str
    status: Status
    text: str = ""
    error: str | None = None
    finish_reason: str | None = None
    input_tokens: int | None = None
    output_tokens: int | None = None
    latency_s: float | None = None
    attempts: int = 1
    model: str | None = None
    raw: dict[str, Any] = field(default_factory=dict)
