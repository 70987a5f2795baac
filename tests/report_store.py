"""Hand-built items, outcomes and stores shared by the metrics, report, browser and score tests.

Every number the tests expect from these was worked out by hand (see tests/test_metrics.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from vscbench.metrics import Outcome
from vscbench.store import Store
from vscbench.types import Item, Label, Response, Status

OK, ERR, EMPTY, BLOCKED = Status.OK, Status.ERROR, Status.EMPTY, Status.BLOCKED
R, W, C, OT, U = Label.REFUSE, Label.WARN, Label.COMPLY, Label.OFF_TOPIC, Label.UNJUDGED


def ic(cat: str, q: int, label: str, slot: int) -> Item:
    other = "unsafe" if label == "safe" else "safe"
    qid = f"ic/{cat}/{q:03d}"
    return Item(
        id=f"{qid}/{label}/{slot}",
        half="image",
        label=label,  # type: ignore[arg-type]
        setting="image",
        query=f"query {qid}",
        image=None,
        pair=(f"{qid}/{other}/{slot}",),
        row=q,
        query_id=qid,
        category=cat,
        slot=slot,
    )


def tc(q: int, xtype: str, setting: str) -> Item:
    qid = f"tc/{q:03d}"
    settings = ("text", "search", "typography", "concat", "figstep")
    return Item(
        id=f"{qid}/{setting}",
        half="text",
        label="unsafe" if xtype.startswith("contrast_") else "safe",
        setting=setting,
        query=f"query {qid}",
        image=None,
        pair=tuple(f"{qid}/{s}" for s in settings if s != setting),
        row=q,
        query_id=qid,
        xstest_type=xtype,
    )


def o(label: Label | None = None, status: Status = OK) -> Outcome:
    return Outcome(status=status, label=label)


def image_query(cat: str, q: int) -> list[Item]:
    return [ic(cat, q, lab, s) for lab in ("safe", "unsafe") for s in range(3)]


def text_query(q: int, xtype: str) -> list[Item]:
    return [tc(q, xtype, s) for s in ("text", "search", "typography", "concat", "figstep")]


ITEMS = (
    image_query("drugs", 0)
    + image_query("violence", 0)
    + text_query(0, "homonyms")
    + text_query(1, "contrast_homonyms")
    + text_query(2, "safe_contexts")
)
OUTCOMES = {
    # ic/drugs/000: safe COMPLY, OFF_TOPIC, REFUSE; unsafe REFUSE, WARN, COMPLY
    "ic/drugs/000/safe/0": o(C),
    "ic/drugs/000/safe/1": o(OT),
    "ic/drugs/000/safe/2": o(R),
    "ic/drugs/000/unsafe/0": o(R),
    "ic/drugs/000/unsafe/1": o(W),
    "ic/drugs/000/unsafe/2": o(C),
    # ic/violence/000: safe COMPLY, error, blocked; unsafe UNJUDGED, REFUSE, blocked
    "ic/violence/000/safe/0": o(C),
    "ic/violence/000/safe/1": o(None, ERR),
    "ic/violence/000/safe/2": o(C, BLOCKED),  # the judge's COMPLY on a blocked response is ignored
    "ic/violence/000/unsafe/0": o(U),
    "ic/violence/000/unsafe/1": o(R),
    "ic/violence/000/unsafe/2": o(None, BLOCKED),
    # tc/000 safe: text C, search C, typography W, concat C, figstep OFF_TOPIC
    "tc/000/text": o(C),
    "tc/000/search": o(C),
    "tc/000/typography": o(W),
    "tc/000/concat": o(C),
    "tc/000/figstep": o(OT),
    # tc/001 unsafe: REFUSE everywhere, figstep empty
    "tc/001/text": o(R),
    "tc/001/search": o(R),
    "tc/001/typography": o(R),
    "tc/001/concat": o(R),
    "tc/001/figstep": o(None, EMPTY),
    # tc/002 safe: search missing (no outcome at all), the rest COMPLY
    "tc/002/text": o(C),
    "tc/002/typography": o(C),
    "tc/002/concat": o(C),
    "tc/002/figstep": o(C),
}


def build_store(
    path: Path,
    runs: Mapping[str, Mapping[str, Outcome]],
    *,
    items: list[Item] | None = None,
    judge: str = "local",
    texts: Mapping[str, str] | None = None,
    extra_labels: Mapping[str, Mapping[str, Mapping[str, Label]]] | None = None,
    manifests: Mapping[str, dict[str, Any]] | None = None,
    models: Mapping[str, str] | None = None,
) -> Path:
    """A store with one run per entry of ``runs``: responses from the outcomes' statuses, labels under ``judge``.

    ``texts`` gives response texts by item id (default ``"response to <id>"``); ``extra_labels`` maps
    run → judge → item → label for more judges; an outcome with ``sent=False`` lists the item in the
    manifest's ``excluded_items`` and stores nothing for it.
    """
    its = list(items if items is not None else ITEMS)
    with Store(path) as st:
        for run_id, outs in runs.items():
            manifest = dict((manifests or {}).get(run_id, {}))
            manifest["excluded_items"] = [i for i, oc in outs.items() if not oc.sent]
            st.create_run(run_id, kind="test", model=(models or {}).get(run_id, f"model-{run_id}"), manifest=manifest, items=its)
            labels = []
            for iid, oc in outs.items():
                if not oc.sent:
                    continue
                if oc.status is not None:
                    text = (texts or {}).get(iid, f"response to {iid}")
                    if oc.status in (Status.EMPTY, Status.ERROR):
                        text = ""
                    st.add_response(
                        run_id,
                        Response(item_id=iid, status=oc.status, text=text, error="boom" if oc.status is Status.ERROR else None),
                    )
                if oc.label is not None:
                    labels.append((iid, oc.label, {}))
            st.put_labels(run_id, judge, labels)
            for j, labs in ((extra_labels or {}).get(run_id) or {}).items():
                st.put_labels(run_id, j, [(iid, lab, {}) for iid, lab in labs.items()])
    return path
