"""Shared fixtures: the real data in ../shared/data, read in place (never copied into the repo)."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy  # noqa: F401  (loaded before any pytester test snapshots sys.modules: see below)
import pytest

from loopback import Loopback

# pytester restores sys.modules after each test, so a module first imported inside such a test is unloaded
# again; numpy's C extension cannot be loaded twice in one process, and every later test importing it would
# fail. Importing it here makes the tests' order irrelevant (a file run alone, -k, -p randomly).

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("VSCBENCH_SHARED", REPO.parent / "shared")).resolve()
SHARED_DATA = SHARED / "data"
METADATA = SHARED_DATA / "vscbench"
JUDGE_DEV = SHARED_DATA / "judge-dev"


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never touch the user's ~/.cache/vscbench or ./vscbench_runs from a test; never reach a hub."""
    home = tmp_path_factory.mktemp("vscbench_home")
    monkeypatch.setenv("VSCBENCH_HOME", str(home))
    monkeypatch.setenv("VSCBENCH_STORE", str(home / "store.sqlite"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


@pytest.fixture(scope="session")
def metadata_dir() -> Path:
    if not (METADATA / "vscbench_image_centric.xlsx").is_file():
        pytest.fail(f"shared data not found at {METADATA}")
    return METADATA


@pytest.fixture(scope="module")
def server() -> Iterator[Loopback]:
    """One loopback server (OpenAI, Anthropic, Gemini APIs) per test module; a module may override it."""
    with Loopback() as lb:
        yield lb


@pytest.fixture
def lb(server: Loopback) -> Iterator[Loopback]:
    """The module's loopback server, cleaned for this test."""
    server.clean()
    yield server


def suite_checkout(pytester: pytest.Pytester, *, thresholds: bool = False, addopts: str = "") -> pytest.Pytester:
    """A checkout of the safety suite in ``pytester.path``: the repo's conftest.py and tests_safety/ (without
    recorded snapshots), and a pytest.ini whose testpaths is tests_safety. The plugin itself is installed."""
    import shutil

    shutil.copy(REPO / "conftest.py", pytester.path / "conftest.py")
    if thresholds:
        shutil.copy(REPO / "thresholds.yaml", pytester.path / "thresholds.yaml")
    shutil.copytree(
        REPO / "tests_safety", pytester.path / "tests_safety", ignore=shutil.ignore_patterns("__snapshots__")
    )
    ini = "[pytest]\ntestpaths = tests_safety\n" + (f"addopts = {addopts}\n" if addopts else "")
    (pytester.path / "pytest.ini").write_text(ini)
    return pytester


#: Debian's Chromium for the report's browser tests, started as the machine allows (root, no network).
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        yield b
        b.close()
