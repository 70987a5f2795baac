"""`vscbench score`: responses made elsewhere are validated line by line, stored as a run, judged, reported."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import pytest

from vscbench.cli import main
from vscbench.data import load_items, resolve_paths
from vscbench.errors import VscbenchError
from vscbench.report.score import parse_responses, store_scored_run
from vscbench.store import Store
from vscbench.types import Item, Label, Status


@pytest.fixture(scope="module")
def items(metadata_dir: Path) -> list[Item]:
    return load_items(resolve_paths(metadata_dir, metadata_dir))


def by_id(items: list[Item]) -> dict[str, Item]:
    return {i.id: i for i in items}


def line(**kw: Any) -> str:
    return json.dumps(kw)


@pytest.mark.parametrize(
    ("lines", "message"),
    [
        (['{"item_id": "tc/000/figstep", "response": "x"}', "{not json"], "f.jsonl:2: not valid JSON"),
        (['["tc/000/figstep", "x"]'], "f.jsonl:1: expected a JSON object"),
        (['{"item_id": "tc/000/figstep"}'], "f.jsonl:1: missing key 'response'"),
        (['{"response": "x"}'], "f.jsonl:1: missing key 'item_id'"),
        (['{"item_id": "tc/999/figstep", "response": "x"}'], "f.jsonl:1: unknown item id 'tc/999/figstep'"),
        (
            ['{"item_id": "tc/000/figstep", "response": "x"}', "", '{"item_id": "tc/000/figstep", "response": "y"}'],
            "f.jsonl:3: duplicate item id 'tc/000/figstep' (first given on line 1)",
        ),
        (['{"item_id": "tc/000/figstep", "response": 3}'], "f.jsonl:1: 'response' must be a string"),
        (['{"item_id": 7, "response": "x"}'], "f.jsonl:1: 'item_id' must be a string"),
        (['{"item_id": "tc/000/figstep", "response": "x", "status": "fine"}'], "f.jsonl:1: unknown status 'fine'"),
        (["", "  "], "f.jsonl: no responses"),
    ],
)
def test_bad_lines_name_the_line(items: list[Item], lines: list[str], message: str) -> None:
    with pytest.raises(VscbenchError) as e:
        parse_responses(lines, by_id(items), "f.jsonl")
    assert message in str(e.value)


def test_statuses(items: list[Item]) -> None:
    rs = parse_responses(
        [
            line(item_id="tc/000/figstep", response="Sure, here you go."),
            line(item_id="tc/001/figstep", response="   "),
            line(item_id="tc/002/figstep", response="", status="blocked"),
            line(item_id="tc/003/figstep", response=None, status="error", error="timeout"),
            line(item_id="ic/drugs/000/safe/0", response="ok", status="OK"),
        ],
        by_id(items),
        "f",
    )
    assert [r.status for r in rs] == [Status.OK, Status.EMPTY, Status.BLOCKED, Status.ERROR, Status.OK]
    assert rs[3].error == "timeout" and rs[0].error is None


def test_invalid_file_stores_nothing(items: list[Item], tmp_path: Path) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(line(item_id="tc/000/figstep", response="a") + "\n" + line(item_id="nope", response="b") + "\n")
    with Store(tmp_path / "s.sqlite") as st:
        with pytest.raises(VscbenchError, match="r.jsonl:2: unknown item id 'nope'"):
            store_scored_run(st, f, items, run_id="x")
        assert not st.has_run("x")


def test_cli_errors_are_one_line(metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(line(item_id="tc/000/figstep", response="a") + "\n" + line(item_id="tc/000/figstep", response="b"))
    code = main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(tmp_path / "s.sqlite")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    assert "r.jsonl:2: duplicate item id 'tc/000/figstep'" in err
    code = main(["score", str(tmp_path / "absent.jsonl"), "--metadata", str(metadata_dir)])
    assert code == 2 and "cannot read" in capsys.readouterr().err


def test_score_stores_judges_and_reports(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end through the CLI; the judge is a stand-in here (the judges' own tests cover labelling)."""
    calls: list[tuple[str, list[str]]] = []

    def judge_run(store: Store, run_id: str, judges: list[Any]) -> None:
        ids = [j if isinstance(j, str) else j.id for j in judges]  # score builds the judge before storing
        calls.append((run_id, ids))
        labels = []
        for iid, r in store.responses(run_id).items():
            lab = Label.REFUSE if "cannot" in r.text else Label.COMPLY
            labels.append((iid, lab, {}))
        store.put_labels(run_id, ids[0], labels)

    fake = types.ModuleType("vscbench.judges.apply")
    fake.judge_run = judge_run  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vscbench.judges.apply", fake)
    f = tmp_path / "r.jsonl"
    f.write_text(
        "\n".join(
            [
                line(item_id="tc/000/figstep", response="I cannot help with that."),  # safe item, refused: wrong
                line(item_id="tc/000/search", response="Here is how."),  # safe, answered: right
                line(item_id="ic/drugs/000/unsafe/0", response="I cannot help with that."),  # unsafe, refused
                line(item_id="ic/drugs/000/safe/0", response="Sure."),  # safe, answered
                line(item_id="ic/drugs/000/unsafe/1", response="", status="error"),
            ]
        )
        + "\n"
    )
    store = tmp_path / "s.sqlite"
    code = main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store), "--run-id", "mine",
                 "--model", "my-vllm-model", "--judge", "keyword"])
    out = capsys.readouterr().out
    assert code == 0
    assert calls == [("mine", ["keyword"])]
    assert "VSCBench summary" in out and out.rstrip().endswith("run id: mine")
    with Store(store) as st:
        info = st.get_run("mine")
        assert (info.kind, info.model) == ("scored", "my-vllm-model")
        assert info.manifest["source_file"] == "r.jsonl" and len(info.manifest["source_sha256"]) == 64
        assert [i.id for i in st.run_items("mine")][:2] == ["tc/000/figstep", "tc/000/search"]
        assert st.counts("mine")["error"] == 1
    capsys.readouterr()
    assert main(["report", "--run", "mine", "--format", "json", "--store", str(store)]) == 0
    rows = {(r["group"], r["metric"]): r for r in json.loads(capsys.readouterr().out)["rows"]}
    assert rows[("half=image", "SRA_u")]["value"] == 1.0
    assert rows[("half=image", "SRA_u")]["excluded_error"] == 1
    assert rows[("half=text", "SRA_s")]["value"] == 0.5
    assert rows[("half=image", "pair_acc")]["value"] == 1.0  # drugs/000 slot 0: both right
    # the same run id again is refused before anything is stored twice
    assert main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store), "--run-id", "mine"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_score_with_the_real_keyword_judge(metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "r.jsonl"
    f.write_text(
        line(item_id="tc/000/typography", response="I'm sorry, but I cannot help with that request.") + "\n"
        + line(item_id="tc/000/figstep", response="1. Preheat the oven. 2. Mix flour and eggs. 3. Bake.") + "\n"
        + line(item_id="tc/000/concat", response="", status="blocked") + "\n"
    )
    store = tmp_path / "s.sqlite"
    args = ["score", str(f), "--metadata", str(metadata_dir), "--store", str(store), "--judge", "keyword"]
    assert main([*args, "--run-id", "k"]) == 0
    assert "run id: k" in capsys.readouterr().out
    with Store(store) as st:
        labels = {i: s.label for i, s in st.labels("k", "keyword").items()}
    assert labels["tc/000/typography"].safety_aware and not labels["tc/000/figstep"].safety_aware
    assert "tc/000/concat" not in labels  # blocked: scored by the report's policy, not judged
    # an unknown judge is refused before anything is stored
    assert main([*args[:-1], "no-such-judge", "--run-id", "k2"]) == 2
    err = capsys.readouterr().err
    assert "unknown judge 'no-such-judge'" in err and "stored run" not in err
    with Store(store) as st:
        assert not st.has_run("k2")


def test_nothing_to_judge_gives_a_report_not_a_loop(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """QA 5: a file whose only response is null stores, 'judges' nothing and reports 0 of 1 scored."""
    f = tmp_path / "bad.jsonl"
    f.write_text(line(item_id="tc/000/figstep", response=None) + "\n")
    store = tmp_path / "s.sqlite"
    code = main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store), "--judge", "keyword",
                 "--run-id", "b"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "0/1 scored (empty 1)" in out and out.rstrip().endswith("run id: b")
    assert main(["report", "--run", "b", "--store", str(store)]) == 0
    assert "excluded: empty 1" in capsys.readouterr().out


def test_failures_before_judging_store_nothing(
    metadata_dir: Path, items: list[Item], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.jsonl"
    good.write_text(line(item_id="tc/000/figstep", response="Sure.") + "\n")
    bad = tmp_path / "bad.jsonl"
    bad.write_text(line(item_id="tc/000/figstep", response="Sure.") + "\n" + "{oops\n")
    store = tmp_path / "s.sqlite"
    base = ["score", "--metadata", str(metadata_dir), "--store", str(store)]
    assert main([*base[:1], str(bad), *base[1:], "--judge", "keyword"]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err
    assert main([*base[:1], str(good), *base[1:], "--judge", "rubric:"]) == 2  # no model after rubric:
    assert main([*base[:1], str(good), *base[1:], "--judge", "bogus"]) == 2
    assert "unknown judge 'bogus'" in capsys.readouterr().err
    assert not store.exists()  # rejected input leaves no store file behind
    with Store(store) as st:
        assert st.list_runs() == []
    # a bad --blocked policy through the API is caught before storing too
    with Store(store) as st:
        from vscbench.report.score import score_file

        with pytest.raises(VscbenchError, match="--blocked"):
            score_file(st, good, items, judge="keyword", blocked="maybe")
        assert st.list_runs() == []


def test_rubric_judge_without_api_key_stores_nothing(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from vscbench.models.openai_api import KEY_ENV

    for name in KEY_ENV:
        monkeypatch.delenv(name, raising=False)
    f = tmp_path / "t.jsonl"
    f.write_text(line(item_id="tc/000/figstep", response="Sure.") + "\n")
    store = tmp_path / "s.sqlite"
    code = main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store),
                 "--judge", "rubric:openai/gpt-x", "--run-id", "k"])
    err = capsys.readouterr().err
    assert code == 2 and "openai: no API key" in err and "stored run" not in err
    assert not store.exists()
    with Store(store) as st:
        assert st.list_runs() == []


def test_blank_query_items_are_refused(items: list[Item]) -> None:
    blank = by_id(items)["ic/discrimination/016/safe/0"]
    assert blank.note is not None  # the official metadata has no query for this row
    with pytest.raises(VscbenchError) as e:
        parse_responses(
            [line(item_id="tc/000/figstep", response="x"), line(item_id=blank.id, response="x")],
            by_id(items),
            "t.jsonl",
        )
    assert str(e.value) == (
        "t.jsonl:2: item 'ic/discrimination/016/safe/0' has a blank query in the official metadata "
        "and is never scored"
    )


@pytest.mark.parametrize(
    ("run_id", "message"),
    [
        ("", "--run-id: empty run id"),
        ("a/b c", "--run-id: run id 'a/b c' has ' ', '/'"),
        ("x" * 101, "more than 100"),
    ],
)
def test_bad_run_ids_are_refused(
    metadata_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], run_id: str, message: str
) -> None:
    f = tmp_path / "t.jsonl"
    f.write_text(line(item_id="tc/000/figstep", response="Sure.") + "\n")
    store = tmp_path / "s.sqlite"
    code = main(["score", str(f), "--metadata", str(metadata_dir), "--store", str(store),
                 "--judge", "keyword", "--run-id", run_id])
    err = capsys.readouterr().err
    assert code == 2 and message in err and err.count("\n") == 1, err
    with Store(store) as st:
        assert st.list_runs() == []


def test_check_run_id() -> None:
    from vscbench.store import check_run_id

    for ok in ("a", "run-1.2_x", "x" * 100):
        assert check_run_id(ok) == ok
    for bad in ("", "a b", "a/b", "é", "x" * 101, "a\n"):
        with pytest.raises(VscbenchError):
            check_run_id(bad)
    with pytest.raises(VscbenchError, match="^--run: "):
        check_run_id("", "--run")
