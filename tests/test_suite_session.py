"""The suite session's decisions (vscbench.suite.session, vscbench.suite.summary), without pytest's plugin:
the gate's accounting, the snapshot step, the selection, the gate document and the summary lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from vscbench.errors import VscbenchError
from vscbench.suite import snapshots as snap
from vscbench.suite import summary as s
from vscbench.suite.session import (
    CaseRecord,
    account,
    cases_of,
    flip_counts,
    gate_document,
    item_id_of,
    judge_line,
    last_misses,
    note_report,
    query_id_of,
    record_of,
    select,
    session_flips,
    snapshot_step,
)
from vscbench.types import Item, Label, Status


def item(iid: str, label: str = "unsafe", half: str = "image") -> Item:
    qid = query_id_of(iid)
    return Item(id=iid, half=half, label=label, setting="image" if half == "image" else "text",  # type: ignore[arg-type]
                query=f"query {iid}", image=None, pair=(iid,), row=0, query_id=qid, category="drugs")  # fmt: skip


def rec(outcome: str | None, **kw: object) -> CaseRecord:
    return CaseRecord(outcome, **kw)  # type: ignore[arg-type]


def test_accounting_fails_closed_on_every_unreported_case() -> None:
    records = {
        "ic/a/1/unsafe/1": rec("correct", status="ok", label="REFUSE"),
        "ic/a/2/unsafe/1": rec(None, reason="call failed"),
        "ic/a/3/unsafe/1": rec("under-safe", status="ok", label="COMPLY"),
        "ic/a/4/safe/1": rec("unscored", status="error"),
    }
    expected = set(records) | {"ic/a/5/unsafe/1", "ic/a/6/unsafe/1"}
    acc = account(expected, records, skipped=["ic/a/6/unsafe/1"], crashed={"ic/a/3/unsafe/1", "ic/a/2/unsafe/1"})
    assert acc.scored == ["ic/a/1/unsafe/1", "ic/a/3/unsafe/1", "ic/a/4/safe/1"]
    # never reported (not the skipped one), then no outcome, then crashed (once each)
    assert acc.missing == ["ic/a/5/unsafe/1", "ic/a/2/unsafe/1", "ic/a/3/unsafe/1"]
    assert acc.results["ic/a/1/unsafe/1"] == (Status.OK, Label.REFUSE)
    assert acc.results["ic/a/4/safe/1"] == (Status.ERROR, None)
    assert last_misses(records) == ["ic/a/3/unsafe/1"]


def test_flip_counts_are_regressions_over_compared_cases_and_nothing_under_update() -> None:
    records = {
        "a": rec("correct", snapshot="same"),
        "b": rec("under-safe", snapshot="flip", flip="regression"),
        "c": rec("correct", snapshot="flip", flip="fix"),
        "d": rec("correct", snapshot="new"),
    }
    assert flip_counts(records, update=False) == (1, 3)
    assert flip_counts(records, update=True) is None
    assert flip_counts({"a": rec("correct")}, update=False) is None


def test_record_of_report_properties() -> None:
    props = {"vsc_outcome": "over-safe", "vsc_label": "REFUSE", "vsc_relabelled": True, "vsc_before": "correct/COMPLY"}
    r = record_of(props, "vsc_")
    assert (r.outcome, r.label, r.relabelled, r.before, r.response, r.status) == (
        "over-safe", "REFUSE", True, "correct/COMPLY", "", None,
    )  # fmt: skip


def test_ids_of_nodes() -> None:
    assert item_id_of("tests_safety/test_x.py::test_case[ic/drugs/007/unsafe/2]") == "ic/drugs/007/unsafe/2"
    assert item_id_of("tests_safety/test_x.py::test_case") is None
    assert query_id_of("ic/drugs/007/unsafe/2") == "ic/drugs/007" and query_id_of("tc/125/figstep") == "tc/125"


def new_record(it: Item, outcome: str, label: str | None, response: str = "r") -> dict[str, object]:
    return snap.record(
        it, outcome=outcome, label=label, judge="j", status="ok", response=response, prompt="p",
        model="m", model_revision=None, config_digest="c",
    )  # fmt: skip


def test_snapshot_step_decides_kind_write_and_failure() -> None:
    it = item("ic/a/1/unsafe/1")
    good, bad = new_record(it, "correct", "REFUSE"), new_record(it, "under-safe", "COMPLY")
    old_text = snap.dumps(good)
    # a new case: nothing to compare (no assertion); under update it is written
    assert snapshot_step(None, "f", good, compare="verdict", update=False, budget_zero=True).expect is None
    assert snapshot_step(None, "f", good, compare="verdict", update=True, budget_zero=True).expect == old_text
    same = snapshot_step(old_text, "f", good, compare="verdict", update=False, budget_zero=True)
    assert (same.kind, same.failure, same.expect) == ("same", None, old_text)
    # a regression fails its case only with a zero budget
    reg = snapshot_step(old_text, "f", bad, compare="verdict", update=False, budget_zero=True)
    assert reg.kind == "flip" and reg.flip is not None and reg.flip.cls == "regression"
    assert reg.before == "correct/REFUSE" and reg.failure and reg.expect == snap.dumps(bad)
    assert snapshot_step(old_text, "f", bad, compare="verdict", update=False, budget_zero=False).failure is None
    # an unscored case never replaces a stored verdict under update
    err = dict(new_record(it, "unscored", None))
    assert snapshot_step(old_text, "f", err, compare="verdict", update=True, budget_zero=True).expect == old_text
    # a corrupt file fails the case, unless update replaces it
    broken = snapshot_step("{not json", "f", good, compare="verdict", update=False, budget_zero=True)
    assert broken.kind == "broken" and broken.failure and broken.failure.startswith("vscbench: ")
    assert snapshot_step("{not json", "f", good, compare="verdict", update=True, budget_zero=True).expect == old_text


def test_select_samples_then_narrows_to_last_misses() -> None:
    items = [item(f"ic/a/{i:03d}/unsafe/1") for i in range(10)]
    everything = select(items, {}, sample=None, seed=0, misses=None)
    assert everything.keep == {it.id for it in items} and everything.picked == items and everything.draws == []
    sampled = select(items, {}, sample=4, seed=0, misses=None)
    assert len(sampled.keep) == 4 and sampled.draws
    misses = {items[0].id, items[1].id}
    narrowed = select(items, {}, sample=None, seed=0, misses=misses)
    assert narrowed.keep == misses and [it.id for it in narrowed.picked] == sorted(misses)
    with pytest.raises(VscbenchError, match="--vsc-last-misses"):
        select(items, {}, sample=None, seed=0, misses=set())


def test_gate_document_without_a_gate_is_not_run() -> None:
    assert gate_document(None, model="tiny") == {"status": "NOT RUN", "model": "tiny"}
    doc = gate_document(json.dumps({"status": "PASS", "rows": []}), model="tiny", run_id="r")
    assert doc == {"status": "PASS", "rows": [], "model": "tiny", "run_id": "r"}


def test_judge_line() -> None:
    info = {"judge": "local", "version": 2, "head_sha256": "0123456789abcdef", "validated": {"f1": 0.9}}
    assert judge_line(info, "", 0) == 'judge local, version 2, head_sha256 0123456789ab, validated {"f1": 0.9}'
    assert judge_line({"judge": "k"}, "3 passed on", 2) == (
        "judge k, 2 stored labels judged again (another build of the judge gave them): 3 passed on"
    )


def test_summary_lines() -> None:
    it = item("ic/a/1/unsafe/1")
    records = {
        it.id: rec("under-safe", label="COMPLY", snapshot="flip", flip="regression", before="correct/REFUSE",
                   response="sure"),  # fmt: skip
        "ic/a/2/unsafe/1": rec(None),
    }
    assert s.cases_line(records, expected=3, n_selected=5, sampled=True, never=1, skipped=1) == (
        "cases: 5 selected, 3 sampled, 1 not sendable (never sent; 1 skipped), 1 no outcome, 1 under-safe"
    )
    flips = session_flips(records, {it.id: it})
    lines = s.snapshot_lines(records, flips, update=False, budget_zero=True)
    assert lines[0].text == "snapshots: 1 flip (1 regression, 0 fix, 0 neutral)"
    assert "(fails its case)" in lines[1].text and lines[1].markup["red"]
    assert not s.snapshot_lines(records, flips, update=False, budget_zero=False)[1].markup["red"]
    ex = s.example_lines(records, {it.id: it})
    assert ex[0].text.startswith(f"UNDER-SAFE {it.id}: label COMPLY") and "'sure'" in ex[1].text
    orphans = [Path("/r/tests_safety/x.json")]
    assert s.orphan_lines(orphans, deleted=False, narrowed=True, root=Path("/r"))[1].text == (
        "  unused tests_safety/x.json"
    )
    verdict = s.gate_lines("row\ngate FAIL", passed=False)
    assert verdict[1].markup == {"red": True, "green": False, "bold": True} and not verdict[0].markup["bold"]


def test_fold_syrupy() -> None:
    lines = ["\x1b[1m3 snapshots passed. 1 snapshot generated.\x1b[0m", "2 snapshots unused.", "Re-run pytest with "
             "--snapshot-update to delete unused snapshots."]  # fmt: skip
    assert s.fold_syrupy(lines, orphans=True, update=False) == ["1 snapshot generated."]
    assert s.fold_syrupy(lines[:1], orphans=False, update=True) == ["3 unchanged. 1 snapshot generated."]


def test_cases_of_a_half_with_markers_and_skips() -> None:
    a, b = item("ic/a/1/unsafe/1"), item("tc/2/text", label="safe", half="text")
    got = cases_of([a, b], {b.id: "no image"}, half=None, settings=None)
    assert got == [(a, ["unsafe", "image_centric", "drugs"], None), (b, ["safe", "baseline"], "never sendable: no image")]
    assert [c[0] for c in cases_of([a, b], {}, half="text", settings=None)] == [b]
    assert cases_of([a, b], {}, half=None, settings=["figstep"]) == []


def test_note_report_keeps_skips_records_failures_and_crashes() -> None:
    records: dict[str, CaseRecord] = {}
    skipped: dict[str, str] = {}
    crashed: set[str] = set()
    note_report(records, skipped, crashed, "s", {}, "vsc_", when="setup", result="skipped", longrepr=("f", 1, "why"))
    note_report(records, skipped, crashed, "a", {"vsc_outcome": "correct"}, "vsc_", when="call", result="passed",
                longrepr=None)  # fmt: skip
    note_report(records, skipped, crashed, "c", {}, "vsc_", when="call", result="failed", longrepr="worker crashed")
    note_report(records, skipped, crashed, "c", {}, "vsc_", when="teardown", result="failed", longrepr="x")
    assert skipped == {"s": "why"} and crashed == {"c"}
    assert records["a"].outcome == "correct" and (records["c"].outcome, records["c"].reason) == (None, "call failed")


def test_status_words() -> None:
    assert s.status_word({"vsc_outcome": "under-safe"}, "vsc_") == ("under-safe", "U", ("UNDER-SAFE", {"red": True}))
    assert s.status_word({"vsc_outcome": "correct"}, "vsc_") is None
    assert s.status_word({"vsc_snapshot": "flip", "vsc_flip": "odd"}, "vsc_")[1] == "~"


def test_model_setup_flags_win_over_the_alias() -> None:
    from vscbench.suite.setup import SETUP_FLAGS, check_base_url_model, check_sample, model_setup

    flags = dict.fromkeys(SETUP_FLAGS) | {"vsc_seed": 3, "vsc_calibration": ["reminder"], "vsc_max_tokens": 64}
    alias = {"max_tokens": 128, "temperature": 0.5, "device": "cuda", "dtype": "float32", "concurrency": 4}
    api = model_setup("openai/gpt-4o-mini", None, flags, alias)
    assert (api.config.max_tokens, api.config.temperature, api.config.seed) == (64, 0.5, 3)
    assert api.device is None and api.dtype is None and api.limits.concurrency == 4
    assert api.calibrations == ("reminder",)
    local = model_setup("hf/x", None, flags, alias, worker_gpu=lambda: "cuda:1")
    assert (local.device, local.dtype) == ("cuda:1", "float32")
    assert model_setup("hf/x", None, flags | {"vsc_device": "cuda"}, alias, worker_gpu=lambda: "cuda:1").device == "cuda"
    defaults = model_setup("openai/m", None, dict.fromkeys(SETUP_FLAGS), {})
    assert (defaults.config.max_tokens, defaults.config.temperature, defaults.limits.concurrency) == (512, 0.0, 16)
    with pytest.raises(VscbenchError, match="at least 1"):
        check_sample(0)
    with pytest.raises(VscbenchError, match="OpenAI-compatible"):
        check_base_url_model("http://x", "m", "openai/m")
    check_base_url_model("http://x", "m", "openai-compatible/m")
