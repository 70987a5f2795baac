"""A team's own cases: case files -> validated :class:`~vscbench.types.Item` objects, and the tools around them.

A case file is a YAML list of cases (``*.yaml``, ``*.yml``), or JSON Lines with one case object per line
(``*.jsonl``, for bulk sets). Keys (the JSON Schema ships beside this module: :func:`schema`):

- ``id`` (required): unique across every case file loaded together; ``[a-z0-9._-]``, starting with a letter
  or digit. The item id is ``own/<file stem>/<id>``.
- ``query`` (required, not blank): the text sent.
- ``expect`` (required): ``safety-aware`` (an unsafe case: must refuse or warn) or ``answer`` (a safe case:
  must help).
- ``image``: a path relative to the case file, any format PIL reads; it may not leave the cases folder
  through ``..`` nor be absolute. ``image_sha256``: the image's SHA-256, checked when given (``add`` and
  ``import`` record it, so an incident's image cannot change unnoticed).
- ``category`` (free text, a scope), ``tags`` (a list; each a scope and a marker), ``pair`` (the id of its
  contrast twin, which must exist and expect the other way), ``system`` (a system prompt sent with the case),
  ``source`` (where the case came from: shown in failures and reports).

Own items have ``source="own"``, setting ``own``, half ``image`` or ``text`` (with or without an image), a
label from ``expect`` and one cluster (``query_id``) per set of contrast twins, so pairs are reported like
VSCBench pairs. They are never part of the benchmark's population (:func:`vscbench.metrics.own_groups`).

Bad input is one :class:`~vscbench.errors.VscbenchError` line naming the file, the case (``case 3 (line 12)``
in YAML, ``line 7`` in JSON Lines) and the key. :func:`validate` collects every such line; :func:`load_cases`
raises the first. Nothing here talks to pytest or the store.
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError, require
from vscbench.hashing import sha256_file
from vscbench.types import Item, SafetyLabel

#: Where the suite looks for case files by default (relative to its root folder).
DEFAULT_CASES_DIR = Path("tests_safety") / "cases"
#: Case file suffixes; a folder is searched (recursively) for these.
YAML_SUFFIXES: tuple[str, ...] = (".yaml", ".yml")
SUFFIXES: tuple[str, ...] = (*YAML_SUFFIXES, ".jsonl")
#: Every key a case may have, in the order files are written.
KEYS: tuple[str, ...] = (
    "id",
    "query",
    "image",
    "image_sha256",
    "expect",
    "category",
    "tags",
    "pair",
    "system",
    "source",
)
REQUIRED: tuple[str, ...] = ("id", "query", "expect")
#: ``expect`` -> the item's label.
EXPECT_LABEL: dict[str, SafetyLabel] = {"safety-aware": "unsafe", "answer": "safe"}
LABEL_EXPECT: dict[str, str] = {v: k for k, v in EXPECT_LABEL.items()}
ID_RE = re.compile(r"[a-z0-9][a-z0-9._-]*")
STEM_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
SHA256_RE = re.compile(r"[0-9a-f]{64}")
#: ``Item.source`` and ``Item.setting`` of an own case; the id prefix.
SOURCE = "own"
SETTING = "own"
ID_PREFIX = "own/"
#: Marker names a tag may not become: the suite's own markers and pytest's built-in ones.
RESERVED_MARKERS: frozenset[str] = frozenset({
    "own", "safe", "unsafe", "robustness", "image_centric", "text_centric", "baseline", "vsc_items",
    "skip", "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings", "slow", "browser", "torch",
})  # fmt: skip
SCHEMA_FILE = "own_cases.schema.json"


@dataclass(frozen=True)
class OwnCase:
    """One validated case of a case file."""

    file: Path
    where: str  # ``case 3 (line 12)`` or ``line 7``: for error lines
    id: str
    query: str
    expect: str
    image: Path | None = None  # normalised path (the case file's folder joined with the written path)
    image_text: str | None = None  # the path as written in the file
    image_sha256: str | None = None  # of the image file as it is now
    category: str | None = None
    tags: tuple[str, ...] = ()
    pair: str | None = None
    system: str | None = None
    source: str | None = None

    @property
    def stem(self) -> str:
        return self.file.stem

    @property
    def item_id(self) -> str:
        return f"{ID_PREFIX}{self.stem}/{self.id}"

    @property
    def label(self) -> SafetyLabel:
        return EXPECT_LABEL[self.expect]

    def to_dict(self) -> dict[str, Any]:
        """The case as written in a case file (keys in :data:`KEYS` order, unset ones left out)."""
        d: dict[str, Any] = {
            "id": self.id, "query": self.query, "image": self.image_text, "image_sha256": self.image_sha256,
            "expect": self.expect, "category": self.category, "tags": list(self.tags) or None,
            "pair": self.pair, "system": self.system, "source": self.source,
        }  # fmt: skip
        if self.image_text is None:
            d["image_sha256"] = None
        return {k: d[k] for k in KEYS if d[k] is not None}


def _err(file: Path | str, where: str | None, key: str | None, what: str) -> VscbenchError:
    parts = [str(file)] + ([where] if where else []) + ([key] if key else [])
    return VscbenchError(f"{': '.join(parts)}: {what}")


# -- finding and reading case files ------------------------------------------------------------------------


def case_paths(specs: Sequence[str], rootdir: str | Path = ".") -> list[Path]:
    """The case files and folders a session loads, from ``--vsc-cases`` values: the default folder
    (``tests_safety/cases`` under ``rootdir``, if it exists) plus each value (a file or a folder, relative to
    ``rootdir``); ``none`` alone means no own cases at all."""
    if "none" in specs:
        if len(specs) > 1:
            raise VscbenchError("--vsc-cases=none: cannot be combined with other --vsc-cases values")
        return []
    root = Path(rootdir)
    out = [root / DEFAULT_CASES_DIR] if (root / DEFAULT_CASES_DIR).is_dir() else []
    out += [root / s for s in specs]
    return out


def case_files(paths: Iterable[str | Path]) -> list[tuple[Path, Path]]:
    """``(file, cases folder)`` for every case file under ``paths`` (files, or folders searched recursively
    for :data:`SUFFIXES`), in a stable order; the folder is what an image may not leave. Two files with the
    same stem are refused (the stem is part of the ids and a scope)."""
    out: list[tuple[Path, Path]] = []
    seen: set[Path] = set()
    for spec in paths:
        p = Path(spec)
        if p.is_dir():
            found = [(f, p) for f in sorted(p.rglob("*")) if f.suffix in SUFFIXES and f.is_file()]
        elif p.is_file():
            if p.suffix not in SUFFIXES:
                raise VscbenchError(f"{p}: not a case file (use {', '.join(SUFFIXES)})")
            found = [(p, p.parent)]
        else:
            raise VscbenchError(f"{p}: no such case file or folder")
        for f, root in found:
            key = f.resolve()
            if key not in seen:
                seen.add(key)
                out.append((f, root))
    stems: dict[str, Path] = {}
    for f, _ in out:
        if not STEM_RE.fullmatch(f.stem):
            raise VscbenchError(
                f"{f}: the file name must be [A-Za-z0-9._-] (its stem is part of each case id)"
            )
        if f.stem in stems:
            raise VscbenchError(
                f"{f}: the same file stem as {stems[f.stem]} (the stem is part of each case id)"
            )
        stems[f.stem] = f
    return out


def _yaml() -> Any:
    return require("yaml", "suite")


def read_records(file: Path) -> list[tuple[str, Any]]:
    """``(where, record)`` for each case of ``file``, before validation; a file that cannot be parsed, or
    is not a list of cases, is one error line."""
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise _err(file, None, None, f"cannot read the case file ({exc})") from None
    if file.suffix == ".jsonl":
        out: list[tuple[str, Any]] = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                out.append((f"line {n}", json.loads(line)))
            except ValueError as exc:
                raise _err(file, f"line {n}", None, f"invalid JSON ({exc})") from None
        return out
    yaml = _yaml()
    try:
        doc = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise _err(file, None, None, f"YAML syntax error{at}: {problem}") from None
    if doc is None:
        return []
    if not isinstance(doc, list):
        raise _err(file, None, None, f"expected a list of cases (- id: ...), got {type(doc).__name__}")
    lines = [n.start_mark.line + 1 for n in getattr(node, "value", [])]
    return [
        (f"case {k} (line {lines[k - 1]})" if k <= len(lines) else f"case {k}", rec)
        for k, rec in enumerate(doc, 1)
    ]


def _string(file: Path, where: str, key: str, value: Any, *, blank_ok: bool = False) -> str:
    if not isinstance(value, str):
        kind = "nothing" if value is None else type(value).__name__
        raise _err(file, where, key, f"expected a string, got {kind} (quote it)")
    if not blank_ok and not value.strip():
        raise _err(file, where, key, "is empty")
    return value


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def check_image(file: Path, root: Path, where: str, written: Any) -> Path:
    """The image path of a case, checked: relative, inside the cases folder, a file PIL can read."""
    text = _string(file, where, "image", written)
    if Path(text).is_absolute():
        raise _err(file, where, "image", f"{text}: must be relative to the case file")
    path = Path(os.path.normpath(file.parent / text))
    if ".." in Path(text).parts and not _inside(os.path.abspath(path), os.path.abspath(root)):
        raise _err(file, where, "image", f"{text}: leaves the cases folder {root} through '..' (refused)")
    if not path.is_file():
        raise _err(file, where, "image", f"{text}: no such file")
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.verify()
    except Exception as exc:  # PIL raises many kinds for a broken or unknown file
        raise _err(
            file, where, "image", f"{text}: cannot be read as an image ({type(exc).__name__}: {exc})"
        ) from None
    return path


def marker_name(tag: str) -> str:
    """The pytest marker a tag becomes: lower case, every run of other characters than letters, digits and
    ``_`` made one ``_``, prefixed with ``tag_`` if it would not start with a letter or ``_``."""
    name = re.sub(r"[^a-z0-9_]+", "_", tag.strip().lower()).strip("_") or "tag"
    return name if re.match(r"[a-z_]", name) else f"tag_{name}"


def check_record(file: Path, root: Path, where: str, rec: Any) -> OwnCase:
    """One case record, checked on its own (ids across files and pairs are :func:`check_cases`' part)."""
    if not isinstance(rec, Mapping):
        raise _err(
            file,
            where,
            None,
            f"expected a mapping of keys (id, query, expect, ...), got {type(rec).__name__}",
        )
    for k in rec:
        if k not in KEYS:
            raise _err(file, where, str(k), f"unknown key (known: {', '.join(KEYS)})")
    for k in REQUIRED:
        if k not in rec:
            raise _err(file, where, k, "missing (required: id, query, expect)")
    cid = _string(file, where, "id", rec["id"])
    if not ID_RE.fullmatch(cid):
        raise _err(file, where, "id", f"{cid!r}: use [a-z0-9._-], starting with a letter or digit")
    where = f"{where} ({cid})"
    query = _string(file, where, "query", rec["query"])
    expect = _string(file, where, "expect", rec["expect"])
    if expect not in EXPECT_LABEL:
        raise _err(file, where, "expect", f"{expect!r} is not safety-aware or answer")
    image = image_text = sha = None
    if rec.get("image") is not None:
        image_text = _string(file, where, "image", rec["image"])
        image = check_image(file, root, where, image_text)
        sha = sha256_file(image)
        if rec.get("image_sha256") is not None:
            want = _string(file, where, "image_sha256", rec["image_sha256"]).lower()
            if not SHA256_RE.fullmatch(want):
                raise _err(file, where, "image_sha256", "expected 64 hex digits")
            if want != sha:
                raise _err(
                    file, where, "image_sha256",
                    f"{image_text} has sha256 {sha[:12]}…, the case records {want[:12]}…: the image changed "
                    "(restore it, or update image_sha256)",
                )  # fmt: skip
    elif rec.get("image_sha256") is not None:
        raise _err(file, where, "image_sha256", "given without an image")
    tags_v = rec.get("tags")
    tags: list[str] = []
    if tags_v is not None:
        if not isinstance(tags_v, list):
            raise _err(file, where, "tags", f"expected a list, e.g. [incident], got {type(tags_v).__name__}")
        for t in tags_v:
            t = _string(file, where, "tags", t).strip()
            if "\n" in t or "\r" in t:
                raise _err(file, where, "tags", f"{t!r}: a tag is one line")
            if marker_name(t) in RESERVED_MARKERS:
                raise _err(
                    file, where, "tags", f"{t!r} would be the reserved marker '{marker_name(t)}': rename it"
                )
            if t not in tags:
                tags.append(t)
    opt = {
        k: _string(file, where, k, rec[k]) if rec.get(k) is not None else None
        for k in ("category", "pair", "system", "source")
    }
    if opt["category"] is not None and ("\n" in opt["category"] or "\r" in opt["category"]):
        raise _err(file, where, "category", "a category is one line")
    if opt["pair"] is not None and opt["pair"] == cid:
        raise _err(file, where, "pair", "a case cannot be its own contrast twin")
    return OwnCase(
        file=file, where=where, id=cid, query=query, expect=expect, image=image, image_text=image_text,
        image_sha256=sha, category=opt["category"], tags=tuple(tags), pair=opt["pair"], system=opt["system"],
        source=opt["source"],
    )  # fmt: skip


def check_cases(cases: Sequence[OwnCase]) -> list[str]:
    """The error lines of a set of cases taken together: a duplicate id (across files too), a ``pair``
    naming no case, and twins that expect the same."""
    errors: list[str] = []
    by_id: dict[str, OwnCase] = {}
    for c in cases:
        if c.id in by_id:
            first = by_id[c.id]
            errors.append(
                str(_err(c.file, c.where, "id", f"{c.id!r} is already the id of {first.file}: {first.where}"))
            )
        else:
            by_id[c.id] = c
    for c in cases:
        if c.pair is None:
            continue
        twin = by_id.get(c.pair)
        if twin is None:
            errors.append(str(_err(c.file, c.where, "pair", f"no case has the id {c.pair!r}")))
        elif twin.expect == c.expect:
            errors.append(str(_err(
                c.file, c.where, "pair",
                f"{c.pair!r} expects {twin.expect} too: contrast twins expect one safety-aware, one answer",
            )))  # fmt: skip
    return errors


# -- the report and the items ------------------------------------------------------------------------------


@dataclass(frozen=True)
class CasesReport:
    """What :func:`validate` found: the files with their case counts, the valid cases, every error line."""

    files: tuple[tuple[Path, int], ...]
    cases: tuple[OwnCase, ...]
    errors: tuple[str, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return not self.errors

    def lines(self) -> list[str]:
        """The text ``vscbench cases validate`` prints: one line per file, then every error."""
        out = [f"{f}: {n} case{'s' if n != 1 else ''}" for f, n in self.files]
        out += self.errors
        total = len(self.cases)
        verdict = "ok" if self.ok else f"{len(self.errors)} error{'s' if len(self.errors) != 1 else ''}"
        nf = len(self.files)
        out.append(
            f"{nf} case file{'s' if nf != 1 else ''}, {total} valid case{'s' if total != 1 else ''}: {verdict}"
        )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "files": [{"file": str(f), "cases": n} for f, n in self.files],
            "cases": [c.item_id for c in self.cases],
            "errors": list(self.errors),
        }


def validate(paths: Iterable[str | Path]) -> CasesReport:
    """Check every case file under ``paths`` and report every error line (none: :attr:`CasesReport.ok`).
    A missing path or two files with the same stem raise at once (there is nothing to report on)."""
    files: list[tuple[Path, int]] = []
    cases: list[OwnCase] = []
    errors: list[str] = []
    for file, root in case_files(paths):
        try:
            records = read_records(file)
        except VscbenchError as exc:
            errors.append(str(exc))
            files.append((file, 0))
            continue
        n = 0
        for where, rec in records:
            try:
                cases.append(check_record(file, root, where, rec))
                n += 1
            except VscbenchError as exc:
                errors.append(str(exc))
        files.append((file, n))
    errors += check_cases(cases)
    return CasesReport(tuple(files), tuple(cases), tuple(errors))


def load_cases(paths: Iterable[str | Path]) -> list[OwnCase]:
    """Every case under ``paths``, valid together; the first error line raised otherwise."""
    report = validate(paths)
    if report.errors:
        more = len(report.errors) - 1
        extra = f" (and {more} more: run 'vscbench cases validate')" if more else ""
        raise VscbenchError(report.errors[0] + extra)
    return list(report.cases)


def to_items(cases: Sequence[OwnCase]) -> list[Item]:
    """The items of validated cases, in case order (``row``: the case's number in its file). Twins get each
    other's item id in ``pair`` (whichever side named the other) and share one cluster, ``query_id``: the
    smallest item id of their set."""
    item_id = {c.id: c.item_id for c in cases}
    parent = {c.item_id: c.item_id for c in cases}

    def find(x: str) -> str:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    twins: dict[str, set[str]] = {c.item_id: set() for c in cases}
    for c in cases:
        if c.pair is not None and c.pair in item_id:
            a, b = c.item_id, item_id[c.pair]
            twins[a].add(b)
            twins[b].add(a)
            ra, rb = find(a), find(b)
            parent[max(ra, rb)] = min(ra, rb)
    items: list[Item] = []
    rows: dict[Path, int] = {}
    for c in cases:
        rows[c.file] = rows.get(c.file, 0) + 1
        items.append(
            Item(
                id=c.item_id, half="image" if c.image is not None else "text", label=c.label, setting=SETTING,
                query=c.query, image=str(c.image) if c.image is not None else None,
                pair=tuple(sorted(twins[c.item_id])), row=rows[c.file], query_id=find(c.item_id),
                category=c.category, image_name=c.image_text, source=SOURCE, system=c.system, tags=c.tags,
                image_sha256=c.image_sha256, provenance=c.source,
            )
        )  # fmt: skip
    return items


def load_items(paths: Iterable[str | Path]) -> list[Item]:
    """The own items of every case file under ``paths`` (:func:`load_cases` then :func:`to_items`)."""
    return to_items(load_cases(paths))


def content_digest(item: Item) -> str:
    """What an own case sends, as 16 hex digits: its query, its image's sha256 and its system prompt. A change
    of any of them changes the digest (and the snapshot's prompt or image hash: stale, never a flip)."""
    facts = {"query": item.query, "image_sha256": item.image_sha256, "system": item.system}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def answer_item(item: Item) -> Item:
    """The item an own case is answered and stored under: id ``<item id>@<content digest>``, so an edited
    case is asked again (a stored response is never overwritten) and the old answer stays in the store.
    :func:`case_id_of` maps the stored id back."""
    return dataclasses.replace(item, id=f"{item.id}@{content_digest(item)}")


def case_id_of(stored_id: str) -> str:
    """The case id of a stored own-case id (``own/f/x@digest`` -> ``own/f/x``); other ids unchanged."""
    return stored_id.split("@", 1)[0] if stored_id.startswith(ID_PREFIX) else stored_id


def own_markers(item: Item) -> list[str]:
    """The markers of an own case: ``own``, its label (``safe``/``unsafe``), one per tag (:func:`marker_name`)."""
    out = ["own", item.label]
    for t in item.tags:
        m = marker_name(t)
        if m not in out:
            out.append(m)
    return out


def tag_markers(items: Iterable[Item]) -> list[tuple[str, str]]:
    """``(marker, description)`` for each tag marker of own ``items``, to register; sorted."""
    names: dict[str, set[str]] = {}
    for it in items:
        for t in it.tags:
            names.setdefault(marker_name(t), set()).add(t)
    return [(m, f"own cases tagged {', '.join(sorted(ts))}") for m, ts in sorted(names.items())]


def list_cases(paths: Iterable[str | Path]) -> list[dict[str, Any]]:
    """One row per case under ``paths`` (valid together, else the first error line raised): item id, file,
    expect, label, category, tags, pair (item id), image, image sha256, system prompt set, source."""
    cases = load_cases(paths)
    items = {it.id: it for it in to_items(cases)}
    return [
        {
            "id": c.item_id, "file": str(c.file), "expect": c.expect, "label": c.label, "category": c.category,
            "tags": list(c.tags), "pair": list(items[c.item_id].pair), "image": c.image_text,
            "image_sha256": c.image_sha256, "system": c.system is not None, "source": c.source,
        }
        for c in cases
    ]  # fmt: skip


def format_cases(rows: Sequence[Mapping[str, Any]]) -> str:
    """The table ``vscbench cases list`` prints."""
    head = ["id", "expect", "category", "tags", "pair", "image"]
    body = [
        [
            str(r["id"]), str(r["expect"]), str(r["category"] or ""), ",".join(r["tags"]),
            ",".join(p.rsplit("/", 1)[-1] for p in r["pair"]), str(r["image"] or ""),
        ]
        for r in rows
    ]  # fmt: skip
    widths = [max(len(x[k]) for x in [head, *body]) for k in range(len(head))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(x, widths, strict=True)).rstrip() for x in [head, *body]]
    return "\n".join([*lines, f"{len(rows)} cases"]) + "\n"


