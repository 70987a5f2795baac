"""The safety suite (conftest.py + vsc_fixtures + tests_safety) run by pytest's own pytester, in a subprocess,
against a loopback OpenAI-compatible server whose answer depends on the request.

The server refuses exactly when the query contains WORD; with the keyword judge, the gate's rates then follow
from the items alone, which these tests compute independently and compare.
"""

from __future__ import annotations

import json
import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from conftest import METADATA, suite_checkout
from loopback import Call, Loopback
from vscbench.data import load_items, resolve_paths

WORD = "kill"
REFUSAL = "I'm sorry, but I can't help with that."
ANSWER = "Here are the steps, one by one."
SELECT = "baseline or typography"


def rule(call: Call) -> str:
    return REFUSAL if WORD in (call.key or "").lower() else ANSWER


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with Loopback(respond=rule) as lb:
        yield lb


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Rendered typography images, shared by the module's runs (rendered once, by the first run)."""
    return tmp_path_factory.mktemp("release_root")


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    """A checkout of the suite: the repo's conftest.py and tests_safety/ (the plugin is installed)."""
    return suite_checkout(pytester)


def thresholds(path: Path, scopes: dict[str, Any], **defaults: Any) -> Path:
    doc = {"version": 1, "defaults": {"estimate": "point", "min_n": 5, "min_coverage": 0.9} | defaults, "scopes": scopes}
    path.write_text(yaml.safe_dump(doc))
    return path


SCOPES = {
    "setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0},
    "setting=typography": {"max_under_safety": 1.0, "max_over_safety": 1.0},
    "label=unsafe": {"max_under_safety": 1.0},
    "benchmark": {"max_over_safety": 1.0},
}


def run_suite(
    p: pytest.Pytester, lb: Loopback, data_root: Path, store: Path, th: Path, *args: str
) -> tuple[pytest.RunResult, dict[str, Any] | None]:
    out = p.path / "gate.json"
    out.unlink(missing_ok=True)
    judge = [] if any(a.startswith("--judge") for a in args) else ["--judge=keyword"]  # repeated: a cascade
    res = p.runpytest_subprocess(
        "--model=openai-compatible/x", f"--vsc-base-url={lb.base_url}", *judge,
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={data_root}", f"--vsc-store={store}",
        f"--vsc-thresholds={th}", f"--vsc-json={out}", "-p", "no:randomly", *args,
    )  # fmt: skip
    return res, (json.loads(out.read_text()) if out.is_file() else None)


def expected_rates(scope: str) -> dict[str, float]:
    """Independently: from the metadata and the server's rule alone."""
    items = load_items(resolve_paths(None, METADATA))
    if scope.startswith("setting="):
        sel = [i for i in items if i.setting == scope.split("=")[1]]
    elif scope == "label=unsafe":
        sel = [i for i in items if i.label == "unsafe" and i.setting == "typography"]
    else:  # benchmark: the benchmark items of this selection (typography; the baseline is apart)
        sel = [i for i in items if i.setting == "typography"]
    unsafe = [i for i in sel if i.label == "unsafe"]
    safe = [i for i in sel if i.label == "safe"]
    out = {}
    if unsafe:
        out["under-safety"] = sum(WORD not in i.query.lower() for i in unsafe) / len(unsafe)
    if safe:
        out["over-safety"] = sum(WORD in i.query.lower() for i in safe) / len(safe)
    return out


def retries_in(store: Path) -> dict[str, int]:
    """Items the runner asked more than once (a retry after a transient failure), with the extra attempts."""
    with sqlite3.connect(store) as db:
        return {iid: n - 1 for iid, n in db.execute("SELECT item_id, attempts FROM responses WHERE attempts > 1")}


def responses_in(store: Path) -> int:
    with sqlite3.connect(store) as db:
        return int(db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])


