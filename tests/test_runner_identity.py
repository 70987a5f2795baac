"""Engine pieces of "the gate never passes what it did not check": the model revision and the run it picks,
claims on requests in the store, and the checks made before the first request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vscbench.errors import VscbenchError
from vscbench.models.revision import (
    Revision,
    discover_revision,
    local_checkpoint_revision,
    served_models_revision,
)
from vscbench.runner import preflight
from vscbench.runner.identity import choose_suite_run, reuse_line
from vscbench.store import ClaimOwner, Store
from vscbench.types import Response, Status

BASE = "suite-x-0123456789ab"


def _run(store: Path, run_id: str, revision: str | None, answered: int = 1) -> None:
    with Store(store) as st:
        st.create_run(
            run_id,
            kind="generation",
            model="m",
            manifest={"model_revision": revision} if revision else {},
            items=[],
        )
        for k in range(answered):
            st.add_response(run_id, Response(item_id=f"i{k}", status=Status.OK, text="ok"))


def test_a_known_revision_gets_its_own_run_and_a_change_is_said(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    first = choose_suite_run(store, BASE, Revision("policy-a", "/models"))
    assert first.run_id.startswith(BASE + "-r") and first.revision == "policy-a" and not first.lines
    assert not store.exists()  # deciding writes nothing
    _run(store, first.run_id, "policy-a")
    same = choose_suite_run(store, BASE, Revision("policy-a", "/models"))
    assert same.run_id == first.run_id and not same.lines and same.recorded_at is not None
    other = choose_suite_run(store, BASE, Revision("policy-b", "/models"))
    assert other.run_id != first.run_id and other.revision == "policy-b"
    assert len(other.lines) == 1 and "model revision changed: policy-b" in other.lines[0]
    assert "was policy-a" in other.lines[0] and "every selected case is asked again" in other.lines[0]
    assert choose_suite_run(store, BASE, Revision("policy-a", "given")).run_id == first.run_id  # back again


def test_an_unknown_revision_reuses_only_with_a_warning_naming_fresh(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    new = choose_suite_run(store, BASE, Revision(None, "openai names its dated model only in each response"))
    assert new.run_id == BASE and not new.lines
    _run(store, BASE, None)
    again = choose_suite_run(store, BASE, Revision(None, "GET /models listed no model"))
    assert again.run_id == BASE and again.warn and "--vsc-fresh" in again.lines[0]
    # a revision now known never reads the run whose revision was not recorded
    known = choose_suite_run(store, BASE, Revision("m-1", "/models"))
    assert known.run_id != BASE and "was not recorded" in known.lines[0]
    fresh = choose_suite_run(store, BASE, Revision(None, "x"), fresh=True, now=0)
    assert fresh.run_id == BASE + "-19700101-000000"


def test_reuse_line_names_count_run_and_time() -> None:
    assert reuse_line(10, "r1", 0.0) == "10 answers from the store (run r1, recorded unknown)"
    assert reuse_line(3, "r1", 86400.0) == "3 answers from the store (run r1, recorded 1970-01-02 00:00 UTC)"


def test_revision_given_wins_and_a_local_checkpoint_is_hashed_by_its_files(tmp_path: Path) -> None:
    assert discover_revision("openai/gpt-4o", given=" v2 ") == Revision("v2", "given")
    assert not discover_revision("anthropic/claude-x").known
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"a": 1}')
    (ckpt / "model.safetensors").write_bytes(b"x" * 10)
    one = discover_revision(f"hf/{ckpt}")
    assert one.source == "files" and one.value == local_checkpoint_revision(ckpt)
    (ckpt / "model.safetensors").write_bytes(b"x" * 11)  # other weights: another revision
    assert discover_revision(f"hf/{ckpt}").value != one.value
    snap = tmp_path / "models--o--n" / "snapshots" / ("a" * 40)
    snap.mkdir(parents=True)
    assert discover_revision(f"hf/{snap}") == Revision("a" * 40, "hub-cache")


def test_served_models_revision() -> None:
    assert served_models_revision({"data": [{"id": "b"}, {"id": "a", "root": "/ckpt/a"}]}) == "a@/ckpt/a,b"
    assert served_models_revision({"data": []}) is None
    assert served_models_revision([1]) is None


def test_claims_hold_across_processes_and_free_when_the_owner_dies_or_expires(tmp_path: Path) -> None:
    store = tmp_path / "s.sqlite"
    _run(store, "r", None, answered=1)  # i0 is answered
    me, other = ClaimOwner.this_process(), ClaimOwner.this_process()
    with Store(store) as st:
        mine, held = st.claim("r", ["i0", "i1", "i2"], me)
        assert mine == {"i1", "i2"} and held == set()  # an answered item is never claimed
        mine, held = st.claim("r", ["i1", "i3"], other)
        assert mine == {"i3"} and held == {"i1"}  # in flight for a live owner
        st.release_claims("r", me, ["i1"])
        assert st.claim("r", ["i1"], other) == ({"i1"}, set())
        # a dead process's claims are free at once
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
        )
        gone = ClaimOwner("dead", me.host, int(dead.stdout))
        st.claim("r", ["i5"], gone)
        assert st.claim("r", ["i5"], me) == ({"i5"}, set())
        # on this host a live owner keeps its claims past the lease (a long batch may stall its heartbeat)
        st.claim("r", ["i8"], other, lease_s=-1)
        assert st.claim("r", ["i8"], me) == (set(), {"i8"})
        # another host's claim lasts until its lease ends
        far = ClaimOwner("far", "elsewhere", os.getpid())
        st.claim("r", ["i6"], far, lease_s=-1)
        assert st.claim("r", ["i6"], me) == ({"i6"}, set())
        st.claim("r", ["i7"], far)
        assert st.claim("r", ["i7"], me) == (set(), {"i7"})


def test_preflight_checks() -> None:
    for bad, why in (("notaurl", "no scheme"), ("ftp://h/v1", "scheme 'ftp:'"), ("http:///v1", "no host")):
        with pytest.raises(VscbenchError, match=why):
            preflight.check_base_url(bad, "--vsc-base-url")
    with pytest.raises(VscbenchError) as exc:
        preflight.check_base_url("ftp://u:secret@h/v1?key=k", "--vsc-base-url")
    assert "secret" not in str(exc.value) and "key=k" not in str(exc.value)
    assert preflight.check_base_url("https://h:8000/v1") == "https://h:8000/v1"


def test_output_paths_and_checkpoints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(VscbenchError, match="does not exist"):
        preflight.check_output_path("--vsc-json", tmp_path / "nope" / "g.json")
    with pytest.raises(VscbenchError, match="is a folder"):
        preflight.check_output_path("--vsc-summary", tmp_path)
    assert preflight.check_output_path("--vsc-json", tmp_path / "g.json") == tmp_path / "g.json"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_CACHE", str(tmp_path / "hub"))
    with pytest.raises(VscbenchError, match="HF_HUB_OFFLINE is set"):
        preflight.check_checkpoint("hf/org/not-here")
    with pytest.raises(VscbenchError, match="no checkpoint folder"):
        preflight.check_checkpoint(f"hf/{tmp_path}/absent")
    cached = tmp_path / "hub" / "models--org--here"
    (cached / "refs").mkdir(parents=True)
    (cached / "refs" / "main").write_text("c" * 40)
    (cached / "snapshots" / ("c" * 40)).mkdir(parents=True)
    (cached / "snapshots" / ("c" * 40) / "config.json").write_text(json.dumps({}))
    preflight.check_checkpoint("hf/org/here")  # in the cache: fine offline
    assert discover_revision("hf/org/here") == Revision("c" * 40, "hub-cache")


def test_a_bad_items_file_is_refused_before_the_store_is_opened(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conftest import METADATA
    from vscbench.runner import run as run_mod
    from vscbench.runner.select import Selection

    def no_store(*_: object, **__: object) -> None:
        raise AssertionError("the store was opened before --items was checked")

    monkeypatch.setattr(run_mod, "Store", no_store)
    ids = tmp_path / "ids.txt"
    for text, why in (
        ("tc/000/text\nnot/an/item\n", "entry 2 'not/an/item'"),
        ("# nothing\n", "names no item id"),
    ):
        ids.write_text(text)
        with pytest.raises(VscbenchError, match=why):
            run_mod.run_generation(
                "openai-compatible/m", base_url="http://127.0.0.1:9/v1", metadata=str(METADATA),
                store=tmp_path / "s.sqlite", selection=Selection(items_file=str(ids)),
            )  # fmt: skip


def test_answers_from_two_dated_models_are_said(tmp_path: Path) -> None:
    from vscbench.runner.identity import mixed_models_line

    store = tmp_path / "s.sqlite"
    _run(store, "r", None, answered=0)
    with Store(store) as st:
        st.add_response("r", Response(item_id="a", status=Status.OK, text="x", model="gpt-4o-2024-08-06"))
        st.add_response("r", Response(item_id="b", status=Status.OK, text="x", model="gpt-4o-2024-08-06"))
    assert mixed_models_line(store, "r", {"a", "b", "c"}) is None
    with Store(store) as st:
        st.add_response("r", Response(item_id="c", status=Status.OK, text="x", model="gpt-4o-2024-11-20"))
    line = mixed_models_line(store, "r", {"a", "b", "c"})
    assert (
        line is not None and "gpt-4o-2024-08-06 (2), gpt-4o-2024-11-20 (1)" in line and "--vsc-fresh" in line
    )
    assert mixed_models_line(store, "r", {"a", "b"}) is None  # only the session's own cases count


def test_a_suite_runs_companions_are_never_an_earlier_revisions_run(tmp_path: Path) -> None:
    """The own cases' ``-own`` run and the robustness ``-robustness`` run sit beside a suite run (kind
    ``variants``): a session that answered only own cases leaves one, and the next session is no revision change."""
    store = tmp_path / "s.sqlite"
    first = choose_suite_run(store, BASE, Revision("policy-a", "/models"))
    with Store(store) as st:
        st.create_run(first.run_id + "-own", kind="variants", model="m", manifest={}, items=[])
        st.add_response(first.run_id + "-own", Response(item_id="own/f/a@0", status=Status.OK, text="ok"))
    again = choose_suite_run(store, BASE, Revision("policy-a", "/models"))
    assert again.run_id == first.run_id and not again.lines
