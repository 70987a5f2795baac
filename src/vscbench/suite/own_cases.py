"""The suite's side of a team's own cases: promote a stored prompt and response into a case file.

Reading, validating, listing and importing case files is the data stage's (:mod:`vscbench.data.own_cases`);
this module only adds what needs the store. (Issue 24's phase 2 moves it to ``vscbench.suite``.)
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from vscbench.data.own_cases import Written, case_id_of, promote
from vscbench.errors import VscbenchError
from vscbench.store import Store

#: How much of the response ``add_case`` quotes in the new case's ``source``.
EXCERPT_CHARS = 120


def provenance(run_id: str, item_id: str, status: str | None, labels: dict[str, str], text: str) -> str:
    """The ``source`` line of a promoted case: run, item, response status, judge labels, a response excerpt."""
    parts = [f"promoted from run {run_id}, item {item_id}"]
    if status is None:
        parts.append("no response stored")
    else:
        said = " ".join(text.split())
        said = said if len(said) <= EXCERPT_CHARS else said[:EXCERPT_CHARS] + "…"
        judged = ", ".join(f"{j}={lab}" for j, lab in sorted(labels.items()))
        parts.append(
            f"response {status}" + (f" ({judged})" if judged else "") + (f": {said!r}" if said else "")
        )
    return "; ".join(parts)


def add_case(
    store: Store,
    run_id: str,
    item_id: str,
    new_id: str,
    file: str | Path,
    *,
    expect: str | None = None,
    tags: Sequence[str] = (),
    category: str | None = None,
    context: Sequence[str | Path] = (),
) -> Written:
    """Promote item ``item_id`` of run ``run_id`` (a benchmark item, an own case or a robustness variant)
    into case ``new_id`` of the YAML file ``file``: the prompt actually sent, the item's own system prompt,
    ``expect`` from its label unless given; its image copied to ``images/`` beside the file with its sha256
    recorded; ``source`` naming the run, the item and the stored response. The file is validated
    with the new case, together with ``context`` (the session's case files and folders, e.g.
    :func:`vscbench.data.own_cases.case_paths`); on any error nothing is written."""
    store.get_run(run_id)  # one line naming the run if there is none
    items = {it.id: it for it in store.run_items(run_id)}
    item = items.get(item_id)
    if item is None:  # an own case is stored as <case id>@<digest>: its case id names it when there is one
        stored = sorted(i for i in items if case_id_of(i) == item_id and i != item_id)
        if len(stored) > 1:
            raise VscbenchError(
                f"run '{run_id}' holds case '{item_id}' as {len(stored)} versions ({', '.join(stored)}): name one"
            )
        if not stored:
            raise VscbenchError(f"run '{run_id}' has no item '{item_id}'")
        item_id, item = stored[0], items[stored[0]]
    response = store.responses(run_id).get(item_id)
    labels = {
        j: lab.label.value for j in store.judges(run_id) if (lab := store.labels(run_id, j).get(item_id))
    }
    source = provenance(
        run_id,
        item_id,
        response.status.value if response else None,
        labels,
        response.text if response else "",
    )
    request = store.request_of(run_id, item_id)
    return promote(
        item,
        request,
        new_id,
        file,
        expect=expect,
        tags=tags,
        category=category,
        source=source,
        context=context,
    )
