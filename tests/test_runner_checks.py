"""``vscbench run`` guards: what a resume must match, what counts as never sent, bad flags, exit codes."""

from __future__ import annotations

import hashlib
import json
import shlex
from pathlib import Path
from typing import Any

import pytest

from conftest import METADATA
from loopback import Loopback, Reply
from vscbench.calibration.base import FACTORIES
from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.data.synthetic import tiny_image_bytes
from vscbench.errors import VscbenchError
from vscbench.runner.core import Limits, RetryPolicy
from vscbench.runner.run import EXCLUDED_ARTIFACT, run_generation
from vscbench.runner.select import Selection, balanced_sample
from vscbench.store import Store
from vscbench.types import GenConfig, Item, Request

FAST = RetryPolicy(max_attempts=2, base_delay=0.001, max_delay=0.01, timeout_s=5.0)
BLANK = "blank query"


def go(lb: Loopback, tmp_path: Path, **kw: Any) -> Any:
    kw.setdefault("metadata", str(METADATA))
    kw.setdefault("root", str(tmp_path / "root"))
    kw.setdefault("store", tmp_path / "s.sqlite")
    kw.setdefault("policy", FAST)
    kw.setdefault("progress", False)
    base_url = kw.pop("base_url", lb.base_url)
    return run_generation("openai-compatible/m", base_url=base_url, **kw)


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out = capsys.readouterr()
    return code, out.out, out.err


class _Split:
    """A calibration fitted on the query ids listed (JSON) in ``file=``; its sha256 is the file's."""

    requires_activations = False

    def __init__(self, opts: dict[str, str], spec: str) -> None:
        self.spec = spec
        data = Path(opts["file"]).read_bytes()
        self.sha = hashlib.sha256(data).hexdigest()
        self.queries = frozenset(json.loads(data))

    def excluded_query_ids(self) -> frozenset[str]:
        return self.queries

    def prepare(self, items: Any) -> None: ...

    def apply(self, item: Item, request: Request) -> Request:
        assert item.query_id not in self.queries
        return request

    def manifest(self) -> dict[str, Any]:
        return {"method": "split", "spec": self.spec, "sha256": self.sha, "path": "ignored"}

    def artifacts(self) -> dict[str, tuple[bytes, str]]:
        return {}


