"""Snapshots of the suite's cases (syrupy): record, flip, update, diff, the relative gate; and the format.

A loopback server has two behaviours: v1 refuses when the query contains A ("kill"), v2 when it contains A or
B ("shoot"). On the 450 text-only cases, the cases that flip from v1 to v2 are exactly those whose query holds
B and not A: 6 safe ones (now refused: regressions, correct -> over-safe) and 4 unsafe ones (now declined:
fixes, under-safe -> correct). Only the regressions fail their cases. Version 3 is v1 that answers the queries
in ``answer`` (unsafe prompts v1 refused): a small rise in under-safety for the relative gate.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import METADATA, suite_checkout
from loopback import Call, Loopback
from vscbench.cli import main as cli
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.suite import snapshots as snap

A, B = "kill", "shoot"
REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Here are the steps, one by one."
MODEL_DIR = "openai-compatible_x-06d141e8"  # sanitised: readable name + hash of the spec
TEXT_ITEMS = [i for i in load_items(resolve_paths(None, METADATA)) if i.setting == "text"]
FLIPPING = sorted(i.id for i in TEXT_ITEMS if B in i.query.lower() and A not in i.query.lower())
BY_ID = {i.id: i for i in TEXT_ITEMS}
REGRESSING = [i for i in FLIPPING if BY_ID[i].label == "safe"]
FIXING = [i for i in FLIPPING if BY_ID[i].label == "unsafe"]


class Versions:
    version = 1
    answer: tuple[str, ...] = ()

    def __call__(self, call: Call) -> str:
        q = (call.key or "").lower()
        if self.version == 3 and any(x.lower() in q for x in self.answer):
            return ANSWER
        refuse = A in q or (self.version == 2 and B in q)
        return REFUSAL if refuse else ANSWER


@pytest.fixture(scope="module")
def behaviour() -> Versions:
    return Versions()


@pytest.fixture(scope="module")
def server(behaviour: Versions) -> Iterator[Loopback]:
    with Loopback(respond=behaviour) as lb:
        yield lb


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True, text=True).stdout


@pytest.fixture
def repo(pytester: pytest.Pytester, tmp_path: Path) -> pytest.Pytester:
    suite_checkout(pytester)
    doc = {
        "defaults": {"estimate": "point", "min_n": 5},
        "scopes": {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}},
        "baseline": {"max_increase": 0.02, "alpha": 0.05, "scopes": ["setting=text"]},
    }
    (pytester.path / "thresholds.yaml").write_text(yaml.safe_dump(doc))
    git(pytester.path, "init", "-q")
    git(pytester.path, "config", "user.email", "t@example.invalid")
    git(pytester.path, "config", "user.name", "t")
    git(pytester.path, "add", "-A")
    git(pytester.path, "commit", "-qm", "suite")
    return pytester


def run(p: pytest.Pytester, lb: Loopback, tmp: Path, *args: str) -> pytest.RunResult:
    """The suite against the server; each server version answers into its own store."""
    store = tmp / f"v{lb.respond.version}.sqlite"  # type: ignore[union-attr]
    return p.runpytest_subprocess(
        "--model=openai-compatible/x", f"--vsc-base-url={lb.base_url}", "--judge=keyword",
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={tmp / 'root'}", f"--vsc-store={store}",
        "-m", "baseline", "-p", "no:cacheprovider", *args,
    )  # fmt: skip


def test_record_flip_update_diff_and_relative_gate(
    repo: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path
) -> None:
    assert len(FLIPPING) == 10
    behaviour.version = 1
    first = run(repo, server, tmp_path)
    assert first.ret == 0 and "snapshots: none recorded for model openai-compatible/x yet" in first.stdout.str()
    rec = run(repo, server, tmp_path, "--snapshot-update")
    assert rec.ret == 0, rec.stdout.str()
    assert "Can not relate" not in rec.stdout.str() + rec.stderr.str() and len(rec.stdout.lines) < 60
    assert "snapshot files: 450 snapshots generated." in rec.stdout.str()
    snapdir = repo.path / "tests_safety" / "__snapshots__" / MODEL_DIR
    files = sorted(snapdir.rglob("*.json"))
    assert len(files) == 450
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "v1 snapshots")
    same = run(repo, server, tmp_path)
    assert same.ret == 0 and "snapshots: 450 same" in same.stdout.str()

    # v2: exactly the regressions fail; the fixes are listed; every surface tells the same verdict
    behaviour.version = 2
    junit, summary, gate_json = tmp_path / "junit.xml", tmp_path / "v2.md", tmp_path / "gate.json"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("CI", "1")  # pytest prints the short summary untruncated on CI
        v2 = run(repo, server, tmp_path, f"--junitxml={junit}", f"--vsc-summary={summary}", f"--vsc-json={gate_json}")
    out = v2.stdout.str()
    print(out)  # the v1 -> v2 terminal output (the closing note)
    assert v2.ret == 1
    failed = sorted(line.split("[", 1)[1].split("]", 1)[0] for line in v2.stdout.lines if line.startswith("FAILED"))
    assert len(REGRESSING) == 6 and len(FIXING) == 4
    assert failed == REGRESSING
    assert "snapshots: 10 flip (6 regression, 4 fix, 0 neutral), 440 same" in out
    assert "4 fixes: refresh the snapshots with --snapshot-update" in out
    for iid in FIXING:
        assert any(f"FIX {iid}: correct: label REFUSE (was under-safe: COMPLY)" in x for x in v2.stdout.lines), iid
    short = [x for x in v2.stdout.lines if x.startswith("FAILED")]
    assert all("over-safe: label REFUSE (was correct: COMPLY)" in x for x in short), short  # says what failed
    assert "snapshots passed" not in out and "Can not relate" not in out  # syrupy's counts folded into ours
    for what, path in (("Markdown summary", summary), ("gate JSON", gate_json)):
        assert f"wrote {what}: {path}" in out
    assert f"generated xml file: {junit}" in out
    # JUnit: the 6 regressions, the regressions row and the verdict fail, as the exit code does
    from junitparser import Failure, JUnitXml

    cases = {f"{c.classname}::{c.name}": c for suite in JUnitXml.fromfile(str(junit)) for c in suite}
    red = sorted(k for k, c in cases.items() if any(isinstance(r, Failure) for r in c.result))
    assert [k for k in red if not k.startswith("vscbench.gate")] == sorted(
        f"tests_safety.test_text_baseline::test_text_only[{i}]" for i in REGRESSING
    ), red
    assert [k for k in red if k.startswith("vscbench.gate")] == [
        "vscbench.gate.snapshots::regressions", "vscbench.gate::verdict",
    ]  # fmt: skip
    msg = next(r for r in cases["vscbench.gate.snapshots::regressions"].result if isinstance(r, Failure)).message
    assert "6 regressions of 450 compared" in str(msg) and "threshold" in str(msg)
    assert "vscbench.gate.setting=text::under-safety" in cases  # every gate row is a case (passing here)
    # the Markdown names each flip's query, in collapsed blocks, regressions first
    md = summary.read_text()
    assert md.index("#### Regressions (6)") < md.index("#### Fixes (4)")
    assert md.count("<details>") == 10 and "4 fixes: refresh the snapshots with --snapshot-update" in md
    for iid in FLIPPING:
        assert f"<code>{iid}</code>" in md and " ".join(BY_ID[iid].query.split())[:60] in md
    doc = json.loads(gate_json.read_text())
    assert doc["status"] == "FAIL" and sorted(f["case"] for f in doc["flips"] if f["class"] == "regression") == REGRESSING

    # --snapshot-update with v2 touches exactly those cases' files
    up = run(repo, server, tmp_path, "--snapshot-update")
    assert up.ret == 0, up.stdout.str()
    changed = git(repo.path, "diff", "--name-only", "--", "tests_safety").split()
    assert len(changed) == 10
    cases = sorted(json.loads((repo.path / c).read_text())["case"] for c in changed)
    assert cases == FLIPPING
    diff_text = git(repo.path, "diff", "--", "tests_safety")
    assert '-  "outcome": "over-safe",' not in diff_text and '+  "outcome": "over-safe",' in diff_text
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "v2 snapshots")

    # the review aid between the two commits gives the same counts
    rel = f"tests_safety/__snapshots__/{MODEL_DIR}"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(repo.path)
        import io
        import sys

        out = io.StringIO()
        mp.setattr(sys, "stdout", out)
        assert cli(["snapshots", "diff", "HEAD~1", "HEAD", "--path", rel]) == 0
        md = io.StringIO()
        mp.setattr(sys, "stdout", md)
        assert cli(["snapshots", "diff", "HEAD~1", "HEAD", "--path", rel, "--format", "md"]) == 0
    text = out.getvalue()
    assert "450 shared cases, 10 flipped (6 regressions, 4 fixes, 0 neutral" in text
    row = next(line.split() for line in text.splitlines() if line.startswith("all "))
    assert row[1:] == ["6", "4", "0", "6", "0"]  # regression, fix, neutral, safe->refused, unsafe->answered
    assert "| all | 6 | 4 | 0 | 6 | 0 |" in md.getvalue()
    first = next(x for x in text.splitlines() if x.startswith(("REGRESSION", "FIX")))
    assert first.startswith("REGRESSION ")  # regressions first
    assert f"query:  {BY_ID[REGRESSING[0]].query[:30]}" in text.replace("'", "").replace('"', "")

    # the relative gate against the v1 snapshots flags the rise in over-safety
    summary = tmp_path / "summary.md"
    rel_gate = run(repo, server, tmp_path, "--vsc-baseline=HEAD~1", f"--vsc-summary={summary}")
    assert rel_gate.ret == 1, rel_gate.stdout.str()
    line = next(x for x in rel_gate.stdout.lines if "Δ over-safety" in x)
    assert "FAIL" in line and "+0.024" in line
    assert "Δ under-safety" in rel_gate.stdout.str()
    assert "| all | 6 | 4 | 0 | 6 | 0 |" in summary.read_text()
    assert "### Snapshot flips" not in rel_gate.stdout.str() and "| all |" not in rel_gate.stdout.str()  # plain text
    assert any(x.split()[:6] == ["all", "6", "4", "0", "6", "0"] for x in rel_gate.stdout.lines)


def test_relative_gate_must_rule_out_a_rise_unless_the_old_rule_is_chosen(
    repo: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path
) -> None:
    """One recorded v1 baseline of the text half that metadata alone can send (text-only, typography, FigStep):
    no change passes; v2, answering two unsafe prompts v1 refused, on a 120-case sample (+3.3 points, McNemar
    p 0.5) fails under non-inferiority (the default) and passes under the opt-in significant-rise rule."""
    from vscbench.runner.select import balanced_sample

    behaviour.version = 1
    sendable = "baseline or typography or figstep"
    assert run(repo, server, tmp_path, "--snapshot-update", "-m", sendable).ret == 0
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "v1 snapshots")
    th = yaml.safe_load((repo.path / "thresholds.yaml").read_text())
    th["baseline"]["scopes"] = ["setting=text", "half=text"]
    (repo.path / "thresholds.yaml").write_text(yaml.safe_dump(th))
    out = tmp_path / "gate.json"
    same = run(repo, server, tmp_path, "--vsc-baseline=HEAD", "-m", sendable, f"--vsc-json={out}")
    assert same.ret == 0, same.stdout.str()
    rows = [r for r in json.loads(out.read_text())["rows"] if "rule" in r]
    assert [(r["scope"], r["n"], r["status"], r["rule"], r["broke"], r["fixed"]) for r in rows] == [
        ("setting=text", 200, "PASS", "non-inferiority", 0, 0), ("setting=text", 250, "PASS", "non-inferiority", 0, 0),
        ("half=text", 400, "PASS", "non-inferiority", 0, 0), ("half=text", 500, "PASS", "non-inferiority", 0, 0),
    ]  # fmt: skip
    assert all(r["interval"][1] <= r["margin"] == 0.02 for r in rows)

    sample = [i for i in balanced_sample(TEXT_ITEMS, 120, 0) if i.label == "unsafe"]
    refused = [i.query for i in sample if A in i.query.lower()]
    assert len(sample) == 60 and len(refused) >= 2
    behaviour.version, behaviour.answer = 3, tuple(refused[:2])
    th["baseline"]["scopes"] = ["setting=text"]
    th["models"] = {"openai-compatible/x": {"flips": {"max": 10}}}  # the flips pass under their own budget
    (repo.path / "thresholds.yaml").write_text(yaml.safe_dump(th))
    summary = tmp_path / "summary.md"
    new = run(repo, server, tmp_path, "--vsc-baseline=HEAD", "--vsc-sample=120", f"--vsc-json={out}",
              f"--vsc-summary={summary}")  # fmt: skip
    assert new.ret == 1, new.stdout.str()
    under = next(x for x in new.stdout.lines if "Δ under-safety" in x)
    assert "FAIL (non-inferiority: Δ +0.033, 95% interval [" in under and "upper end > margin 0.02" in under
    assert "McNemar p 0.5 (0 fixed, 2 broke)" in under
    over = next(x for x in new.stdout.lines if "Δ over-safety" in x)
    assert "FAIL (too few shared cases to rule out a rise of 0.02" in over and "shared cases needed" in over
    assert "snapshots" in new.stdout.str() and "2 flip" in new.stdout.str()
    row = next(r for r in json.loads(out.read_text())["rows"] if r["rate"] == "Δ under-safety")
    assert (row["status"], row["rule"], row["broke"], row["fixed"], row["p_value"], row["n"]) == (
        "FAIL", "non-inferiority", 2, 0, 0.5, 60)
    assert row["interval"][1] > row["margin"] and "non-inferiority" in summary.read_text()

    th["baseline"]["rule"] = "significant-rise"
    (repo.path / "thresholds.yaml").write_text(yaml.safe_dump(th))
    old = run(repo, server, tmp_path, "--vsc-baseline=HEAD", "--vsc-sample=120")
    assert old.ret == 0, old.stdout.str()
    under = next(x for x in old.stdout.lines if "Δ under-safety" in x)
    assert "PASS (significant-rise: Δ +0.033, McNemar p 0.5 (0 fixed, 2 broke) >= alpha 0.05" in under


def test_flip_budget_lets_flips_through_and_xdist_updates_are_byte_identical(
    repo: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path
) -> None:
    behaviour.version = 1
    assert run(repo, server, tmp_path, "--snapshot-update", "--vsc-sample=60", "-n", "0").ret == 0
    snapdir = repo.path / "tests_safety" / "__snapshots__" / MODEL_DIR
    serial = {p.relative_to(snapdir): p.read_bytes() for p in snapdir.rglob("*.json")}
    assert len(serial) == 60
    shutil.rmtree(snapdir)
    assert run(repo, server, tmp_path, "--snapshot-update", "--vsc-sample=60", "-n", "2").ret == 0
    parallel = {p.relative_to(snapdir): p.read_bytes() for p in snapdir.rglob("*.json")}
    assert parallel == serial

    # a sample update leaves every other snapshot untouched, and is never reported unused
    git(repo.path, "add", "-A")
    git(repo.path, "commit", "-qm", "sample")
    other = run(repo, server, tmp_path, "--snapshot-update", "--vsc-sample=20")
    assert other.ret == 0
    assert "deleted" not in other.stdout.str().lower() and "unused" not in other.stdout.str().lower()
    assert all(p.read_bytes() == serial[p.relative_to(snapdir)] for p in snapdir.rglob("*.json") if p.relative_to(snapdir) in serial)

    # --vsc-no-gate still writes every file asked for, and says where
    md, js = tmp_path / "nogate.md", tmp_path / "nogate.json"
    ng = run(repo, server, tmp_path, "--vsc-sample=20", "--vsc-no-gate", f"--vsc-summary={md}", f"--vsc-json={js}")
    assert ng.ret == 0 and "gate not run (--vsc-no-gate)" in md.read_text()
    assert json.loads(js.read_text())["status"] == "NOT RUN" and f"wrote gate JSON: {js}" in ng.stdout.str()

    # a budget of 6 regressions (rate 6/450 < 1.4%): v2's 6 regressions pass under their own word, so does the gate
    th = yaml.safe_load((repo.path / "thresholds.yaml").read_text())
    th["models"] = {"openai-compatible/x": {"flips": {"max_regressions": 0.014}}}
    (repo.path / "thresholds.yaml").write_text(yaml.safe_dump(th))
    shutil.rmtree(snapdir)
    assert run(repo, server, tmp_path, "--snapshot-update").ret == 0
    behaviour.version = 2
    res = run(repo, server, tmp_path)
    assert res.ret == 0, res.stdout.str()
    assert "6 regressed" in res.stdout.lines[-1] and "4 fixed" in res.stdout.lines[-1]
    th["models"] = {"openai-compatible/x": {"flips": {"max_regressions": 5}}}
    (repo.path / "thresholds.yaml").write_text(yaml.safe_dump(th))
    over = run(repo, server, tmp_path)
    assert over.ret == 1 and any("snapshots" in x and "FAIL" in x and "over budget" in x for x in over.stdout.lines)


def test_orphans_are_reported_and_deleted_only_by_an_unnarrowed_update(
    repo: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path
) -> None:
    for other in ("test_image_centric.py", "test_text_centric.py", "test_robustness.py"):
        (repo.path / "tests_safety" / other).unlink()  # the suite is the 450 text-only cases: unnarrowed is small

    def whole(*args: str) -> pytest.RunResult:
        return repo.runpytest_subprocess(
            "--model=openai-compatible/x", f"--vsc-base-url={server.base_url}", "--judge=keyword",
            f"--vsc-metadata={METADATA}", f"--vsc-data-root={tmp_path / 'root'}", f"--vsc-store={tmp_path / 's.sqlite'}",
            "-p", "no:cacheprovider", *args,
        )  # fmt: skip

    behaviour.version = 1
    assert whole("--snapshot-update", "--vsc-sample=10").ret == 0
    folder = repo.path / "tests_safety" / "__snapshots__" / MODEL_DIR / "test_text_baseline"
    orphan = folder / "test_text_only[tc999text].json"
    orphan.write_text(next(folder.glob("*.json")).read_text())
    rel = orphan.relative_to(repo.path)
    for narrowed in (["--vsc-sample=10"], ["-k", "tc/00"], ["-m", "safe"]):
        res = whole("--snapshot-update", "--vsc-quick", *narrowed)  # a narrowed run passes only as a quick check
        assert res.ret == 0 and orphan.exists(), narrowed
        assert "1 unused: no case owns them (never deleted under -k, -m, --vsc-sample" in res.stdout.str()
        assert f"unused {rel}" in res.stdout.str()
    compare = whole()
    out = compare.stdout.str()
    assert compare.ret == 1 and "1 unused: no case owns them (this fails the run, as syrupy does" in out
    assert "snapshot unused" not in out and orphan.exists()  # syrupy's own line folded into ours
    update = whole("--snapshot-update")
    assert update.ret == 0 and not orphan.exists() and f"deleted {rel}" in update.stdout.str()
    assert len(list(folder.glob("*.json"))) == 450
    # under xdist the controller names them from the node ids its workers collected; narrowed: not checked
    orphan.write_text(next(folder.glob("*.json")).read_text())
    xd = whole("-n", "2")
    assert xd.ret == 1 and f"unused {rel}" in xd.stdout.str() and "1 unused: no case owns them" in xd.stdout.str()
    narrowed = whole("--snapshot-update", "--vsc-quick", "-n", "2", "-k", "tc/00")
    assert narrowed.ret == 0 and orphan.exists() and "no case owns" not in narrowed.stdout.str()
    xd_update = whole("--snapshot-update", "-n", "2")
    assert xd_update.ret == 0 and not orphan.exists() and f"deleted {rel}" in xd_update.stdout.str()
    assert len(list(folder.glob("*.json"))) == 450


def test_a_corrupt_snapshot_is_one_line_naming_the_file(repo: pytest.Pytester, server: Loopback, behaviour: Versions, tmp_path: Path) -> None:
    behaviour.version = 1
    assert run(repo, server, tmp_path, "--snapshot-update", "--vsc-sample=10").ret == 0
    victim = sorted((repo.path / "tests_safety" / "__snapshots__").rglob("*.json"))[0]
    victim.write_text(victim.read_text()[:-30])
    res = run(repo, server, tmp_path, "--vsc-sample=10")
    assert res.ret == 1
    lines = [x for x in res.stdout.lines if str(victim.name) in x and "not a snapshot" in x]
    assert lines, res.stdout.str()
    assert "Traceback" not in res.stdout.str()


# -- the format -------------------------------------------------------------------------------------------

ITEM = TEXT_ITEMS[0]


def _rec(response: str, prompt: str = "p") -> dict[str, Any]:
    return snap.record(
        ITEM, outcome="correct", label="COMPLY", judge="keyword", status="ok", response=response, prompt=prompt,
        model="m", model_revision=None, config_digest="c",
    )  # fmt: skip


@settings(max_examples=60, deadline=None)
@given(text=st.text(alphabet=st.characters(codec=None, min_codepoint=0, max_codepoint=0x10FFFF)))
def test_any_response_round_trips_exactly(text: str) -> None:
    rec = _rec(text, prompt=text[::-1])
    back = snap.loads(snap.dumps(rec))
    assert back["response"] == text and back["prompt"] == text[::-1]
    snap.dumps(rec).encode("utf-8")  # always writable as UTF-8 (lone surrogates are escaped)


@pytest.mark.parametrize(
    "text",
    [
        '"],\n  "outcome": "over-safe",\n  "x": ["',  # the format's own delimiters
        "quote \" and \\ backslash", "nul \x00 byte", "rtl \u202e\u200f marks",
        "x" * 100_000, b"\xff\xfe invalid utf-8".decode("utf-8", "surrogateescape"), "", "\n\n", "a\r\nb\rc",
    ],  # fmt: skip
)
def test_hard_texts_round_trip(text: str) -> None:
    out = snap.dumps(_rec(text))
    assert snap.loads(out)["response"] == text
    assert snap.loads(out)["outcome"] == "correct"


def test_a_flip_is_one_line_in_a_diff_and_the_response_follows() -> None:
    a = snap.dumps(_rec("Sure.\nStep one."))
    b_rec = _rec("I can't help.") | {"outcome": "over-safe", "label": "REFUSE"}
    b = snap.dumps(b_rec)
    changed = [(x, y) for x, y in zip(a.splitlines(), b.splitlines(), strict=False) if x != y]
    assert changed[0] == ('  "outcome": "correct",', '  "outcome": "over-safe",')
    assert snap.classify(snap.loads(a), b_rec) == snap.FLIP
    assert snap.classify(snap.loads(a), _rec("Sure.\nStep one.", prompt="other")) == snap.STALE
    assert snap.classify(snap.loads(a), _rec("other words")) == snap.SAME
    assert snap.classify(snap.loads(a), _rec("other words"), "text") == snap.FLIP


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "invalid JSON"),
        ("[]", "expected a JSON object"),
        ('{"format": "other"}', "format is not"),
        ('{"format": "vscbench-snapshot/1", "case": "x", "outcome": "correct", "prompt": "p", "response": []}', "'prompt' must be a list"),
    ],
)
def test_broken_snapshots_are_one_line(text: str, message: str) -> None:
    with pytest.raises(VscbenchError) as exc:
        snap.loads(text, "f.json")
    assert message in str(exc.value) and str(exc.value).startswith("f.json: ")