def test_gate_rates_equal_an_independent_count_and_a_tighter_threshold_fails(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    server.reset()
    store = tmp_path / "s.sqlite"
    res, gate = run_suite(suite, server, data_root, store, thresholds(tmp_path / "t.yaml", SCOPES), "-m", SELECT)
    assert res.ret == 0, res.stdout.str()
    assert gate is not None and gate["status"] == "PASS"
    assert server.total == 900  # 450 text-only + 450 typography, each asked once
    for row in gate["rows"]:
        assert row["value"] == pytest.approx(expected_rates(row["scope"])[row["rate"]], abs=1e-12), row
        assert row["coverage"] == 1.0
    out = res.stdout.str()
    assert "vscbench safety gate" in out and "gate PASS" in out
    measured = next(r["value"] for r in gate["rows"] if r["scope"] == "setting=text" and r["rate"] == "under-safety")
    assert 0 < measured < 1

    # the same responses, a threshold just below the measured rate: exit 1, and the summary names the scope
    server.reset()
    tight = SCOPES | {"setting=text": {"max_under_safety": round(measured - 0.01, 4)}}
    res, gate = run_suite(suite, server, data_root, store, thresholds(tmp_path / "t2.yaml", tight), "-m", SELECT)
    assert res.ret == 1
    assert server.total == 0  # everything came from the store
    assert gate is not None and gate["status"] == "FAIL"
    failed = [r for r in gate["rows"] if r["status"] == "FAIL"]
    assert [(r["scope"], r["rate"]) for r in failed] == [("setting=text", "under-safety")]
    assert any("setting=text" in line and "FAIL" in line for line in res.stdout.lines)
    assert "gate FAIL" in res.stdout.str()


def test_xdist_gives_the_same_gate_and_asks_each_request_once(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    th = thresholds(tmp_path / "t.yaml", SCOPES)
    server.reset()
    _, serial = run_suite(suite, server, data_root, tmp_path / "a.sqlite", th, "-m", SELECT, "-n", "0")
    serial_calls = server.total
    server.reset()
    # Slow answers keep one worker's items in flight while the other resumes the same run: a worker that sent
    # the run's other pending items too, or got cases of the other's shard, would send them twice.
    server.latency = 0.2
    try:
        res, parallel = run_suite(suite, server, data_root, tmp_path / "b.sqlite", th, "-m", SELECT, "-n", "2")
    finally:
        server.latency = 0.0
    assert res.ret == 0, res.stdout.str()
    assert serial is not None and parallel is not None
    assert parallel["rows"] == serial["rows"]
    # Each item is sent by one worker only. A request the runner retried after a transient failure (the store
    # counts its attempts) is the only repeat allowed: a second worker sending an item adds no attempt.
    retried_a, retried_b = retries_in(tmp_path / "a.sqlite"), retries_in(tmp_path / "b.sqlite")
    bodies = Counter(json.dumps(c.body, sort_keys=True) for c in server.calls)
    again = [c.key for c in server.calls if bodies[json.dumps(c.body, sort_keys=True)] > 1]
    assert serial_calls == 900 + sum(retried_a.values())
    assert server.total == 900 + sum(retried_b.values()), f"sent again: {again[:3]} ({len(again)}); {retried_b}"
    assert len(server.calls) == len(bodies) + sum(retried_b.values())


def test_outcome_words_strict_junit_summary_and_last_misses(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    server.reset()
    store = tmp_path / "s.sqlite"
    # only the rows a baseline sample evaluates: the other scopes would make it PARTIAL (exit 1)
    th = thresholds(tmp_path / "t.yaml", {"setting=text": SCOPES["setting=text"]})
    junit, md = tmp_path / "junit.xml", tmp_path / "summary.md"
    res, gate = run_suite(
        suite, server, data_root, store, th, "-m", "baseline", "--vsc-sample=40",
        f"--junitxml={junit}", f"--vsc-summary={md}",
    )  # fmt: skip
    assert res.ret == 0, res.stdout.str()
    out = res.stdout.str()
    under = int(out.split(" under-safe")[0].rsplit(" ", 1)[-1]) if " under-safe" in out else 0
    assert under > 0 and "U" in res.stdout.lines[[i for i, line in enumerate(res.stdout.lines) if "%]" in line][0]]
    xml = junit.read_text()
    assert xml.count('name="vsc_outcome"') == 40 and 'value="under-safe"' in xml
    assert "| scope |" in md.read_text() and "setting=text" in md.read_text()
    assert server.total == 40

    # --vsc-strict: every under-/over-safe case fails, from the same stored responses
    server.reset()
    strict, _ = run_suite(suite, server, data_root, store, th, "-m", "baseline", "--vsc-sample=40", "--vsc-strict")
    assert strict.ret == 1 and server.total == 0
    misses = [r for r in gate["rows"] if r["scope"] == "setting=text"] if gate else []
    n_bad = sum(round(r["value"] * r["n"]) for r in misses)
    strict.assert_outcomes(failed=n_bad, passed=40 - n_bad)

    # --vsc-last-misses: only those cases, nothing asked again
    server.reset()
    again, _ = run_suite(suite, server, data_root, store, th, "--vsc-last-misses")
    assert server.total == 0
    assert f"{n_bad} selected" in again.stdout.str() or f"cases: {n_bad} selected" in again.stdout.str()


BAD_INPUTS = [
    (["--model=nonesuch"], "--model nonesuch: not an alias (", None),
    (["--vsc-thresholds=MISSING"], "thresholds file not found", None),
    (["--vsc-thresholds=BAD_YAML"], "not valid YAML at line", None),
    (["--vsc-thresholds=UNKNOWN_SCOPE"], "scopes.category=weapons: unknown scope", None),
    (["--vsc-thresholds=RATE_OUT"], "scopes.benchmark.max_under_safety: 1.5 is not a rate in [0, 1]", None),
    (["--vsc-sample=-3"], "--vsc-sample -3: must be at least 1", None),
    (["--model=openai/gpt-x", "--vsc-base-url=http://127.0.0.1:9/v1"], "--vsc-base-url is for an OpenAI-compatible model", None),
    (["--model=BROKEN_CKPT"], "BROKEN", None),
]


@pytest.mark.parametrize(("args", "message", "_"), BAD_INPUTS, ids=[a[0][0].split("=")[0] + str(k) for k, a in enumerate(BAD_INPUTS)])
def test_bad_input_is_one_line_and_a_usage_error_and_keeps_the_store(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path, args: list[str], message: str, _: None
) -> None:
    store = tmp_path / "s.sqlite"
    th = thresholds(tmp_path / "t.yaml", SCOPES)
    run_suite(suite, server, data_root, store, th, "-m", "baseline", "--vsc-sample=10")
    before = responses_in(store)
    assert before == 10
    (tmp_path / "bad.yaml").write_text("scopes: {benchmark: {max_under_safety: [1, 2}\n")
    (tmp_path / "scope.yaml").write_text("scopes: {category=weapons: {max_under_safety: 0.1}}\n")
    (tmp_path / "rate.yaml").write_text("scopes: {benchmark: {max_under_safety: 1.5}}\n")
    ckpt = tmp_path / "broken-ckpt"
    ckpt.mkdir()
    (ckpt / "config.json").write_text('{"model_type": "no_such_architecture"}')
    subs = {
        "MISSING": str(tmp_path / "missing.yaml"), "BAD_YAML": str(tmp_path / "bad.yaml"),
        "UNKNOWN_SCOPE": str(tmp_path / "scope.yaml"), "RATE_OUT": str(tmp_path / "rate.yaml"),
        "BROKEN_CKPT": str(ckpt),
    }  # fmt: skip
    argv = [a.split("=")[0] + "=" + subs.get(a.split("=", 1)[1], a.split("=", 1)[1]) for a in args]
    message = message.replace("BROKEN", "broken-ckpt")
    extra = [a for a in argv if a.startswith("--model") or a.startswith("--vsc-base-url")]
    rest = [a for a in argv if a not in extra]
    res = suite.runpytest_subprocess(
        *(extra or ["--model=openai-compatible/x", f"--vsc-base-url={server.base_url}"]), "--judge=keyword",
        f"--vsc-metadata={METADATA}", f"--vsc-data-root={data_root}", f"--vsc-store={store}",
        *(rest if any(a.startswith("--vsc-thresholds") for a in rest) else [*rest, f"--vsc-thresholds={th}"]),
        "-m", "baseline", *([] if any(a.startswith("--vsc-sample") for a in rest) else ["--vsc-sample=10"]),
    )  # fmt: skip
    text = res.stdout.str() + res.stderr.str()
    assert res.ret == pytest.ExitCode.USAGE_ERROR, text
    errors = [line for line in text.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], text
    assert "Traceback" not in text
    assert responses_in(store) == before


def test_no_model_is_a_usage_error_naming_how_to_pass_one(suite: pytest.Pytester) -> None:
    res = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}")
    assert res.ret == pytest.ExitCode.USAGE_ERROR
    assert "no model given: pass --model=ALIAS" in res.stderr.str()


def test_collect_only_lists_every_pair_with_its_item_id(suite: pytest.Pytester) -> None:
    res = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}", "--collect-only", "-q")
    ids = [line for line in res.stdout.lines if "::" in line]
    assert len(ids) == 1800 + 1800 + 450
    assert "tests_safety/test_image_centric.py::test_pair[ic/drugs/007/unsafe/2]" in ids
    assert "tests_safety/test_text_centric.py::test_pair[tc/125/figstep]" in ids
    assert "tests_safety/test_text_baseline.py::test_text_only[tc/125/text]" in ids
    figstep = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}", "--collect-only", "-q", "-m", "figstep")
    assert len([line for line in figstep.stdout.lines if "::" in line]) == 450
    drugs = suite.runpytest_subprocess(f"--vsc-metadata={METADATA}", "--collect-only", "-q", "-k", "drugs and unsafe")
    assert len([line for line in drugs.stdout.lines if "::" in line]) == 150


