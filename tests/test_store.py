"""The store refuses what is not a store (someone else's SQLite file, a text file, a directory) without
writing to it, and can stand for a store file that does not exist yet (``missing_ok``)."""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from vscbench.cli import main
from vscbench.errors import VscbenchError
from vscbench.store import SCHEMA_VERSION, Store, _retry_while_locked
from vscbench.types import Item


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _foreign(path: Path) -> Path:
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE foo (x)")
    db.execute("INSERT INTO foo VALUES (1)")
    db.commit()
    db.close()
    return path


def _item() -> Item:
    return Item(
        id="tc/000/text", half="text", label="safe", setting="text", query="q", image=None, pair=(), row=0,
        query_id="tc/000",
    )


@pytest.mark.parametrize("create", [True, False])
def test_foreign_sqlite_is_refused_and_left_unchanged(tmp_path: Path, create: bool) -> None:
    other = _foreign(tmp_path / "other.sqlite")
    before = _digest(other)
    with pytest.raises(VscbenchError) as exc:
        Store(other, create=create)
    assert str(exc.value) == f"{other}: not a vscbench store"
    assert _digest(other) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["other.sqlite"]  # no -wal/-shm left behind
    db = sqlite3.connect(other)
    assert [r[0] for r in db.execute("SELECT name FROM sqlite_master")] == ["foo"]
    db.close()


def test_foreign_sqlite_via_the_cli_is_one_line_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    other = _foreign(tmp_path / "other.sqlite")
    before = _digest(other)
    assert main(["judge", "--run", "r", "--judge", "keyword", "--store", str(other)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{other}: not a vscbench store" in err
    assert _digest(other) == before


def test_a_table_named_meta_without_a_version_is_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "meta.sqlite"
    db = sqlite3.connect(p)
    db.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    db.commit()
    db.close()
    with pytest.raises(VscbenchError, match="not a vscbench store"):
        Store(p)


def test_a_text_file_is_not_a_store(tmp_path: Path) -> None:
    p = tmp_path / "notes.sqlite"
    p.write_text("these are my notes, not a database\n" * 50)
    with pytest.raises(VscbenchError, match="not a vscbench store"):
        Store(p)
    assert p.read_text().startswith("these are my notes")


def test_empty_and_new_files_become_stores_and_reopen(tmp_path: Path) -> None:
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    for p in (empty, tmp_path / "sub" / "new.sqlite"):
        with Store(p) as st:
            st.create_run("r", kind="benchmark", model="m", manifest={}, items=[_item()])
        with Store(p, create=False) as st:  # a store written by us is accepted again
            assert [r.run_id for r in st.list_runs()] == ["r"]
        db = sqlite3.connect(p)
        assert db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone() == (
            str(SCHEMA_VERSION),
        )
        db.close()


def test_a_store_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    p = tmp_path / "s.sqlite"
    Store(p).close()
    db = sqlite3.connect(p)
    db.execute("UPDATE meta SET value=? WHERE key='schema_version'", (str(SCHEMA_VERSION + 1),))
    db.commit()
    db.close()
    with pytest.raises(VscbenchError, match="written by a newer vscbench"):
        Store(p)


@pytest.mark.parametrize("create", [True, False])
def test_a_directory_is_not_a_store_file(tmp_path: Path, create: bool) -> None:
    with pytest.raises(VscbenchError) as exc:
        Store(tmp_path, create=create)
    assert str(exc.value).startswith(f"{tmp_path}: is a directory, not a store file")


def test_directory_store_via_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["report", "--run", "x"], ["runs"]):
        assert main([*argv, "--store", str(tmp_path)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "is a directory, not a store file" in err


def test_missing_ok_reads_as_an_empty_store_and_writes_nothing(tmp_path: Path) -> None:
    p = tmp_path / "missing.sqlite"
    with pytest.raises(VscbenchError, match="no store here"):
        Store(p, create=False)
    with Store(p, create=False, missing_ok=True) as st:
        assert st.missing and st.path == p
        assert st.list_runs() == [] and not st.has_run("x")
        with pytest.raises(VscbenchError, match="no run 'x'"):
            st.get_run("x")
    assert list(tmp_path.iterdir()) == []
    with Store(p) as st:  # create=True is unchanged: the file is made
        assert not st.missing
    assert p.is_file()


def test_runs_on_a_missing_store_says_so_and_creates_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from vscbench.cli import main

    path = tmp_path / "missing.sqlite"
    assert main(["runs", "--store", str(path)]) == 0
    assert capsys.readouterr().out.strip() == f"no runs yet in {path} (--store FILE or $VSCBENCH_STORE to look elsewhere)"
    assert not path.exists()


def _open_many_times(path: str, times: int, start: Any, errors: Any) -> None:
    start.wait()
    try:
        for _ in range(times):
            with Store(path) as st, st.transaction() as db:
                db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES ('last_opener', ?)", (str(os.getpid()),))
    except VscbenchError as exc:
        errors.put(str(exc))


def test_processes_opening_one_new_store_at_once_all_get_it(tmp_path: Path) -> None:
    """The suite's xdist workers open the same store at the same moment. SQLite refuses the switch to WAL
    at once (no busy wait) while another process opens or closes the file; before the retry, about one
    opener in 30 failed with 'database is locked' and its worker errored every case."""
    ctx = multiprocessing.get_context("fork")
    errors = ctx.Queue()
    for round_ in range(12):
        path = str(tmp_path / f"s{round_}.sqlite")
        start = ctx.Barrier(8)
        procs = [ctx.Process(target=_open_many_times, args=(path, 20, start, errors)) for _ in range(8)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(timeout=120)
        assert all(p.exitcode == 0 for p in procs)
    failures = []
    while not errors.empty():
        failures.append(errors.get())
    assert failures == []


def test_retry_while_locked_waits_out_locks_only() -> None:
    calls: list[int] = []

    def locked_twice() -> None:
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")

    _retry_while_locked(locked_twice, timeout=5.0)
    assert len(calls) == 3

    def always_locked() -> None:
        raise sqlite3.OperationalError("database is locked")

    with pytest.raises(sqlite3.OperationalError, match="locked"):
        _retry_while_locked(always_locked, timeout=0.05)

    other: list[int] = []

    def disk_full() -> None:
        other.append(1)
        raise sqlite3.OperationalError("database or disk is full")

    with pytest.raises(sqlite3.OperationalError, match="full"):
        _retry_while_locked(disk_full, timeout=5.0)
    assert len(other) == 1


def test_a_store_from_before_provider_details_gains_the_raw_column_once(tmp_path: Path) -> None:
    path = tmp_path / "old.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE responses DROP COLUMN raw")
    db.commit()
    db.close()
    for _ in range(2):  # the second open finds the column and leaves it alone
        with Store(path) as st:
            cols = [r[1] for r in st._db.execute("PRAGMA table_info(responses)")]
            assert cols.count("raw") == 1