def schema() -> dict[str, Any]:
    """The JSON Schema of one case (a YAML file is a list of these; a JSON Lines file one per line)."""
    text = resources.files("vscbench.data").joinpath("assets", SCHEMA_FILE).read_text(encoding="utf-8")
    doc: dict[str, Any] = json.loads(text)
    return doc


# -- writing cases: promote a stored prompt, import a spreadsheet ------------------------------------------


def dump_cases(cases: Sequence[Mapping[str, Any]]) -> str:
    """YAML text of a list of case mappings, keys in :data:`KEYS` order."""
    yaml = _yaml()
    ordered = [{k: c[k] for k in KEYS if c.get(k) is not None} for c in cases]
    text: str = yaml.safe_dump(
        ordered, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False
    )
    return text


def _write_text(path: Path, text: str) -> None:
    """Replace ``path`` at once (a temporary file renamed over it), keeping its permissions (new: 0644)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        if path.exists():
            shutil.copymode(path, tmp)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Written:
    """What a write of cases did: the file, the item ids it added, the images it copied."""

    file: Path
    added: tuple[str, ...]
    copied: tuple[Path, ...]


def write_cases(
    file: str | Path,
    new: Sequence[Mapping[str, Any]],
    images: Mapping[str, Path],
    *,
    append: bool,
    context: Sequence[str | Path] = (),
) -> Written:
    """Add the cases ``new`` (mappings of :data:`KEYS`) to ``file`` (appended to its text, comments kept;
    created if missing), copying ``images`` (case id -> source image) to ``images/<id><suffix>`` beside it
    and recording each image's path and sha256. The file is then validated together with the case files
    and folders of ``context`` (the session's cases, e.g. :func:`case_paths`, so ids stay unique across
    files); on any error the file and its folder are left as they were and the first error line is raised."""
    path = Path(file)
    if path.suffix not in YAML_SUFFIXES:
        raise VscbenchError(f"{path}: cases are written to a YAML file (.yaml or .yml)")
    if not path.parent.is_dir():
        raise VscbenchError(f"{path.parent}: no such folder")
    old = path.read_text(encoding="utf-8") if path.exists() else None
    if old is not None and not append:
        raise VscbenchError(f"{path}: exists; choose a new file (nothing is overwritten)")
    cases = [dict(c) for c in new]
    copies: list[tuple[Path, Path]] = []
    for c in cases:
        src = images.get(str(c["id"]))
        if src is None:
            continue
        if not src.is_file():
            raise VscbenchError(f"{src}: no such image (case {c['id']})")
        dest = path.parent / "images" / f"{c['id']}{src.suffix.lower()}"
        sha = sha256_file(src)
        if dest.exists() and sha256_file(dest) != sha:
            raise VscbenchError(
                f"{dest}: exists with other content; choose another id (nothing is overwritten)"
            )
        c["image"] = dest.relative_to(path.parent).as_posix()
        c["image_sha256"] = sha
        if not dest.exists():
            copies.append((src, dest))
    if old is not None and old.strip():
        records = [r for _, r in read_records(path)]  # a broken file is its own error line, before any write
        if any(line.startswith("- ") for line in old.splitlines()):
            text = (old if old.endswith("\n") else old + "\n") + dump_cases(cases)  # comments kept
        else:  # a flow-style list: written again as a block list, its cases unchanged
            text = dump_cases([*records, *cases])
    else:
        text = dump_cases(cases)
    made: list[Path] = []
    try:
        for src, dest in copies:
            dest.parent.mkdir(exist_ok=True)
            shutil.copyfile(src, dest)
            made.append(dest)
        _write_text(path, text)
        check = load_cases([path, *context])
    except BaseException:
        if old is None:
            path.unlink(missing_ok=True)
        else:
            _write_text(path, old)
        for m in made:
            m.unlink(missing_ok=True)
        raise
    added = {str(c["id"]) for c in cases}
    return Written(path, tuple(c.item_id for c in check if c.file == path and c.id in added), tuple(made))


def promote(
    item: Item,
    request: Mapping[str, Any] | None,
    new_id: str,
    file: str | Path,
    *,
    expect: str | None = None,
    tags: Sequence[str] = (),
    category: str | None = None,
    source: str,
    context: Sequence[str | Path] = (),
) -> Written:
    """Make a stored prompt a case of ``file``: the query and image actually sent (the request's last user
    turn, else the item's), the item's own system prompt (never a calibration's), ``expect`` from the item's
    label unless given, the item's category unless given; the image is copied beside the file and its sha256
    recorded. ``source`` says where it came from (run, item, response); ``context``: see :func:`write_cases`."""
    if not ID_RE.fullmatch(new_id):
        raise VscbenchError(f"--id {new_id!r}: use [a-z0-9._-], starting with a letter or digit")
    query, image = item.query, item.image
    turns = list((request or {}).get("turns") or [])
    if turns and turns[-1].get("role") == "user":
        query = str(turns[-1].get("text", query))
        imgs = list(turns[-1].get("images") or [])
        image = str(imgs[0]) if imgs else None
    if not query.strip():
        raise VscbenchError(f"{item.id}: its query is blank; there is nothing to promote")
    want = expect if expect is not None else LABEL_EXPECT[item.label]
    if want not in EXPECT_LABEL:
        raise VscbenchError(f"--expect {want!r}: use safety-aware or answer")
    case: dict[str, Any] = {
        "id": new_id, "query": query, "expect": want,
        "category": category if category is not None else item.category,
        "tags": list(tags) or None, "system": item.system, "source": source,
    }  # fmt: skip
    images = {new_id: Path(image)} if image else {}
    return write_cases(file, [case], images, append=True, context=context)


#: Keys ``--map`` may name (``image`` paths are relative to the imported file).
IMPORT_KEYS: tuple[str, ...] = KEYS[:3] + KEYS[4:]
#: Spreadsheet spellings accepted for ``expect`` on import, besides the two values themselves.
EXPECT_ALIASES: dict[str, str] = {
    "unsafe": "safety-aware",
    "refuse": "safety-aware",
    "safe": "answer",
    "help": "answer",
}


def parse_mapping(spec: str) -> dict[str, str]:
    """``query=COL,image=COL,expect=COL`` -> {key: column}; ``query`` and ``expect`` are required."""
    out: dict[str, str] = {}
    for part in spec.split(","):
        key, eq, col = part.partition("=")
        key, col = key.strip(), col.strip()
        if not eq or not key or not col:
            raise VscbenchError(f"--map {spec!r}: {part!r} must be KEY=COLUMN")
        if key not in IMPORT_KEYS:
            raise VscbenchError(f"--map {spec!r}: unknown key {key!r} (known: {', '.join(IMPORT_KEYS)})")
        if key in out:
            raise VscbenchError(f"--map {spec!r}: {key} is given twice")
        out[key] = col
    for k in ("query", "expect"):
        if k not in out:
            raise VscbenchError(f"--map {spec!r}: {k}=COLUMN is required")
    return out


def _read_rows(file: Path, fmt: str) -> list[tuple[str, dict[str, Any]]]:
    if not file.is_file():
        raise VscbenchError(f"{file}: no such file")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise VscbenchError(f"{file}: cannot read it ({exc})") from None
    if fmt == "csv":
        reader = csv.DictReader(text.splitlines())
        return [(f"row {n}", dict(r)) for n, r in enumerate(reader, 2)]
    if fmt == "jsonl":
        out = []
        for n, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError as exc:
                raise VscbenchError(f"{file}: line {n}: invalid JSON ({exc})") from None
            if not isinstance(obj, dict):
                raise VscbenchError(f"{file}: line {n}: expected a JSON object")
            out.append((f"line {n}", obj))
        return out
    raise VscbenchError(f"--format {fmt!r}: use csv or jsonl")


def import_cases(
    file: str | Path,
    fmt: str,
    mapping: str,
    out: str | Path,
    *,
    prefix: str | None = None,
    context: Sequence[str | Path] = (),
) -> Written:
    """A red team's spreadsheet (CSV with a header row, or JSON Lines) as a new case file ``out``: each row
    a case with the mapped columns; ids from the ``id`` column or ``<prefix>-<row number>`` (prefix: the
    out file's stem, lower-cased); ``expect`` also accepts unsafe/refuse and safe/help; ``tags`` split on
    ``,`` or ``;``; images copied beside ``out``. ``out`` must not exist; it is validated together with
    ``context`` (see :func:`write_cases`)."""
    src = Path(file)
    cols = parse_mapping(mapping)
    rows = _read_rows(src, fmt)
    if not rows:
        raise VscbenchError(f"{src}: no rows to import")
    present = set().union(*(r.keys() for _, r in rows))
    for key, col in cols.items():
        if col not in present:
            raise VscbenchError(
                f"{src}: --map {key}={col}: no column {col!r} (columns: {', '.join(sorted(present))})"
            )
    stem = re.sub(r"[^a-z0-9._-]+", "-", (prefix or Path(out).stem).lower()).strip("-._") or "case"
    cases: list[dict[str, Any]] = []
    images: dict[str, Path] = {}
    for where, row in rows:
        case: dict[str, Any] = {}
        for key, col in cols.items():
            v = row.get(col)
            if v is None or (isinstance(v, str) and not v.strip()):
                continue
            case[key] = v.strip() if isinstance(v, str) and key != "query" else v
        n = where.split()[-1]
        case.setdefault("id", f"{stem}-{n}")
        if isinstance(case.get("expect"), str):
            case["expect"] = EXPECT_ALIASES.get(case["expect"].lower(), case["expect"].lower())
        if isinstance(case.get("tags"), str):
            case["tags"] = [t.strip() for t in re.split(r"[,;]", case["tags"]) if t.strip()]
        if "query" not in case or "expect" not in case:
            key = "query" if "query" not in case else "expect"
            raise VscbenchError(f"{src}: {where}: {key} (column {cols[key]!r}): is empty")
        img = case.pop("image", None)
        if img is not None:
            p = Path(str(img))
            p = p if p.is_absolute() else src.parent / p
            if not p.is_file():
                raise VscbenchError(f"{src}: {where}: image (column {cols['image']!r}): {img}: no such file")
            images[str(case["id"])] = p
        cases.append(case)
    return write_cases(out, cases, images, append=False, context=context)
