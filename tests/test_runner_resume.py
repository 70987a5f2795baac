"""Kill ``vscbench run`` with SIGKILL halfway, run it again: every item answered once, nothing re-sent."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from conftest import METADATA, REPO
from loopback import Loopback
from vscbench.data import load_items, resolve_paths
from vscbench.store import Store

N_ITEMS = 40


def _answered(store: Path, run_id: str) -> set[str]:
    if not store.exists():
        return set()
    try:
        db = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=5)
        try:
            return {r[0] for r in db.execute("SELECT item_id FROM responses WHERE run_id=?", (run_id,))}
        finally:
            db.close()
    except sqlite3.OperationalError:  # the run has not created its tables yet
        return set()


def test_sigkill_then_rerun_completes_every_item_without_resending(tmp_path: Path) -> None:
    q2id = {i.query: i.id for i in load_items(resolve_paths(tmp_path, METADATA), settings=["text"])}
    store = tmp_path / "kill.sqlite"
    env = dict(os.environ, VSCBENCH_HOME=str(tmp_path / "home"), PYTHONPATH=str(REPO / "src"))
    with Loopback(latency=0.2) as lb:
        cmd = [sys.executable, "-m", "vscbench.cli", "run", "-m", "openai-compatible/m"]
        cmd += ["--base-url", lb.base_url, "--metadata", str(METADATA), "--store", str(store)]
        cmd += ["--setting", "text", "--limit", str(N_ITEMS), "--run-id", "kill", "--concurrency", "4"]
        cmd += ["--no-progress"]
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            deadline = time.monotonic() + 120
            while len(_answered(store, "kill")) < 12:
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline, "the run never got going"
                time.sleep(0.05)
            proc.send_signal(signal.SIGKILL)
        finally:
            proc.wait(30)
        assert proc.returncode == -signal.SIGKILL
        before = _answered(store, "kill")
        assert 12 <= len(before) < N_ITEMS  # killed halfway
        first_calls = Counter(q2id[c.key] for c in lb.calls if c.key)
        assert set(first_calls) >= before
        lb.reset()

        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        assert rerun.returncode == 0, rerun.stderr
        assert "run kill (resumed)" in rerun.stdout and "pending 0" in rerun.stdout
        second_calls = Counter(q2id[c.key] for c in lb.calls if c.key)

    assert not (set(second_calls) & before)  # no completed item was requested again
    assert all(n == 1 for n in second_calls.values())
    with Store(store) as st:
        run_items = {it.id for it in st.run_items("kill")}
        responses = st.responses("kill")
        rows = st._db.execute("SELECT COUNT(*), COUNT(DISTINCT item_id) FROM responses").fetchone()
    assert len(run_items) == N_ITEMS
    assert set(responses) == run_items == before | set(second_calls)
    assert tuple(rows) == (N_ITEMS, N_ITEMS)  # exactly one row per item
    assert all(r.status.value == "ok" for r in responses.values())
