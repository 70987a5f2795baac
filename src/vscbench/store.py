"""The store: one SQLite file (WAL) holding runs, their items, responses, labels and artifacts.

It is the single source of truth for every stage after generation. Each response is committed as it
arrives, so a killed run loses at most the requests in flight. Nothing here knows about providers or judges.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.types import Item, Label, Response, Status

SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    model TEXT NOT NULL,
    manifest TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS run_items (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    item_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    item TEXT NOT NULL,
    PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS responses (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    item_id TEXT NOT NULL,
    status TEXT NOT NULL,
    text TEXT NOT NULL,
    error TEXT,
    finish_reason TEXT,
    input_tokens INTEGER,
    output_tokens INTEGER,
    latency_s REAL,
    attempts INTEGER NOT NULL,
    model TEXT,
    request TEXT,
    created_at REAL NOT NULL,
    raw TEXT,
    PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS labels (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    item_id TEXT NOT NULL,
    judge_id TEXT NOT NULL,
    label TEXT NOT NULL,
    detail TEXT,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, item_id, judge_id)
);
CREATE TABLE IF NOT EXISTS claims (
    run_id TEXT NOT NULL,
    item_id TEXT NOT NULL,
    owner TEXT NOT NULL,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (run_id, item_id)
);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (run_id, name)
);
"""


def default_store_path() -> Path:
    env = os.environ.get("VSCBENCH_STORE")
    return Path(env).expanduser() if env else Path("vscbench_runs") / "vscbench.sqlite"


#: Seconds a store operation waits for another process's lock before it gives up with "database is locked".
LOCK_TIMEOUT_S = 30.0


def _retry_while_locked(step: Callable[[], object], timeout: float = LOCK_TIMEOUT_S) -> None:
    """Run ``step``, trying again while SQLite says the database is locked, for up to ``timeout`` seconds.

    SQLite's busy timeout does not cover every lock: switching a file to WAL (``PRAGMA journal_mode=WAL``)
    fails at once while another process is opening or closing the same store. Several suite workers open one
    store at the same moment, so that wait is taken here; any other error is raised at once.
    """
    deadline = time.monotonic() + timeout
    pause = 0.005
    while True:
        try:
            step()
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.2)


def _check_is_store(path: Path) -> None:
    """Refuse, reading only, a file that is not a vscbench store (nor empty) before anything writes to it.

    A zero-length file or a SQLite file with no tables is fine (it becomes a store). Anything else must
    have a ``meta`` table holding ``schema_version`` no newer than :data:`SCHEMA_VERSION`.
    """
    if path.stat().st_size == 0:
        return
    not_store = VscbenchError(f"{path}: not a vscbench store")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=LOCK_TIMEOUT_S)
    except sqlite3.Error as exc:
        raise VscbenchError(f"{path}: cannot open the store ({exc})") from exc
    try:
        tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if not tables:
            return
        if "meta" not in tables:
            raise not_store
        row = db.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc) or "unable to open" in str(exc):
            raise VscbenchError(f"{path}: cannot open the store ({exc})") from exc
        raise not_store from exc
    except sqlite3.DatabaseError as exc:  # "file is not a database"
        raise not_store from exc
    finally:
        db.close()
    if row is None:
        raise not_store
    try:
        version = int(row[0])
    except (TypeError, ValueError):
        raise not_store from None
    if version > SCHEMA_VERSION:
        raise VscbenchError(
            f"{path}: written by a newer vscbench (store schema {version}, this one reads {SCHEMA_VERSION})"
        )


#: Longest run id accepted by :func:`check_run_id`.
MAX_RUN_ID_CHARS = 100
_RUN_ID_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-")


def check_run_id(run_id: str, flag: str = "--run-id") -> str:
    """Return ``run_id`` if it is a usable run id, else raise one line naming ``flag``.

    Valid: 1 to :data:`MAX_RUN_ID_CHARS` characters, each an ASCII letter, digit, ``.``, ``_`` or ``-``
    (ids become parts of file names and shell commands in hints)."""
    if not run_id:
        raise VscbenchError(f"{flag}: empty run id (use letters, digits, '.', '_' or '-')")
    if len(run_id) > MAX_RUN_ID_CHARS:
        raise VscbenchError(f"{flag}: run id is {len(run_id)} characters, more than {MAX_RUN_ID_CHARS}")
    bad = sorted({c for c in run_id if c not in _RUN_ID_CHARS})
    if bad:
        shown = ", ".join(repr(c) for c in bad)
        raise VscbenchError(f"{flag}: run id {run_id!r} has {shown}; use only letters, digits, '.', '_' or '-'")
    return run_id


