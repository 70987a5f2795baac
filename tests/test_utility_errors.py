"""`vscbench utility` failures a user meets: a file that is not an image, a run where nothing could be
scored (exit 1 with the reason), and help that states the defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from loopback import Loopback, Reply
from vscbench.cli import main
from vscbench.data.synthetic import tiny_image_bytes
from vscbench.errors import VscbenchError
from vscbench.utility.dataset import load_examples
from vscbench.utility.scoring import UtilitySummary, format_summary, nothing_scored


def _set(folder: Path, image: str) -> Path:
    data = folder / "data.jsonl"
    good = {"id": "a", "image": "ok.png", "question": "What colour?", "answers": ["red"]}
    bad = {"id": "b", "image": image, "question": "What colour?", "answers": ["red"]}
    data.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    (folder / "ok.png").write_bytes(tiny_image_bytes("PNG"))
    return data


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"root:x:0:0:root:/root:/bin/bash\n", "is not an image"),
        (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, "is not a usable image"),  # PNG magic, broken header
    ],
)
def test_a_file_that_is_not_an_image_fails_at_load(tmp_path: Path, content: bytes, why: str) -> None:
    (tmp_path / "passwd").write_bytes(content)
    data = _set(tmp_path, "passwd")
    with pytest.raises(VscbenchError) as exc:
        load_examples(data)
    assert str(exc.value).startswith(f"{data}:2: image {tmp_path / 'passwd'} {why}")


def test_not_an_image_via_the_cli_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sub = tmp_path / "set"
    sub.mkdir()
    (tmp_path / "notes.txt").write_text("hello\n")
    data = _set(sub, "../notes.txt")  # outside the set's folder, like "../../etc/passwd"
    argv = ["utility", "-m", "openai-compatible/x", "--base-url", "http://127.0.0.1:9/v1", "--data", str(data)]
    assert main([*argv, "--store", str(tmp_path / "s.sqlite")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{data}:2: image {tmp_path / 'notes.txt'} is not an image" in err
    assert not (tmp_path / "s.sqlite").exists()  # refused before a run was made


def test_a_run_with_nothing_scored_exits_1_saying_why(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"id": i, "question": f"What is {i}+1?", "answers": [i + 1]}) + "\n" for i in range(3))
    )
    with Loopback(respond=lambda call: Reply(status=400, error_message="bad request")) as lb:
        argv = ["utility", "-m", "openai-compatible/x", "--base-url", lb.base_url, "--data", str(data)]
        argv += ["--store", str(tmp_path / "s.sqlite"), "--run-id", "u0", "--no-progress", "--max-attempts", "1"]
        code = main(argv)
        out, err = capsys.readouterr()
        assert code == 1 and "accuracy n/a (0/0 right, 0/3 scored; excluded: error 3)" in out
        assert err.count("\n") == 1
        assert "run u0: nothing could be scored: all 3 example(s) were excluded (error 3)" in err
        # with answers it is a normal run again (exit 0)
        lb.respond = lambda call: "2"
        assert main([*argv, "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["utility"]["scored"] == 3


def test_nothing_scored_reason() -> None:
    s = UtilitySummary(3, 0, 0, None, None, None, {"empty": 1, "ungraded": 2}, 0, {})
    assert nothing_scored(s) == (
        "nothing could be scored: all 3 example(s) were excluded (empty 1, ungraded 2); "
        "the grader's verdicts could not be read (check --grader)"
    )
    assert format_summary(s).startswith("accuracy n/a")
    assert nothing_scored(UtilitySummary(3, 1, 0, 0.0, 0.0, 0.0, {"error": 2}, 0, {})) is None


def test_help_states_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["utility", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "--max-tokens MAX_TOKENS longest answer, in tokens (default 512)" in text
    assert "--temperature TEMPERATURE sampling temperature (default 0" in text
    assert "(default 1)" in text.split("--batch-size BATCH_SIZE", 2)[2][:120]
    with pytest.raises(SystemExit):
        main(["utility", "make-synthetic", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "position (is one shape left of the other" in text
    with pytest.raises(SystemExit):
        main(["data", "items", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "List the items the metadata defines" in text and "images need not be present" in text


@pytest.mark.parametrize("flag", ["--max-tokens", "--batch-size"])
def test_zero_is_refused(flag: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["utility", "-m", "openai/x", "--data", "x.jsonl", flag, "0"])
    assert exc.value.code == 2 and f"{flag}: expected a number of at least 1, got 0" in capsys.readouterr().err