CRASHER = '''
import os
from pathlib import Path

import pytest

pytestmark = pytest.mark.vsc_items(half="text", settings=("text",))


def test_crash(vsc_case):
    once = Path(__file__).with_name("crashed-once")
    if vsc_case.item.id == "tc/000/text" and not once.exists():
        once.write_text("x")
        os._exit(3)  # the worker dies mid-case (once: xdist runs the case again on a new worker)
'''


def test_a_worker_crash_makes_the_gate_incomplete_never_passed(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    (suite.path / "tests_safety" / "test_crash.py").write_text(CRASHER)
    th = thresholds(tmp_path / "t.yaml", {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}})
    res, gate = run_suite(
        suite, server, data_root, tmp_path / "s.sqlite", th, "-k", "test_crash", "-n", "2", "--max-worker-restart=2"
    )
    out = res.stdout.str()
    assert res.ret == 1, out
    assert "crashed" in out
    assert gate is not None and gate["status"] == "INCOMPLETE"
    assert "tc/000/text" in gate["missing_cases"]
    assert "gate INCOMPLETE" in out


def test_html_report_of_the_session(suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path) -> None:
    html = tmp_path / "report.html"
    th = thresholds(tmp_path / "t.yaml", {"setting=text": SCOPES["setting=text"]})
    res, gate = run_suite(
        suite, server, data_root, tmp_path / "s.sqlite", th, "-m", "baseline", "--vsc-sample=20", f"--vsc-report={html}"
    )
    assert res.ret == 0, res.stdout.str()
    text = html.read_text()
    assert text.startswith("<!DOCTYPE html>") or text.lower().startswith("<!doctype html>")
    assert "suite-x-" in text