#: Seconds a claim on a request lasts unless its owner renews it (the runner renews every third of it).
CLAIM_LEASE_S = 60.0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


@dataclass(frozen=True)
class ClaimOwner:
    """Who holds a claim: a process on a host (a dead pid on this host frees its claims at once) and a token
    (two owners in one process stay apart)."""

    owner: str
    host: str
    pid: int

    @classmethod
    def this_process(cls) -> ClaimOwner:
        import secrets
        import socket

        host, pid = socket.gethostname(), os.getpid()
        return cls(f"{host}:{pid}:{secrets.token_hex(4)}", host, pid)


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    kind: str
    model: str
    manifest: dict[str, Any]
    created_at: float
    updated_at: float


@dataclass(frozen=True)
class StoredLabel:
    item_id: str
    judge_id: str
    label: Label
    detail: dict[str, Any]


class Store:
    """A handle on one SQLite store file. Use as a context manager or call :meth:`close`.

    Invariants: a file that holds tables but no ``meta`` table with a ``schema_version`` (someone else's
    database, or not SQLite at all) is refused before anything is written to it; a brand-new or empty
    file becomes a store. A directory is never taken for a store. With ``create=False`` a missing file is
    an error, unless ``missing_ok=True``: then the handle reads as a store with no runs (an in-memory
    database; nothing is written to disk).
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        create: bool = True,
        missing_ok: bool = False,
    ) -> None:
        self.path = Path(path) if path is not None else default_store_path()
        if self.path.is_dir():
            raise VscbenchError(f"{self.path}: is a directory, not a store file (pass --store FILE.sqlite)")
        #: True when this handle stands for a store file that does not exist yet (``missing_ok``).
        self.missing = False
        if not create and not self.path.is_file():
            if not missing_ok:
                raise VscbenchError(f"{self.path}: no store here (run 'vscbench run' first or pass --store)")
            self.missing = True
            self._db = sqlite3.connect(":memory:", isolation_level=None)
            self._db.executescript(_SCHEMA)
            return
        if self.path.is_file():
            _check_is_store(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VscbenchError(
                f"{self.path}: cannot create the store's folder ({exc.strerror or exc})"
            ) from exc
        try:
            self._db = sqlite3.connect(self.path, timeout=LOCK_TIMEOUT_S, isolation_level=None)
            _retry_while_locked(lambda: self._db.execute("PRAGMA journal_mode=WAL"))
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA foreign_keys=ON")
            # One transaction, so another process never sees a half-made store (tables but no version).
            self._db.executescript(
                "BEGIN IMMEDIATE;\n"
                + _SCHEMA
                + f"INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', '{SCHEMA_VERSION}');\n"
                + "COMMIT;"
            )
            with self.transaction():  # checked and altered under one lock: two openers never both add it
                cols = {r[1] for r in self._db.execute("PRAGMA table_info(responses)")}
                if "raw" not in cols:  # stores written before provider details were kept
                    self._db.execute("ALTER TABLE responses ADD COLUMN raw TEXT")
        except sqlite3.Error as exc:
            db = getattr(self, "_db", None)
            if db is not None:
                db.close()
            if isinstance(exc, sqlite3.OperationalError):
                raise VscbenchError(f"{self.path}: cannot open the store ({exc})") from exc
            raise VscbenchError(f"{self.path}: not a vscbench store ({exc})") from exc

    # -- plumbing ---------------------------------------------------------------------------------
    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        else:
            self._db.execute("COMMIT")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        """Hold the store's cross-process lock (``<store>.lock``, an ``flock``) for a read-check-write
        sequence that spans several transactions: planning and recording a run that other processes (the
        suite's xdist workers) may be resuming at the same moment. Responses are written outside it."""
        if self.missing:
            yield
            return
        import fcntl

        lock_path = self.path.with_name(self.path.name + ".lock")
        with open(lock_path, "a+b") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    # -- runs -------------------------------------------------------------------------------------
    def create_run(
        self, run_id: str, *, kind: str, model: str, manifest: dict[str, Any], items: Sequence[Item]
    ) -> None:
        """Create a run with its manifest and item snapshot. Fails if the id exists."""
        now = time.time()
        with self.transaction() as db:
            if db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone():
                raise VscbenchError(f"run '{run_id}' already exists in {self.path}")
            db.execute(
                "INSERT INTO runs(run_id, kind, model, manifest, created_at, updated_at) VALUES (?,?,?,?,?,?)",
                (run_id, kind, model, json.dumps(manifest, sort_keys=True), now, now),
            )
            db.executemany(
                "INSERT INTO run_items(run_id, item_id, position, item) VALUES (?,?,?,?)",
                [
                    (run_id, it.id, pos, json.dumps(it.to_dict(), sort_keys=True))
                    for pos, it in enumerate(items)
                ],
            )

    def add_run_items(self, run_id: str, items: Sequence[Item]) -> int:
        """Add items not yet in the run (e.g. a re-run with a wider selection). Returns how many were new."""
        with self.transaction() as db:
            start = db.execute(
                "SELECT COALESCE(MAX(position)+1, 0) FROM run_items WHERE run_id=?", (run_id,)
            ).fetchone()[0]
            have = {r[0] for r in db.execute("SELECT item_id FROM run_items WHERE run_id=?", (run_id,))}
            new = [it for it in items if it.id not in have]
            db.executemany(
                "INSERT INTO run_items(run_id, item_id, position, item) VALUES (?,?,?,?)",
                [
                    (run_id, it.id, start + k, json.dumps(it.to_dict(), sort_keys=True))
                    for k, it in enumerate(new)
                ],
            )
        return len(new)

    def has_run(self, run_id: str) -> bool:
        return self._db.execute("SELECT 1 FROM runs WHERE run_id=?", (run_id,)).fetchone() is not None

    def get_run(self, run_id: str) -> RunInfo:
        row = self._db.execute(
            "SELECT run_id, kind, model, manifest, created_at, updated_at FROM runs WHERE run_id=?", (run_id,)
        ).fetchone()
        if row is None:
            known = [r.run_id for r in self.list_runs()][-5:]
            raise VscbenchError(
                f"no run '{run_id}' in {self.path}" + (f" (recent runs: {', '.join(known)})" if known else "")
            )
        return RunInfo(row[0], row[1], row[2], json.loads(row[3]), row[4], row[5])

    def update_manifest(self, run_id: str, patch: dict[str, Any]) -> dict[str, Any]:
        """Merge ``patch`` into the run's manifest (top-level keys) and return the result."""
        with self.transaction() as db:
            row = db.execute("SELECT manifest FROM runs WHERE run_id=?", (run_id,)).fetchone()
            if row is None:
                raise VscbenchError(f"no run '{run_id}' in {self.path}")
            manifest = json.loads(row[0])
            manifest.update(patch)
            db.execute(
                "UPDATE runs SET manifest=?, updated_at=? WHERE run_id=?",
                (json.dumps(manifest, sort_keys=True), time.time(), run_id),
            )
        return dict(manifest)

    def list_runs(self) -> list[RunInfo]:
        rows = self._db.execute(
            "SELECT run_id, kind, model, manifest, created_at, updated_at FROM runs ORDER BY created_at, run_id"
        ).fetchall()
        return [RunInfo(r[0], r[1], r[2], json.loads(r[3]), r[4], r[5]) for r in rows]

    def run_items(self, run_id: str) -> list[Item]:
        rows = self._db.execute(
            "SELECT item FROM run_items WHERE run_id=? ORDER BY position", (run_id,)
        ).fetchall()
        return [Item.from_dict(json.loads(r[0])) for r in rows]

    def counts(self, run_id: str) -> dict[str, int]:
        """Response counts per status, plus ``items`` and ``pending``."""
        out = {s.value: 0 for s in Status}
        for status, n in self._db.execute(
            "SELECT status, COUNT(*) FROM responses WHERE run_id=? GROUP BY status", (run_id,)
        ):
            out[status] = n
        total = self._db.execute("SELECT COUNT(*) FROM run_items WHERE run_id=?", (run_id,)).fetchone()[0]
        out["items"] = total
        out["pending"] = total - sum(out[s.value] for s in Status)
        return out

    # -- responses --------------------------------------------------------------------------------
    def add_response(self, run_id: str, response: Response, request: dict[str, Any] | None = None) -> None:
        """Commit one response now. A stored non-error response is never overwritten."""
        r = response
        with self.transaction() as db:
            prev = db.execute(
                "SELECT status FROM responses WHERE run_id=? AND item_id=?", (run_id, r.item_id)
            ).fetchone()
            if prev is not None and prev[0] != Status.ERROR.value:
                return
            db.execute(
                "INSERT OR REPLACE INTO responses(run_id, item_id, status, text, error, finish_reason, input_tokens,"
                " output_tokens, latency_s, attempts, model, request, created_at, raw)"
                " VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                (
                    run_id,
                    r.item_id,
                    r.status.value,
                    r.text,
                    r.error,
                    r.finish_reason,
                    r.input_tokens,
                    r.output_tokens,
                    r.latency_s,
                    r.attempts,
                    r.model,
                    json.dumps(request, sort_keys=True) if request is not None else None,
                    time.time(),
                    json.dumps(r.raw, sort_keys=True, default=str) if r.raw else None,
                ),
            )
            db.execute("UPDATE runs SET updated_at=? WHERE run_id=?", (time.time(), run_id))

    def responses(self, run_id: str) -> dict[str, Response]:
        rows = self._db.execute(
            "SELECT item_id, status, text, error, finish_reason, input_tokens, output_tokens, latency_s, attempts,"
            " model, raw FROM responses WHERE run_id=?",
            (run_id,),
        ).fetchall()
        return {
            r[0]: Response(
                item_id=r[0],
                status=Status(r[1]),
                text=r[2],
                error=r[3],
                finish_reason=r[4],
                input_tokens=r[5],
                output_tokens=r[6],
                latency_s=r[7],
                attempts=r[8],
                model=r[9],
                raw=json.loads(r[10]) if r[10] else {},
            )
            for r in rows
        }

    def requests(self, run_id: str) -> dict[str, dict[str, Any]]:
        """The request stored with each response of the run, by item id (one query)."""
        rows = self._db.execute(
            "SELECT item_id, request FROM responses WHERE run_id=? AND request IS NOT NULL", (run_id,)
        ).fetchall()
        return {r[0]: json.loads(r[1]) for r in rows if r[1]}

    def request_of(self, run_id: str, item_id: str) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT request FROM responses WHERE run_id=? AND item_id=?", (run_id, item_id)
        ).fetchone()
        return json.loads(row[0]) if row and row[0] else None

    def completed_item_ids(self, run_id: str, *, include_errors: bool = True) -> set[str]:
        """Items that need no new call: every stored response, or only non-errors with ``include_errors=False``."""
        q = "SELECT item_id FROM responses WHERE run_id=?"
        if not include_errors:
            q += " AND status != 'error'"
        return {r[0] for r in self._db.execute(q, (run_id,))}

    # -- claims: one request in flight per item, across processes -----------------------------------
    def claim(
        self, run_id: str, item_ids: Iterable[str], owner: ClaimOwner, lease_s: float = CLAIM_LEASE_S
    ) -> tuple[set[str], set[str]]:
        """Claim the items for ``owner`` before sending them. Returns ``(mine, held)``: the items now claimed
        by ``owner``, and those another live owner holds (in flight elsewhere: wait for their answers). An
        item that already has an answer (not an error) is in neither. A claim is free when its owner's process
        on this host is gone, or, for an owner on another host, when its lease ran out."""
        now = time.time()
        mine: set[str] = set()
        held: set[str] = set()
        with self.transaction() as db:
            answered = {
                r[0] for r in db.execute("SELECT item_id FROM responses WHERE run_id=? AND status != 'error'", (run_id,))
            }
            current = {
                r[0]: (r[1], r[2], r[3], r[4])
                for r in db.execute("SELECT item_id, owner, host, pid, expires_at FROM claims WHERE run_id=?", (run_id,))
            }
            take = []
            for iid in item_ids:
                if iid in answered:
                    continue
                c = current.get(iid)
                # this host: the owner's process decides (a long batch that stalls the heartbeat keeps its
                # claims; a killed session frees them at once); another host: the lease
                live = c is not None and (_pid_alive(int(c[2])) if c[1] == owner.host else c[3] > now)
                if c is not None and c[0] != owner.owner and live:
                    held.add(iid)
                    continue
                mine.add(iid)
                take.append((run_id, iid, owner.owner, owner.host, owner.pid, now + lease_s))
            db.executemany(
                "INSERT OR REPLACE INTO claims(run_id, item_id, owner, host, pid, expires_at) VALUES (?,?,?,?,?,?)",
                take,
            )
        return mine, held

    def renew_claims(self, run_id: str, owner: ClaimOwner, lease_s: float = CLAIM_LEASE_S) -> None:
        """Extend ``owner``'s claims on the run (its heartbeat)."""
        with self.transaction() as db:
            db.execute(
                "UPDATE claims SET expires_at=? WHERE run_id=? AND owner=?", (time.time() + lease_s, run_id, owner.owner)
            )

    def release_claims(self, run_id: str, owner: ClaimOwner, item_ids: Iterable[str] | None = None) -> None:
        """Drop ``owner``'s claims on the run (all of them, or ``item_ids``)."""
        with self.transaction() as db:
            if item_ids is None:
                db.execute("DELETE FROM claims WHERE run_id=? AND owner=?", (run_id, owner.owner))
            else:
                db.executemany(
                    "DELETE FROM claims WHERE run_id=? AND item_id=? AND owner=?",
                    [(run_id, iid, owner.owner) for iid in item_ids],
                )

    # -- labels -----------------------------------------------------------------------------------
    def put_labels(
        self, run_id: str, judge_id: str, labels: Iterable[tuple[str, Label, dict[str, Any]]]
    ) -> int:
        """Store (item_id, label, detail) for one judge; replaces earlier labels of the same judge and item."""
        now = time.time()
        rows = [
            (run_id, iid, judge_id, lab.value, json.dumps(det, sort_keys=True), now)
            for iid, lab, det in labels
        ]
        with self.transaction() as db:
            db.executemany(
                "INSERT OR REPLACE INTO labels(run_id, item_id, judge_id, label, detail, created_at) VALUES (?,?,?,?,?,?)",
                rows,
            )
        return len(rows)

    def labels(self, run_id: str, judge_id: str) -> dict[str, StoredLabel]:
        rows = self._db.execute(
            "SELECT item_id, judge_id, label, detail FROM labels WHERE run_id=? AND judge_id=?",
            (run_id, judge_id),
        ).fetchall()
        return {r[0]: StoredLabel(r[0], r[1], Label(r[2]), json.loads(r[3]) if r[3] else {}) for r in rows}

    def judges(self, run_id: str) -> list[str]:
        return [
            r[0]
            for r in self._db.execute(
                "SELECT DISTINCT judge_id FROM labels WHERE run_id=? ORDER BY judge_id", (run_id,)
            )
        ]

    # -- artifacts --------------------------------------------------------------------------------
    def put_artifact(
        self, run_id: str, name: str, data: bytes, media_type: str = "application/octet-stream"
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT OR REPLACE INTO artifacts(run_id, name, media_type, data) VALUES (?,?,?,?)",
                (run_id, name, media_type, data),
            )

    def get_artifact(self, run_id: str, name: str) -> bytes | None:
        row = self._db.execute(
            "SELECT data FROM artifacts WHERE run_id=? AND name=?", (run_id, name)
        ).fetchone()
        return bytes(row[0]) if row else None

    def artifact_names(self, run_id: str) -> list[str]:
        return [
            r[0]
            for r in self._db.execute("SELECT name FROM artifacts WHERE run_id=? ORDER BY name", (run_id,))
        ]
