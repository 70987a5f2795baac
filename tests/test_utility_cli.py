"""Acceptance: ``vscbench utility make-synthetic`` + ``vscbench utility`` against a loopback server.

The server knows each synthetic example by the bytes of its image and answers right, wrong, or with an
HTTP error, so the expected accuracy is known exactly.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopback import Call, Loopback, Reply
from vscbench.cli import main
from vscbench.store import Store
from vscbench.utility.dataset import load_examples
from vscbench.utility.run import EXAMPLES_ARTIFACT, GRADES_ARTIFACT, SCORES_ARTIFACT

N = 10
RIGHT = {f"syn-{i:04d}" for i in range(1, 7)}  # 6 right
ERROR = "syn-0010"  # 1 error; 3 wrong


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("syn")
    assert main(["utility", "make-synthetic", "--out", str(out), "--n", str(N), "--seed", "1"]) == 0
    return out / "data.jsonl"


class Oracle:
    """Answers each example by its image: right for RIGHT, 'no idea' otherwise, HTTP 400 for ERROR;
    as the grader model it says CORRECT, except 'maybe' (unreadable) the first time it is asked."""

    def __init__(self, data: Path) -> None:
        self.by_image: dict[str, tuple[str, str]] = {}
        for ex in load_examples(data):
            assert ex.image is not None
            right = ex.answers[0] if ex.answer_type != "numeric" else f"There are {ex.answers[0]}."
            self.by_image[hashlib.sha256(Path(ex.image).read_bytes()).hexdigest()] = (ex.id, right)
        self.graded = 0

    def __call__(self, call: Call) -> Reply | str | None:
        body: dict[str, Any] = call.body
        if body["model"] == "grader":
            self.graded += 1  # the server calls this under its lock
            return "maybe" if self.graded == 1 else "CORRECT"
        content = body["messages"][-1]["content"]
        url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
        ex_id, right = self.by_image[hashlib.sha256(base64.b64decode(url.split(",", 1)[1])).hexdigest()]
        if ex_id == ERROR:
            return Reply(status=400, error_message="bad request")
        return right if ex_id in RIGHT else "I have no idea."


@pytest.fixture(scope="module")
def server(dataset: Path) -> Iterator[Loopback]:
    with Loopback(respond=Oracle(dataset)) as lb:
        yield lb


def _utility(
    capsys: pytest.CaptureFixture[str], server: Loopback, data: Path, store: Path, *extra: str
) -> tuple[int, str, str]:
    argv = ["utility", "-m", "openai-compatible/x", "--base-url", server.base_url, "--data", str(data)]
    argv += ["--store", str(store), "--no-progress", "--max-attempts", "1", *extra]
    code = main(argv)
    out, err = capsys.readouterr()
    return code, out, err


def test_accuracy_with_interval_stored_and_resumable(
    capsys: pytest.CaptureFixture[str], server: Loopback, dataset: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite"
    server.reset()
    code, out, _ = _utility(capsys, server, dataset, store, "--run-id", "u1", "--json")
    assert code == 0
    res = json.loads(out)
    u = res["utility"]
    assert (u["n"], u["scored"], u["correct"]) == (N, 9, 6)
    assert u["accuracy"] == pytest.approx(6 / 9)
    lo, hi = u["ci"]
    assert 0.0 <= lo < 6 / 9 < hi <= 1.0
    assert u["excluded"] == {"error": 1}
    assert server.total == N

    with Store(store) as st:
        run = st.get_run("u1")
        assert run.kind == "utility" and run.model == "openai-compatible/x"
        assert run.manifest["utility"]["accuracy"] == pytest.approx(6 / 9)
        assert run.manifest["calibration_specs"] == []
        scores = {
            d["id"]: d for d in map(json.loads, (st.get_artifact("u1", SCORES_ARTIFACT) or b"").splitlines())
        }
        assert {k for k, d in scores.items() if d["correct"]} == RIGHT
        assert scores[ERROR]["correct"] is None and scores[ERROR]["reason"] == "error"
        stored_examples = (st.get_artifact("u1", EXAMPLES_ARTIFACT) or b"").decode().splitlines()
        assert len(stored_examples) == N
        assert st.counts("u1")["error"] == 1

    # resuming asks only the errored example again; the result is unchanged
    code, out, _ = _utility(capsys, server, dataset, store, "--run-id", "u1")
    assert code == 0 and server.total == N + 1
    assert "accuracy 0.667 [" in out and "excluded: error 1" in out and "(resumed)" in out

    # resuming with another calibration is refused before anything is sent
    code, _, err = _utility(capsys, server, dataset, store, "--run-id", "u1", "--calibration", "reminder")
    assert code == 2 and "calibration_specs" in err and server.total == N + 1


def test_calibration_is_applied_and_recorded(
    capsys: pytest.CaptureFixture[str], server: Loopback, dataset: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite"
    server.reset()
    code, out, _ = _utility(
        capsys, server, dataset, store, "--run-id", "u2", "--limit", "4", "--calibration", "reminder",
        "--calibration", "fewshot:k=1",
    )  # fmt: skip
    assert code == 0 and "accuracy 1.000" in out
    with Store(store) as st:
        run = st.get_run("u2")
        assert run.manifest["calibration_specs"] == ["reminder", "fewshot:k=1"]
        text = st.get_artifact("u2", "reminder.txt")
        demos = json.loads(st.get_artifact("u2", "fewshot/demos.json") or b"")
    assert server.total == 4
    for call in server.calls:
        msgs = call.body["messages"]
        assert msgs[0] == {"role": "system", "content": (text or b"").decode()}
        assert [m["role"] for m in msgs[1:]] == ["user", "assistant", "user", "assistant", "user"]
        assert [m["content"] for m in msgs[1:-1] if m["role"] == "assistant"] == [
            d["text"] for d in demos["turns"] if d["role"] == "assistant"
        ]


def test_rubric_grader(
    capsys: pytest.CaptureFixture[str], server: Loopback, dataset: Path, tmp_path: Path
) -> None:
    store = tmp_path / "s.sqlite"
    server.reset()
    grader = ["--grader", "rubric:openai-compatible/grader", "--grader-base-url", server.base_url]
    code, out, _ = _utility(capsys, server, dataset, store, "--run-id", "g", "--json", *grader)
    assert code == 0
    u = json.loads(out)["utility"]
    # 9 ok answers graded: 8 CORRECT, 1 unreadable verdict (excluded, counted); the error stays excluded
    assert (u["scored"], u["correct"]) == (8, 8) and u["excluded"] == {"error": 1, "ungraded": 1}
    graded = [c for c in server.calls if c.body["model"] == "grader"]
    assert len(graded) == 9
    with Store(store) as st:
        assert st.get_run("g").manifest["utility"]["scorer"] == "rubric:openai-compatible/grader"
        grades = (st.get_artifact("g", GRADES_ARTIFACT) or b"").splitlines()
        assert len(grades) == 9
    # a re-run reuses the stored verdicts for unchanged answers: only the errored item is asked again
    before = server.total
    code, out, _ = _utility(capsys, server, dataset, store, "--run-id", "g", "--json", *grader)
    assert code == 0 and server.total == before + 1


def test_bad_input_is_one_line(
    capsys: pytest.CaptureFixture[str], server: Loopback, dataset: Path, tmp_path: Path
) -> None:
    bad = dataset.parent / "bad.jsonl"  # beside the images its first line names
    bad.write_text(dataset.read_text().splitlines()[0] + "\n" + '{"id": "x", "question": "q"}\n')
    code, _, err = _utility(capsys, server, bad, tmp_path / "s.sqlite")
    assert code == 2 and f"{bad}:2: 'answers'" in err and err.count("\n") == 1
    code, _, err = _utility(capsys, server, dataset, tmp_path / "s.sqlite", "--grader", "gpt-judge")
    assert code == 2 and "rubric:PROVIDER/MODEL" in err
    code, _, err = _utility(capsys, server, dataset, tmp_path / "s.sqlite", "--calibration", "fewshot:k=x")
    assert code == 2 and "must be an integer" in err