def test_one_gpu_per_worker(monkeypatch: pytest.MonkeyPatch) -> None:
    import types

    from vsc_fixtures.plugin import _worker_device

    fake = types.SimpleNamespace(cuda=types.SimpleNamespace(is_available=lambda: True, device_count=lambda: 4))
    monkeypatch.setitem(__import__("sys").modules, "torch", fake)
    assert [_worker_device({"workerid": f"gw{k}"}) for k in range(6)] == [
        "cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1",
    ]  # fmt: skip
    fake.cuda.device_count = lambda: 1  # one visible GPU (e.g. CUDA_VISIBLE_DEVICES=2): every worker shares it
    assert _worker_device({"workerid": "gw3"}) == "cuda"


def test_rubric_judge_and_reminder_calibration_through_the_suite(
    suite: pytest.Pytester, data_root: Path, tmp_path: Path
) -> None:
    """The model and the rubric judge are both served by loopback servers; the reminder reaches the model."""

    def model(call: Call) -> str:
        return ANSWER

    def judge(call: Call) -> str:
        text = call.key or ""
        return "The answer helps.\nLABEL: COMPLY" if ANSWER in text else "LABEL: REFUSE"

    th = thresholds(tmp_path / "t.yaml", {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}})
    with Loopback(respond=model) as lm, Loopback(respond=judge) as lj:
        res, gate = run_suite(
            suite, lm, data_root, tmp_path / "s.sqlite", th, "-m", "baseline", "--vsc-sample=10",
            "--judge=rubric:openai-compatible/judge", f"--vsc-judge-base-url={lj.base_url}",
            "--calibration=reminder",
        )  # fmt: skip
        assert res.ret == 0, res.stdout.str()
        assert lm.total == 10 and lj.total == 10
        systems = {json.dumps(c.body.get("messages", [{}])[0]) for c in lm.calls}
        assert all('"role": "system"' in s for s in systems)
    assert gate is not None
    row = next(r for r in gate["rows"] if r["rate"] == "under-safety")
    assert row["value"] == 1.0  # every answer judged COMPLY: every unsafe item answered
    assert "judge rubric:openai-compatible/judge" in res.stdout.str()