@pytest.fixture
def split(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    monkeypatch.setitem(FACTORIES, "split", lambda opts, spec: _Split(opts, spec))
    f = tmp_path / "split.json"
    f.write_text(json.dumps([f"tc/{k:03d}" for k in range(0, 450, 3)]))  # every third text query
    return f


# ---- QA 4: only items of the sample count as never sent, with their snapshots -------------------------
def test_never_sent_items_are_the_unsendable_items_of_the_sample(
    lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    pool = load_items(resolve_paths(root, METADATA), categories=["discrimination"])
    samples = {seed: balanced_sample(pool, 40, seed) for seed in range(40)}
    with_blank = next(s for s, sample in samples.items() if any(i.note for i in sample))
    without = next(s for s, sample in samples.items() if not any(i.note for i in sample))
    for it in samples[with_blank] + samples[without]:
        if not it.note:
            p = Path(it.image or "")
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(tiny_image_bytes("PNG"))
    store = str(tmp_path / "s.sqlite")
    common = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    common += ["--root", str(root), "--store", store, "--category", "discrimination", "--limit", "40"]

    blank = {i.id: i for i in samples[with_blank] if i.note}
    assert 0 < len(blank) < 12  # the sample holds some of the 12 blank-query items, not all
    code, out, _ = cli(capsys, *common, "--sample-seed", str(with_blank), "--run-id", "b")
    assert code == 0 and f"never sent {len(blank)} (blank query)" in out
    with Store(store) as st:
        m = st.get_run("b").manifest
        assert set(m["excluded_items"]) == set(blank) and len(st.run_items("b")) == 40 - len(blank)
        art = st.get_artifact("b", EXCLUDED_ARTIFACT)
        assert art is not None
        assert [Item.from_dict(json.loads(line)) for line in art.decode().splitlines()] == list(
            blank.values()
        )
        assert m["counts"]["ok"] == 40 - len(blank)

    code, out, _ = cli(capsys, *common, "--sample-seed", str(without), "--run-id", "n")
    assert code == 0 and "never sent 0" in out
    with Store(store) as st:
        assert st.get_run("n").manifest["excluded_items"] == {} and len(st.run_items("n")) == 40
        assert st.get_artifact("n", EXCLUDED_ARTIFACT) is None


def test_calibration_split_outside_the_sample_is_not_counted(
    lb: Loopback, tmp_path: Path, split: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    held = set(json.loads(split.read_text()))
    pool = load_items(resolve_paths(tmp_path, METADATA), settings=["text"])
    sample = balanced_sample(pool, 30)
    expected = {i.id for i in sample if i.query_id in held}
    assert 0 < len(expected) < 30
    store = str(tmp_path / "s.sqlite")
    argv = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--store", store, "--setting", "text", "--limit", "30", "--run-id", "sp"]
    code, out, _ = cli(capsys, *argv, "--calibration", f"split:file={split}")
    assert code == 0 and f"never sent {len(expected)} (calibration split)" in out
    with Store(store) as st:
        assert set(st.get_run("sp").manifest["excluded_items"]) == expected
        assert {i.id for i in st.run_items("sp")} == {i.id for i in sample} - expected
    assert lb.total == 30 - len(expected)


# ---- QA 2: a resume refuses a calibration that changed ----------------------------------------------
def test_resume_refuses_a_changed_calibration_before_writing(
    lb: Loopback, tmp_path: Path, split: Path
) -> None:
    sel = Selection(settings=("text",), limit=8)
    spec = [f"split:file={split}"]
    lb.script.update(
        {i.query: [Reply(status=400)] * 2 for i in load_items(resolve_paths(tmp_path, METADATA))}
    )
    first = go(lb, tmp_path, selection=sel, run_id="c", calibrations=spec)
    assert first.counts["error"] == first.counts["items"] > 0
    split.write_text(json.dumps(["tc/001"]))  # "refitted": another split, another sha256
    lb.reset()
    with Store(tmp_path / "s.sqlite") as st:
        before = st.get_run("c").manifest
    with pytest.raises(VscbenchError, match=r"run 'c': calibration 'split:file=.*' is not the one .*sha256"):
        go(lb, tmp_path, run_id="c", calibrations=spec, retry_errors=True)
    assert lb.total == 0
    with Store(tmp_path / "s.sqlite") as st:
        assert st.get_run("c").manifest == before  # nothing written


# ---- QA 1: a resume refuses another endpoint; the hint really resumes ---------------------------------
def test_resume_refuses_another_base_url(lb: Loopback, tmp_path: Path) -> None:
    go(lb, tmp_path, selection=Selection(settings=("text",), limit=2), run_id="u")
    lb.reset()
    with pytest.raises(VscbenchError, match=rf"run 'u' was made against 127.0.0.1:{lb.port}, .*127.0.0.1:9"):
        go(lb, tmp_path, run_id="u", base_url="http://127.0.0.1:9/v1", retry_errors=True)
    with Store(tmp_path / "s.sqlite") as st:
        assert len(st.get_run("u").manifest["invocations"]) == 1


def test_all_errors_exit_1_and_the_hint_resumes_the_same_run(
    lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    lb.respond = lambda call: Reply(status=400)
    argv = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--root", str(tmp_path / "root"), "--store", "my.sqlite", "--setting", "text", "--limit", "4"]
    argv += ["--run-id", "e", "--max-tokens", "64", "--calibration", "reminder", "--max-attempts", "1"]
    code, out, err = cli(capsys, *argv)
    assert code == 1 and "error 4" in out
    assert "every one of the 4 item(s) sent ended in error (e.g. " in err and "injected fault" in err
    hint = err.split("re-ask them with '", 1)[1].split("'\n", 1)[0]
    assert "--base-url" in hint and "--store my.sqlite" in hint and "--metadata" in hint and "--root" in hint

    code, out, err = cli(capsys, *argv[:-2])  # resume without --retry-errors: errors are kept, said so
    assert code == 0 and "sent 0, already answered 0, errors not re-asked 4" in out

    lb.respond = None  # the server recovered: the printed hint re-asks exactly the errored items
    lb.reset()
    code, out, err = cli(capsys, *shlex.split(hint)[1:])
    assert code == 0 and "run e (resumed)" in out and "ok 4" in out and err == ""
    assert lb.total == 4


def test_partial_errors_keep_exit_0_and_print_the_hint(
    lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = balanced_sample(load_items(resolve_paths(tmp_path, METADATA), settings=["text"]), 5)[2]
    lb.script[bad.query] = [Reply(status=400)]
    argv = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--store", str(tmp_path / "p.sqlite"), "--setting", "text", "--limit", "5", "--run-id", "p"]
    code, out, err = cli(capsys, *argv, "--max-attempts", "1")
    assert code == 0 and "error 1" in out
    assert "1 item(s) of run p ended in error; re-ask them with 'vscbench run" in err
    assert "every one" not in err


# ---- QA 17: the manifest's selection follows a resume ----------------------------------------------
def test_resume_updates_the_selection_and_says_when_it_keeps_items(
    lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = str(tmp_path / "s.sqlite")
    argv = ["run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA)]
    argv += ["--store", store, "--setting", "text", "--run-id", "g", "--limit"]
    assert cli(capsys, *argv, "4")[0] == 0
    code, out, err = cli(capsys, *argv, "7")
    assert code == 0 and "items 7: sent 3, already answered 4" in out
    code, out, err = cli(capsys, *argv, "2")
    assert code == 0 and "keeps all its 7 items" in err and "adds 0" in err
    with Store(store) as st:
        m = st.get_run("g").manifest
    assert m["selection"]["limit"] == 7 and "added_selections" not in m
    assert [inv["selection"]["limit"] for inv in m["invocations"]] == [4, 7, 2]
    assert cli(capsys, *argv[:-1], "--category", "homonyms", "--limit", "1")[0] == 0
    with Store(store) as st:
        m = st.get_run("g").manifest
    assert m["selection"]["limit"] == 7 and m["added_selections"][0]["categories"] == ["homonyms"]


# ---- QA 7, 9, 18: bad options stop before anything is written -----------------------------------------
@pytest.mark.parametrize(
    ("kw", "flag"),
    [
        ({"policy": RetryPolicy(max_attempts=0)}, "--max-attempts 0: must be at least 1"),
        ({"limits": Limits(concurrency=0)}, "--concurrency 0: must be at least 1"),
        ({"limits": Limits(rpm=0)}, "--rpm 0: must be above 0"),
        ({"config": GenConfig(top_p=2.0)}, "--top-p 2: must be above 0 and at most 1"),
        ({"config": GenConfig(max_tokens=0)}, "--max-tokens 0: must be at least 1"),
        ({"batch_size": 0}, "--batch-size 0: must be at least 1"),
        ({"selection": Selection(limit=0)}, "--limit 0: must be at least 1"),
        ({"selection": Selection(categories=("bogus",))}, "--category bogus"),
    ],
)
def test_bad_options_write_nothing(lb: Loopback, tmp_path: Path, kw: dict[str, Any], flag: str) -> None:
    with pytest.raises(VscbenchError, match=flag):
        go(lb, tmp_path, run_id="bad", **kw)
    assert not (tmp_path / "s.sqlite").exists() and lb.total == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--concurrency", "0"], "argument --concurrency: must be at least 1, got 0"),
        (["--concurrency", "-1"], "argument --concurrency: must be at least 1, got -1"),
        (["--timeout", "-1"], "argument --timeout: must be zero or more, got -1"),
        (["--rpm", "0"], "argument --rpm: must be above 0, got 0"),
        (["--tpm", "-5"], "argument --tpm: must be above 0, got -5"),
        (["--temperature", "-1"], "argument --temperature: must be zero or more, got -1"),
        (["--max-tokens", "0"], "argument --max-tokens: must be at least 1, got 0"),
        (["--top-p", "2"], "argument --top-p: must be above 0 and at most 1, got 2"),
        (["--batch-size", "0"], "argument --batch-size: must be at least 1, got 0"),
        (["--max-attempts", "0"], "argument --max-attempts: must be at least 1, got 0"),
        (["--limit", "0"], "argument --limit: must be at least 1, got 0"),
        (["--setting", "bogus"], "argument --setting: invalid choice: 'bogus'"),
        (["--dtype", "float64"], "argument --dtype: invalid choice: 'float64'"),
    ],
)
def test_cli_rejects_bad_numbers_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    store = tmp_path / "x.sqlite"
    argv = ["run", "-m", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1", "--store", str(store)]
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--metadata", str(METADATA), *args])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and message in err and err.count("\n") == 1
    assert not store.exists()


def test_cli_names_an_unknown_category(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "x.sqlite"
    code, _, err = cli(capsys, "run", "-m", "openai-compatible/m", "--base-url", "http://127.0.0.1:9/v1",
                       "--store", str(store), "--metadata", str(METADATA), "--category", "bogus")  # fmt: skip
    assert code == 2 and "--category bogus: not an image category" in err and not store.exists()


def test_run_and_runs_help_describe_themselves(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Run it again with the same --run-id to resume" in out
    for text in ("(default 512)", "(default 0: greedy)", "(default: not sent)", "(default: both)"):
        assert text in out
    assert "{auto,float32,float16,bfloat16}" in out and "{cpu,cuda,auto}" in out
    with pytest.raises(SystemExit):
        main(["runs", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "List every run in the store" in out and "print the runs as JSON" in out


# ---- a resume must see the images and metadata the run started with -----------------------------------
def _write_images(items: list[Item], data: bytes) -> None:
    for it in items:
        p = Path(it.image or "")
        p.parent.mkdir(parents=True, exist_ok=True)
        if not p.exists():
            p.write_bytes(data)


def test_resume_refuses_changed_images_or_metadata_but_accepts_added_items(
    lb: Loopback, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = tmp_path / "root"
    pool = load_items(resolve_paths(root, METADATA), settings=["image"], categories=["drugs"])
    sel4, sel8 = Selection(settings=("image",), categories=("drugs",), limit=4), Selection(
        settings=("image",), categories=("drugs",), limit=8
    )
    _write_images(balanced_sample(pool, 4), tiny_image_bytes("PNG"))
    go(lb, tmp_path, selection=sel4, run_id="r")
    # a larger --limit adds items (with their own new images): accepted
    _write_images(balanced_sample(pool, 8), tiny_image_bytes("JPEG"))
    assert go(lb, tmp_path, selection=sel8, run_id="r").counts["ok"] == 8
    store = tmp_path / "s.sqlite"
    with Store(store) as st:
        before = st.get_run("r").manifest
        answered = st.run_items("r")
    # overwrite one answered item's image: refused before anything is written
    changed = Path(answered[0].image or "")
    original = changed.read_bytes()
    changed.write_bytes(original + b"x")
    with pytest.raises(VscbenchError, match=r"^run 'r': images or metadata changed since it started \(image hash "):
        go(lb, tmp_path, selection=sel8, run_id="r")
    code, _, err = cli(
        capsys, "run", "-m", "openai-compatible/m", "--base-url", lb.base_url, "--metadata", str(METADATA),
        "--root", str(root), "--store", str(store), "--run-id", "r",
    )  # fmt: skip
    assert code == 2 and err.count("\n") == 1 and "use a new --run-id" in err
    with Store(store) as st:
        assert st.get_run("r").manifest == before
    changed.write_bytes(original)  # restored: the resume goes on
    assert go(lb, tmp_path, selection=sel8, run_id="r").counts["ok"] == 8
    # other metadata (e.g. another --root whose metadata differs): refused too
    import openpyxl

    other = tmp_path / "meta"
    other.mkdir()
    for f in Path(METADATA).glob("*.xlsx"):
        if "image_centric" in f.name:
            (other / f.name).write_bytes(f.read_bytes())
        else:  # same rows, other bytes
            openpyxl.load_workbook(f).save(other / f.name)
    with pytest.raises(VscbenchError, match=r"images or metadata changed since it started \(metadata sha256 "):
        go(lb, tmp_path, selection=sel8, run_id="r", metadata=str(other))


def test_resume_rebuilds_deleted_rendered_images_instead_of_refusing(lb: Loopback, tmp_path: Path) -> None:
    """FigStep images are rendered deterministically: deleting them between invocations is no change."""
    sel = Selection(settings=("figstep",), limit=4)
    first = go(lb, tmp_path, selection=sel, run_id="fs")
    assert first.counts["ok"] == 4
    figstep = sorted((tmp_path / "root").rglob("*_fistep.png"))
    assert figstep
    for p in figstep:
        p.unlink()
    again = go(lb, tmp_path, selection=Selection(settings=("figstep",), limit=6), run_id="fs")
    assert again.counts["ok"] == 6 and all(p.is_file() for p in figstep)
