"""A run's items and the outcome of each, read from the store: the one place outcomes are built.

Shared by the report (:mod:`vscbench.report.build`) and the trade-off table (:mod:`vscbench.report.tradeoff`),
which is why it sits apart from both. Reads the store; computes no metric.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from vscbench.metrics import Outcome
from vscbench.store import Store
from vscbench.types import Item

#: Manifest key listing the items a run never sent (e.g. blank queries).
EXCLUDED_KEY = "excluded_items"
#: Run artifact holding the full snapshot of each never-sent item (one ``Item.to_dict()`` JSON per line).
EXCLUDED_ARTIFACT = "excluded_items.jsonl"


def excluded_ids(manifest: Mapping[str, Any]) -> set[str]:
    """Item ids the run never sent, from the manifest's ``excluded_items`` (ids, or objects with ``item_id``/``id``)."""
    raw = manifest.get(EXCLUDED_KEY) or []
    out: set[str] = set()
    if isinstance(raw, Mapping):
        return {str(k) for k in raw}
    if isinstance(raw, (list, tuple)):
        for x in raw:
            if isinstance(x, str):
                out.add(x)
            elif isinstance(x, Mapping):
                iid = x.get("item_id", x.get("id"))
                if iid is not None:
                    out.add(str(iid))
    return out


def excluded_snapshots(data: bytes | None, never: set[str]) -> list[Item]:
    """The never-sent items of a run from its ``excluded_items.jsonl`` artifact (one ``Item.to_dict()`` per line).

    Only items listed in the manifest's ``excluded_items`` (``never``) count, each once, in file order. A line
    that is not a readable item is skipped: its id, if listed, is then counted for the run only (as for runs
    stored before the artifact existed).
    """
    if not data:
        return []
    out: list[Item] = []
    seen: set[str] = set()
    for line in data.decode("utf-8", errors="replace").splitlines():
        if not line.strip():
            continue
        try:
            d = json.loads(line)
            it = Item.from_dict(d) if isinstance(d, dict) else None
        except (ValueError, TypeError):
            continue
        if it is None or not isinstance(it.id, str) or it.id not in never or it.id in seen:
            continue
        if it.half not in ("image", "text") or not isinstance(it.query_id, str):
            continue
        seen.add(it.id)
        out.append(it)
    return out


def run_outcomes(
    store: Store, run_id: str, judge_id: str | None, manifest: Mapping[str, Any] | None = None
) -> tuple[list[Item], dict[str, Outcome]]:
    """Items of a run and each item's outcome: stored status, ``judge_id``'s label, and whether it was sent
    (never-sent items are read from the manifest by :func:`excluded_ids`). The one place outcomes are built.

    The items are the run's own, then the never-sent items whose snapshot the run stored in
    :data:`EXCLUDED_ARTIFACT` (not sent, so counted per group and never scored); a listed id without a
    snapshot is left to :func:`load_run` to count for the whole run."""
    items = store.run_items(run_id)
    responses = store.responses(run_id)
    labels = store.labels(run_id, judge_id) if judge_id else {}
    never = excluded_ids(manifest if manifest is not None else store.get_run(run_id).manifest)
    own = {it.id for it in items}
    if never - own:
        items += [
            it for it in excluded_snapshots(store.get_artifact(run_id, EXCLUDED_ARTIFACT), never) if it.id not in own
        ]
    outcomes: dict[str, Outcome] = {}
    for it in items:
        r = responses.get(it.id)
        lab = labels.get(it.id)
        outcomes[it.id] = Outcome(
            status=r.status if r is not None else None,
            label=lab.label if lab is not None else None,
            sent=it.id not in never,
        )
    return items, outcomes
