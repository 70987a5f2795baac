"""Which items a run evaluates: filters, an item-id file, and a balanced deterministic ``--limit`` sample.

All functions here are pure (bar reading the ``--items`` file) and keep the canonical item order.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.types import Item


@dataclass(frozen=True)
class Selection:
    """What ``vscbench run`` was asked to evaluate (recorded in the manifest)."""

    half: str | None = None
    settings: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    items_file: str | None = None
    limit: int | None = None
    sample_seed: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "half": self.half,
            "settings": list(self.settings),
            "categories": list(self.categories),
            "items_file": self.items_file,
            "limit": self.limit,
            "sample_seed": self.sample_seed,
        }


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


def _stratum(i: Item) -> tuple[str, str, str, str]:
    return (i.half, i.label, i.group, i.setting)


def balanced_sample(items: Sequence[Item], n: int, seed: int = 0) -> list[Item]:
    """``n`` items balanced over halves, labels, categories/types and settings, in canonical order.

    Greedy and deterministic: items are grouped into strata (half, label, category/type, setting) and each
    next item comes from the stratum that keeps, in this order of priority, the halves, the labels within a
    half, the categories/types within a half, the settings within a half, and the settings within a
    category/type as even as possible; ties go by an order drawn from ``seed``, and each stratum hands out
    its items in a seeded shuffled order. So any prefix of the sequence is balanced (count differences of at
    most one wherever the data allows), and a larger ``n`` extends a smaller one.
    """
    if n < 0:
        raise VscbenchError(f"--limit {n}: must be zero or more")
    if n >= len(items):
        return list(items)
    rng = random.Random(f"vscbench-sample-{seed}")
    strata: dict[tuple[str, str, str, str], list[Item]] = {}
    for it in sorted(items, key=lambda i: i.id):
        strata.setdefault(_stratum(it), []).append(it)
    keys = sorted(strata)
    rng.shuffle(keys)
    rank = {k: r for r, k in enumerate(keys)}
    for k in keys:
        rng.shuffle(strata[k])
        strata[k].reverse()  # pop() hands them out in the shuffled order
    seen: Counter[tuple[str, ...]] = Counter()

    def priority(k: tuple[str, str, str, str]) -> tuple[int, ...]:
        h, lab, g, st = k
        return (
            seen[(h,)],
            seen[(h, "l", lab)],
            seen[(h, "g", g)],
            seen[(h, "s", st)],
            seen[(h, g, st)],
            rank[k],
        )

    picked: list[Item] = []
    live = list(keys)
    while len(picked) < n and live:
        k = min(live, key=priority)
        picked.append(strata[k].pop())
        if not strata[k]:
            live.remove(k)
        h, lab, g, st = k
        for c in ((h,), (h, "l", lab), (h, "g", g), (h, "s", st), (h, g, st)):
            seen[c] += 1
    order = {it.id: pos for pos, it in enumerate(items)}
    return sorted(picked, key=lambda i: order[i.id])