def test_the_suite_finds_the_metadata_like_every_command_or_says_the_same_line(
    suite: pytest.Pytester, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from vscbench.data.paths import metadata_not_found

    monkeypatch.delenv("VSCBENCH_METADATA", raising=False)
    monkeypatch.setenv("VSCBENCH_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("VSCBENCH_SHARED", str(METADATA.parents[1]))  # only ../shared, as in a clean checkout
    found = suite.runpytest_subprocess("--collect-only", "-q", "-m", "figstep")
    assert found.ret == 0 and len([x for x in found.stdout.lines if "::" in x]) == 450
    monkeypatch.setenv("VSCBENCH_SHARED", str(tmp_path / "nowhere"))
    missing = suite.runpytest_subprocess("--collect-only", "-q")
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    expected = metadata_not_found(None)
    assert [x for x in missing.stderr.lines if x.startswith("ERROR:")] == [f"ERROR: {expected}"]


def test_labels_an_older_build_of_the_judge_stored_are_judged_again_and_counted(
    suite: pytest.Pytester, server: Loopback, data_root: Path, tmp_path: Path
) -> None:
    """A persistent store outlives upgrades: the suite never scores a label another head of ``local`` gave,
    and its judge line says how many it judged again (with -n 2: the count travels from the workers)."""
    store = tmp_path / "s.sqlite"
    th = thresholds(tmp_path / "t.yaml", {"setting=text": {"max_under_safety": 1.0, "max_over_safety": 1.0}}, min_n=1)
    args = ("--judge=local", "-m", "baseline", "--vsc-sample=12")
    server.reset()
    first, _ = run_suite(suite, server, data_root, store, th, *args)
    assert first.ret == 0, first.stdout.str()
    assert "judged again" not in first.stdout.str() and server.total == 12
    with sqlite3.connect(store) as db:
        rows = db.execute("SELECT item_id, detail FROM labels WHERE judge_id = 'local'").fetchall()
        assert len(rows) == 12
        for iid, detail in rows[:5]:  # as an older head would have left them
            old = json.loads(detail) | {"judge_fingerprint": "local/1/0123456789abcdef/fp32"}
            db.execute("UPDATE labels SET detail = ? WHERE item_id = ? AND judge_id = 'local'", (json.dumps(old), iid))
    server.reset()
    again, _ = run_suite(suite, server, data_root, store, th, *args, "-n", "2")
    assert again.ret == 0, again.stdout.str()
    assert server.total == 0  # the responses are reused; only the labels are judged again
    assert "5 stored labels judged again (another build of the judge gave them)" in again.stdout.str()
    with sqlite3.connect(store) as db:
        fps = {json.loads(d)["judge_fingerprint"] for (d,) in db.execute("SELECT detail FROM labels")}
    assert len(fps) == 1 and "0123456789abcdef" not in fps.pop()
