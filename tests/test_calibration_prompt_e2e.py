"""Acceptance: ``vscbench run --calibration reminder|fewshot`` sends exactly what the run records.

A loopback OpenAI-compatible server logs every request; the test compares each logged request with the
stored manifest and artifacts, and checks that no demonstration shares a query with an evaluated item.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import METADATA
from loopback import Loopback
from vscbench.calibration.prompting import DEMO_TURNS_KEY, normalise_query
from vscbench.cli import main
from vscbench.store import Store


@pytest.fixture(scope="module")
def release_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A release tree of placeholder images for every file the real metadata names."""
    from vscbench.data.paths import DataPaths
    from vscbench.data.synthetic import write_release_tree

    root = tmp_path_factory.mktemp("release")
    write_release_tree(DataPaths(root=root, metadata=METADATA))
    return root


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    with Loopback(text="Here is my answer.") as lb:
        yield lb


def _image_bytes(part: dict[str, Any]) -> bytes:
    url = part["image_url"]["url"]
    assert url.startswith("data:image/")
    return base64.b64decode(url.split(",", 1)[1])


def _split(content: Any) -> tuple[str, list[bytes]]:
    """(text, image bytes) of one OpenAI message content."""
    if isinstance(content, str):
        return content, []
    text = "".join(p["text"] for p in content if p["type"] == "text")
    return text, [_image_bytes(p) for p in content if p["type"] == "image_url"]


def _run(server: Loopback, root: Path, store: Path, run_id: str, specs: list[str]) -> None:
    argv = ["run", "-m", "openai-compatible/x", "--base-url", server.base_url, "--root", str(root)]
    argv += ["--metadata", str(METADATA), "--store", str(store), "--run-id", run_id, "--limit", "10"]
    argv += ["--no-progress", "--concurrency", "4"]
    for s in specs:
        argv += ["--calibration", s]
    assert main(argv) == 0


@pytest.mark.parametrize(
    "specs",
    [["reminder"], ["fewshot:k=2"], ["reminder:file=CUSTOM", "fewshot:k=1,seed=5"]],
    ids=["reminder", "fewshot", "both"],
)
def test_requests_match_the_records(
    server: Loopback, release_root: Path, tmp_path: Path, specs: list[str]
) -> None:
    custom = tmp_path / "custom.txt"
    custom.write_text("Custom reminder: decline harm, help with the rest.\n")
    specs = [s.replace("CUSTOM", str(custom)) for s in specs]
    store_path = tmp_path / "s.sqlite"
    server.reset()
    _run(server, release_root, store_path, "cal", specs)

    with Store(store_path) as st:
        run = st.get_run("cal")
        items = st.run_items("cal")
        assert len(items) == 10 and st.counts("cal")["ok"] == 10
        assert run.manifest["calibration_specs"] == specs
        cal_manifests = [c["manifest"] for c in run.manifest["calibrations"]]
        reminders = [m for m in cal_manifests if m["method"] == "reminder"]
        fewshots = [m for m in cal_manifests if m["method"] == "fewshot"]
        expected_system = "\n\n".join(m["text"] for m in reminders) or None
        for m in reminders:
            assert st.get_artifact("cal", "reminder.txt") == m["text"].encode()
        if "reminder:file=" in " ".join(specs):
            assert expected_system == custom.read_text().strip()
        demos: list[dict[str, Any]] = []
        images: dict[str, bytes] = {}
        if fewshots:
            (fm,) = fewshots
            record = json.loads(st.get_artifact("cal", "fewshot/demos.json") or b"")
            demos = record["turns"]
            assert fm["demos_sha256"] == hashlib.sha256(json.dumps(record, sort_keys=True).encode()).hexdigest()
            assert [d["pair"] for d in demos[::4]] == [d["pair"] for d in fm["draw"]]
            for d in demos:
                for name in d["images"]:
                    images[name] = st.get_artifact("cal", name) or b""
        stored = {it.id: st.request_of("cal", it.id) for it in items}

    calls = [c for c in server.calls if c.api == "openai"]
    assert len(calls) == 10
    queries = {normalise_query(it.query) for it in items}
    for call in calls:
        msgs = call.body["messages"]
        if expected_system is None:
            assert msgs[0]["role"] != "system"
        else:
            assert msgs[0] == {"role": "system", "content": expected_system}
            msgs = msgs[1:]
        *history, last = msgs
        assert last["role"] == "user"
        assert len(history) == len(demos)
        for sent, rec in zip(history, demos, strict=True):
            text, imgs = _split(sent["content"])
            assert sent["role"] == rec["role"] and text == rec["text"]
            assert [hashlib.sha256(b).hexdigest() for b in imgs] == rec["image_sha256"]
            assert imgs == [images[n] for n in rec["images"]]
            if rec["role"] == "user":
                assert normalise_query(text) not in queries  # never an evaluated query
        text, imgs = _split(last["content"])
        assert normalise_query(text) in queries and len(imgs) <= 1
    for req in stored.values():
        assert req is not None
        assert req["system"] == expected_system
        assert req["turns"][: len(demos)] == [
            {"role": d["role"], "text": d["text"], "images": req["turns"][k]["images"]} for k, d in enumerate(demos)
        ]
        assert req["extra"].get(DEMO_TURNS_KEY, 0) == len(demos)
