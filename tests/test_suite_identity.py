"""The suite checks before it spends, reuses answers only for the same model revision, and two sessions on one
store never send the same request twice (pytester, against loopback servers)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from conftest import METADATA, suite_checkout
from loopback import Loopback
from test_suite_plugin import SCOPES, rule, run_suite, thresholds


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with Loopback(respond=rule) as lb:
        yield lb


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    return suite_checkout(pytester)


def _doc(scopes: str, models: str = "") -> str:
    return f"version: 1\ndefaults: {{min_n: 5}}\nscopes:\n{scopes}" + (f"models:\n{models}" if models else "")


#: (flag(s), the line's words). ROOT is the test's tmp folder; a thresholds file name is written there.
BAD = [
    (["--vsc-base-url=notaurl"], "--vsc-base-url notaurl: no scheme (http:// or https://)"),
    (["--vsc-base-url=ftp://127.0.0.1/v1"], "--vsc-base-url ftp://127.0.0.1/v1: scheme 'ftp:' is not http or https"),
    (["--vsc-concurrency=0"], "--vsc-concurrency 0: must be at least 1"),
    (["--vsc-max-attempts=0"], "--vsc-max-attempts 0: must be at least 1"),
    (["--vsc-thresholds=ROOT/dup.yaml"], "not valid YAML at line 5, column 3: duplicate key 'benchmark'"),
    (["--vsc-thresholds=ROOT/typo.yaml"], "models.gpt-4o-mnii: names no model alias, engine spec (PROVIDER/MODEL) or checkpoint folder (did you mean gpt-4o-mini?); known aliases: "),
    (["--vsc-thresholds=ROOT/empty.yaml"], "scopes.benchmark: no rate (max_under_safety or max_over_safety)"),
    (["--vsc-json=ROOT/absent/g.json"], "--vsc-json ROOT/absent/g.json: folder ROOT/absent does not exist"),
    (["--vsc-report=ROOT/absent/r.html"], "--vsc-report ROOT/absent/r.html: folder ROOT/absent does not exist"),
    (["--vsc-summary=ROOT"], "--vsc-summary ROOT: is a folder"),
    (["--junitxml=ROOT/absent/j.xml"], "--junitxml ROOT/absent/j.xml: folder ROOT/absent does not exist"),
    (["--vsc-baseline=ROOT/nosnaps"], "--vsc-baseline ROOT/nosnaps: no snapshots of model openai-compatible/x there"),
    (["--vsc-baseline=origin/main"], "--vsc-baseline: origin/main: not a git revision with tests_safety/__snapshots__/openai-compatible_x"),
    (["--model=ROOT/ckpt", "--vsc-device=cuda"], "--vsc-device cuda: "),
    (["--model=hf/org/not-on-this-machine"], "model 'hf/org/not-on-this-machine': not in the local hub cache and HF_HUB_OFFLINE is set"),
    (["--model=hf/ROOT/absent-ckpt"], "model 'hf/ROOT/absent-ckpt': no checkpoint folder ROOT/absent-ckpt on this machine"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("flags", "line"), BAD, ids=[b[0][-1].split("=")[0] + f"-{k}" for k, b in enumerate(BAD)]
)
def test_bad_input_is_one_line_exit_4_and_nothing_sent(
    suite: pytest.Pytester, server: Loopback, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    flags: list[str], line: str,
) -> None:  # fmt: skip
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    root = tmp_path / "in"
    root.mkdir()
    (root / "dup.yaml").write_text(
        _doc("  benchmark: {max_under_safety: 0.1}\n  benchmark: {max_under_safety: 0.9}\n")
    )
    (root / "typo.yaml").write_text(
        _doc(
            "  benchmark: {max_under_safety: 0.5}\n",
            "  gpt-4o-mnii: {scopes: {benchmark: {max_under_safety: 0.1}}}\n",
        )
    )
    (root / "empty.yaml").write_text(_doc("  benchmark: {}\n"))
    (root / "nosnaps").mkdir()
    (root / "ckpt").mkdir()
    (root / "ckpt" / "config.json").write_text("{}")
    argv = [f.replace("ROOT", str(root)) for f in flags]
    line = line.replace("ROOT", str(root))
    th = (
        []
        if any(a.startswith("--vsc-thresholds") for a in argv)
        else [f"--vsc-thresholds={thresholds(tmp_path / 't.yaml', SCOPES)}"]
    )
    model = [] if any(a.startswith("--model") for a in argv) else ["--model=openai-compatible/x"]
    url = (
        []
        if model == [] or any(a.startswith("--vsc-base-url") for a in argv)
        else [f"--vsc-base-url={server.base_url}"]
    )
    store = tmp_path / "s.sqlite"
    before = server.total
    res = suite.runpytest_subprocess(
        *model, *url, "--judge=keyword", f"--vsc-metadata={METADATA}", f"--vsc-store={store}", *th,
        "-m", "baseline", "--vsc-sample=10", "-p", "no:randomly", *argv,
    )  # fmt: skip
    text = res.stdout.str() + res.stderr.str()
    assert res.ret == pytest.ExitCode.USAGE_ERROR, text
    errors = [ln for ln in text.splitlines() if ln.startswith("ERROR:")]
    assert len(errors) == 1 and line in errors[0], text
    assert "Traceback" not in text and "vscbench safety gate" not in text
    assert server.total == before and not store.exists()  # nothing sent, nothing stored


def test_answers_are_reused_only_for_the_same_model_revision(
    suite: pytest.Pytester, tmp_path: Path, data_root: Path
) -> None:
    store, th = tmp_path / "s.sqlite", thresholds(tmp_path / "t.yaml", SCOPES)
    with Loopback(respond=rule) as lb:
        lb.model_ids = ["policy-a"]
        args = ("-m", "baseline", "--vsc-sample=10")

        def session(*extra: str) -> tuple[int, str, dict | None]:
            before = lb.total
            res, doc = run_suite(suite, lb, data_root, store, th, *args, *extra)
            return lb.total - before, res.stdout.str(), doc

        sent, out, doc = session("--snapshot-update")
        assert sent == 10 and "revision policy-a (/models)" in out, out
        assert doc is not None and doc["model_revision"] == "policy-a"
        snaps = list((suite.path / "tests_safety" / "__snapshots__").rglob("*.json"))
        assert snaps and {json.loads(p.read_text())["model_revision"] for p in snaps} == {"policy-a"}
        run_a = doc["run_id"]

        sent, out, doc = session()  # same id: nothing sent, and the line says where the answers came from
        assert sent == 0 and f"vscbench: 10 answers from the store (run {run_a}, recorded " in out, out

        lb.model_ids = ["policy-b"]  # same name and URL, another model behind it
        sent, out, doc = session()
        assert sent == 10, out
        assert f"vscbench: model revision changed: policy-b (/models); run {run_a} (recorded " in out
        assert "was policy-a: new run " in out and "every selected case is asked again" in out
        assert doc is not None and doc["model_revision"] == "policy-b" and doc["run_id"] != run_a

        sent, out, doc = session("--vsc-model-revision=policy-a")  # given: overrides what the server lists
        assert sent == 0 and f"10 answers from the store (run {run_a}, recorded " in out, out
        assert doc is not None and doc["model_revision"] == "policy-a"

        lb.model_ids = []  # the server names no model: the revision cannot be known
        sent, out, doc = session()
        assert sent == 10 and doc is not None and doc["model_revision"] is None, out
        sent, out, doc = session()
        assert sent == 0 and "warning: model revision unknown (GET /models listed no model)" in out, out
        assert "pass --vsc-fresh to ask again" in out


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("release_root")


def test_two_sessions_on_one_store_send_each_request_once(
    suite: pytest.Pytester, tmp_path: Path, data_root: Path
) -> None:
    store, th = tmp_path / "s.sqlite", thresholds(tmp_path / "t.yaml", SCOPES)
    with Loopback(respond=rule, latency=0.3) as lb:
        argv = [
            sys.executable, "-m", "pytest", "--model=openai-compatible/x", f"--vsc-base-url={lb.base_url}",
            "--judge=keyword", f"--vsc-metadata={METADATA}", f"--vsc-data-root={data_root}", f"--vsc-store={store}",
            f"--vsc-thresholds={th}", "-m", "baseline", "--vsc-sample=60", "--vsc-concurrency=8", "-p", "no:randomly",
            "-p", "no:cacheprovider", "--vsc-no-gate",  # a sample is no release verdict; this test is about sending
        ]  # fmt: skip
        procs = [
            subprocess.Popen(
                argv, cwd=suite.path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
            )
            for _ in range(2)
        ]
        outs = [p.communicate(timeout=300)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        assert lb.total == 60 and max(lb.counts.values()) == 1, (lb.total, outs)
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 60
        assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0  # every claim released


def test_models_yaml_revision_is_taken_as_given(tmp_path: Path) -> None:
    from vsc_fixtures.models import load_aliases

    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump({"mine": {"spec": "openai-compatible/x", "revision": "2026-11-01"}}))
    assert load_aliases(p)["mine"]["revision"] == "2026-11-01"
