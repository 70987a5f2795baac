"""Which items a run evaluates: filters, an item-id file, and a balanced deterministic ``--limit`` sample.

All functions here are pure (bar reading the ``--items`` file) and keep the canonical item order.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from vscbench.errors import VscbenchError
from vscbench.types import CATEGORIES, SETTINGS, Item

_T = TypeVar("_T")


@dataclass(frozen=True)
class Selection:
    """What ``vscbench run`` was asked to evaluate (recorded in the manifest)."""

    half: str | None = None
    settings: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    items_file: str | None = None
    limit: int | None = None
    sample_seed: int = 0
    #: exact item ids (the suite's selected cases); recorded in manifests by count and digest only
    ids: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "half": self.half,
            "settings": list(self.settings),
            "categories": list(self.categories),
            "items_file": self.items_file,
            "limit": self.limit,
            "sample_seed": self.sample_seed,
        }
        if self.ids:
            digest = hashlib.sha256("\n".join(sorted(self.ids)).encode("utf-8")).hexdigest()
            out["ids"] = {"count": len(self.ids), "sha256": digest}
        return out


def read_item_ids(path: str | Path) -> list[str]:
    """Item ids from a file: a JSON list (of ids, or of objects with ``id``), or one id per line (``#`` comments)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise VscbenchError(f"--items {p}: cannot read it ({exc.strerror or exc})") from exc
    stripped = text.lstrip()
    if stripped.startswith("["):
        try:
            data = json.loads(text)
        except ValueError as exc:
            raise VscbenchError(f"--items {p}: not valid JSON ({exc})") from exc
        ids: list[str] = []
        for k, entry in enumerate(data):
            if isinstance(entry, str):
                ids.append(entry)
            elif isinstance(entry, dict) and isinstance(entry.get("id"), str):
                ids.append(entry["id"])
            else:
                raise VscbenchError(f"--items {p}: entry {k} is neither an item id nor an object with 'id'")
        return ids
    out = []
    for line in text.splitlines():
        s = line.split("#", 1)[0].strip()
        if s:
            out.append(s.split()[0].split(",")[0])
    return out


def filter_by_ids(items: Sequence[Item], ids: Sequence[str], source: str) -> list[Item]:
    """The items named in ``ids`` (canonical order); an unknown id is an error naming it and its line."""
    known = {i.id for i in items}
    for n, iid in enumerate(ids, 1):
        if iid not in known:
            raise VscbenchError(
                f"--items {source}: entry {n} '{iid}' is not an item of the current selection "
                "(check --half/--setting/--category, or 'vscbench data items')"
            )
    wanted = set(ids)
    return [i for i in items if i.id in wanted]


def check_selection(selection: Selection) -> None:
    """Refuse a selection naming an unknown half, setting, category or XSTest type, a setting or category
    outside the chosen half, or a ``--limit`` below 1 (one line naming the flag and the value)."""
    from vscbench.data.metadata import XSTEST_TYPES

    if selection.half is not None and selection.half not in ("image", "text"):
        raise VscbenchError(f"--half {selection.half}: use image or text")
    for st in selection.settings:
        if st not in SETTINGS:
            raise VscbenchError(f"--setting {st}: not a setting (use one of {', '.join(SETTINGS)})")
        half = "image" if st == "image" else "text"
        if selection.half is not None and half != selection.half:
            raise VscbenchError(f"--setting {st}: not a setting of the {selection.half} half")
    for cat in selection.categories:
        if cat in CATEGORIES:
            half = "image"
        elif cat in XSTEST_TYPES:
            half = "text"
        else:
            raise VscbenchError(
                f"--category {cat}: not an image category ({', '.join(CATEGORIES)}) nor an XSTest type "
                f"({', '.join(sorted(XSTEST_TYPES))})"
            )
        if selection.half is not None and half != selection.half:
            raise VscbenchError(f"--category {cat}: not a category of the {selection.half} half")
    if selection.limit is not None and selection.limit < 1:
        raise VscbenchError(f"--limit {selection.limit}: must be at least 1")


def _shuffled(rng: random.Random, xs: list[_T]) -> list[_T]:
    rng.shuffle(xs)
    return xs


class _ImageHalf:
    """The image half's draw order, in whole pairs (safe slot j and unsafe slot j of one query): the next pair
    comes from the category with the fewest items so far (ties by a seeded order), so category counts differ
    by at most one pair and every category (and the half) is label balanced after each pair. Within a pair
    the label the half is short of comes first (only an item without its partner can unbalance it)."""

    def __init__(self, items: Sequence[Item], rng: random.Random) -> None:
        units: dict[str, dict[tuple[str, int | str], list[Item]]] = {}
        for it in items:
            key = (it.query_id, it.slot if it.slot is not None else it.id)
            units.setdefault(it.group, {}).setdefault(key, []).append(it)
        self.queues = {
            g: _shuffled(rng, [sorted(u[k], key=lambda i: (i.label, i.id)) for k in sorted(u, key=str)])
            for g, u in sorted(units.items())
        }
        self.rank = {g: r for r, g in enumerate(_shuffled(rng, sorted(self.queues)))}
        self.count: Counter[str] = Counter()
        self.balance = 0  # safe minus unsafe so far

    def __bool__(self) -> bool:
        return any(self.queues.values())

    def pop_unit(self) -> list[Item]:
        """The next whole pair (or lone item), short label first."""
        g = min((g for g in self.queues if self.queues[g]), key=lambda g: (self.count[g], self.rank[g]))
        unit = self.queues[g].pop(0)
        if self.balance > 0:
            unit = sorted(unit, key=lambda i: (i.label != "unsafe", i.id))
        self.count[g] += len(unit)
        self.balance += sum(1 if i.label == "safe" else -1 for i in unit)
        return unit


class _TextHalf:
    """The text half's draw order: whole queries (every selected setting of one query, in setting order),
    the next query from the label and then the XSTest type with the fewest items so far. So settings are
    even and cross-setting consistency is measurable on every query but the last one opened."""

    def __init__(self, items: Sequence[Item], rng: random.Random) -> None:
        setting_pos = {s: k for k, s in enumerate(SETTINGS)}
        units: dict[tuple[str, str], dict[str, list[Item]]] = {}
        for it in items:
            units.setdefault((it.label, it.group), {}).setdefault(it.query_id, []).append(it)
        self.queues = {
            k: _shuffled(
                rng, [sorted(u[q], key=lambda i: (setting_pos.get(i.setting, 99), i.id)) for q in sorted(u)]
            )
            for k, u in sorted(units.items())
        }
        self.rank = {k: r for r, k in enumerate(_shuffled(rng, sorted(self.queues)))}
        self.open: list[Item] = []
        self.count: Counter[str] = Counter()

    def __bool__(self) -> bool:
        return bool(self.open) or any(self.queues.values())

    def pop(self) -> Item:
        if not self.open:
            live = [k for k, q in self.queues.items() if q]
            k = min(live, key=lambda k: (self.count["l:" + k[0]], self.count["g:" + k[1]], self.rank[k]))
            self.open = list(self.queues[k].pop(0))
        it = self.open.pop(0)
        self.count["l:" + it.label] += 1
        self.count["g:" + it.group] += 1
        return it


def _chunks(items: Sequence[Item], seed: int) -> list[list[Item]]:
    """The sample order as chunks: an image pair (a lone image item when its partner is not selected) or two
    consecutive items of the text order. The halves alternate, the one with fewer items so far next (ties by
    a seeded order), so halves differ by at most one chunk in every prefix."""
    rng = random.Random(f"vscbench-sample-{seed}")
    ordered = sorted(items, key=lambda i: i.id)
    image = [i for i in ordered if i.half == "image"]
    text = [i for i in ordered if i.half != "image"]
    img = _ImageHalf(image, rng) if image else None
    txt = _TextHalf(text, rng) if text else None
    rank = {
        h: r for r, h in enumerate(_shuffled(rng, sorted(h for h, d in (("image", img), ("text", txt)) if d)))
    }
    count: Counter[str] = Counter()
    out: list[list[Item]] = []
    while True:
        live = [h for h, d in (("image", img), ("text", txt)) if d]
        if not live:
            return out
        h = min(live, key=lambda h: (count[h], rank[h]))
        if h == "image" and img is not None:
            chunk = img.pop_unit()
        else:
            assert txt is not None
            chunk = [txt.pop()]
            if txt:
                chunk.append(txt.pop())
        out.append(chunk)
        count[h] += len(chunk)


def sample_order(items: Sequence[Item], seed: int = 0) -> list[Item]:
    """Every item of ``items`` in the order a ``--limit`` sample takes them (deterministic in ``seed``).

    The halves alternate in chunks of two items (see :func:`_chunks`); within a half see :class:`_ImageHalf`
    and :class:`_TextHalf`. Every even prefix is therefore balanced over halves, labels within each
    category/type, and categories/types, with image items in whole pairs and text items in whole queries
    (bar the last one opened).
    """
    return [it for chunk in _chunks(items, seed) for it in chunk]


def balanced_sample(items: Sequence[Item], n: int, seed: int = 0) -> list[Item]:
    """About the first ``n`` items of :func:`sample_order`, in canonical (``items``) order.

    Balanced over halves, labels within each category/XSTest type, and categories/types (count differences
    of at most one pair wherever the data allows). The image half always comes in whole pairs (safe slot j +
    unsafe slot j of one query) and the text half in whole queries across the selected settings, bar one
    open query. The sample takes whole chunks while they fit; an odd ``n`` gives its last item to the text
    half, and with no text item left (``--half image``) an odd ``n`` rounds down to whole pairs. A larger
    ``n`` extends a smaller one of the same parity, and an odd ``n`` extends ``n - 1`` (same ``seed``), so
    resuming a run with a larger even ``--limit`` only adds.
    """
    if n < 1:
        raise VscbenchError(f"--limit {n}: must be at least 1")
    if n >= len(items):
        return list(items)
    chunks = _chunks(items, seed)
    picked: set[str] = set()
    k = 0
    while k < len(chunks) and len(picked) + len(chunks[k]) <= n:
        picked.update(i.id for i in chunks[k])
        k += 1
    rest = [i for chunk in chunks[k:] for i in chunk if i.half != "image"]
    picked.update(i.id for i in rest[: n - len(picked)])
    if not picked:
        raise VscbenchError(f"--limit {n}: image items are drawn in whole safe/unsafe pairs; use at least 2")
    return [it for it in items if it.id in picked]


def proportional_sample(
    selected: Sequence[Item], unsendable: set[str] | frozenset[str], n: int, seed: int = 0
) -> tuple[list[Item], list[tuple[str, int, int]]]:
    """The suite's ``--vsc-sample``: each half's share of ``n`` in proportion to what was selected (largest
    remainder), drawn with :func:`balanced_sample` from that half's sendable items. A share that cannot be
    drawn (its items are not sendable here) is not taken from the other half: it is reported. Returns the
    drawn items in ``selected``'s order and ``(half, share, drawn)`` for each half that was selected."""
    if n < 1:
        raise VscbenchError(f"--vsc-sample {n}: must be at least 1")
    halves = {h: [i for i in selected if i.half == h] for h in ("image", "text")}
    halves = {h: v for h, v in halves.items() if v}
    total = sum(len(v) for v in halves.values())
    want = min(n, total)
    exact = {h: want * len(v) / total for h, v in halves.items()} if total else {}
    quota = {h: int(x) for h, x in exact.items()}
    for h in sorted(exact, key=lambda h: (-(exact[h] - quota[h]), h))[: want - sum(quota.values())]:
        quota[h] += 1
    picked: set[str] = set()
    report = []
    for h, items in halves.items():
        pool = [i for i in items if i.id not in unsendable]
        got: list[Item] = []
        if pool and quota[h]:
            try:
                got = balanced_sample(pool, quota[h], seed)
            except VscbenchError:  # a share of one image item: image items come in pairs
                got = []
        picked.update(i.id for i in got)
        report.append((h, quota[h], len(got)))
    return [i for i in selected if i.id in picked], report
