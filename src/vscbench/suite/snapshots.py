"""Snapshot records of the safety suite's cases: the format, the comparison and the flip table.

A snapshot is one case's verdict and response for one model, written as JSON that reads well in a diff:
a fixed key order, one field per line, and the texts (response, prompt) as lists of their lines, so a flip
shows as a changed ``outcome``/``label`` line with the new response under it. Every Python string round-trips
exactly (quotes, NUL, right-to-left marks, lone surrogates from undecodable provider bytes, any length).

Comparison (:func:`classify`): ``new`` (no snapshot), ``stale`` (the prompt, the image or the generation
config/calibration changed: not the model's doing), ``flip`` (the verdict, i.e. outcome and label, changed;
with ``compare="text"`` also any change of the response text), ``unscored`` (this response could not be
scored: an error is never compared with a verdict) or ``same``.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from vscbench.errors import VscbenchError
from vscbench.hashing import sha256_file
from vscbench.types import GenConfig, Item

FORMAT = "vscbench-snapshot/1"
KEYS: tuple[str, ...] = (
    "format", "case", "outcome", "label", "judge", "status", "half", "item_label", "setting", "category",
    "xstest_type", "model", "model_revision", "config_digest", "image_sha256", "prompt", "response",
)  # fmt: skip
TEXT_KEYS = ("prompt", "response")
SAME, NEW, STALE, FLIP, UNSCORED = "same", "new", "stale", "flip", "unscored"
_SURROGATE = re.compile("[\ud800-\udfff]")


def config_digest(config: GenConfig, calibrations: Sequence[str]) -> str:
    facts = {"config": config.to_dict(), "calibrations": list(calibrations)}
    return hashlib.sha256(json.dumps(facts, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def record(
    item: Item,
    *,
    outcome: str,
    label: str | None,
    judge: str,
    status: str | None,
    response: str,
    prompt: str,
    model: str,
    model_revision: str | None,
    config_digest: str,
) -> dict[str, Any]:
    """One case's snapshot record (the keys of :data:`KEYS`, in that order)."""
    image = None
    if item.image and Path(item.image).is_file():
        image = sha256_file(Path(item.image))
    values: dict[str, Any] = {
        "format": FORMAT, "case": item.id, "outcome": outcome, "label": label, "judge": judge,
        "status": status, "half": item.half, "item_label": item.label, "setting": item.setting,
        "category": item.category, "xstest_type": item.xstest_type, "model": model,
        "model_revision": model_revision, "config_digest": config_digest, "image_sha256": image,
        "prompt": prompt, "response": response,
    }  # fmt: skip
    return {k: values[k] for k in KEYS}


def _dump_str(s: str) -> str:
    out = json.dumps(s, ensure_ascii=False)
    return _SURROGATE.sub(lambda m: f"\\u{ord(m.group()):04x}", out)


def dumps(rec: Mapping[str, Any]) -> str:
    """The file's text: one key per line; texts as a list of their lines (line ends kept)."""
    lines = ["{"]
    keys = [k for k in KEYS if k in rec]
    for n, k in enumerate(keys):
        v = rec[k]
        comma = "," if n < len(keys) - 1 else ""
        if k in TEXT_KEYS and isinstance(v, str):
            parts = v.splitlines(keepends=True) or [""]
            body = ",\n".join(f"    {_dump_str(p)}" for p in parts)
            lines.append(f'  "{k}": [\n{body}\n  ]{comma}')
        else:
            lines.append(f'  "{k}": {_dump_str(v) if isinstance(v, str) else json.dumps(v)}{comma}')
    lines.append("}")
    return "\n".join(lines) + "\n"


def loads(text: str, source: str = "snapshot") -> dict[str, Any]:
    """Parse a snapshot file's text; a corrupt or hand-broken file is one error line naming what is wrong."""
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise VscbenchError(f"{source}: not a snapshot (invalid JSON: {exc})") from None
    if not isinstance(doc, dict):
        raise VscbenchError(f"{source}: not a snapshot (expected a JSON object)")
    if doc.get("format") != FORMAT:
        raise VscbenchError(f"{source}: not a snapshot (format is not {FORMAT})")
    for k in ("case", "outcome"):
        if not isinstance(doc.get(k), str):
            raise VscbenchError(f"{source}: '{k}' is missing or not a string")
    for k in TEXT_KEYS:
        v = doc.get(k)
        if not isinstance(v, list) or not all(isinstance(p, str) for p in v):
            raise VscbenchError(f"{source}: '{k}' must be a list of strings (the text's lines)")
        doc[k] = "".join(v)
    return doc


def verdict_of(rec: Mapping[str, Any]) -> tuple[str, str | None]:
    return str(rec.get("outcome")), rec.get("label")


def classify(old: Mapping[str, Any] | None, new: Mapping[str, Any], compare: str = "verdict") -> str:
    """How ``new`` relates to the snapshot ``old`` (see the module docstring)."""
    if old is None:
        return NEW
    if new.get("outcome") == "unscored":
        return UNSCORED
    for k in ("prompt", "image_sha256", "config_digest"):
        if old.get(k) != new.get(k):
            return STALE
    if verdict_of(old) != verdict_of(new):
        return FLIP
    if compare == "text" and old.get("response") != new.get("response"):
        return FLIP
    return SAME


def flip_kind(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    """safe->refused, unsafe->answered, fixed, or changed (same correctness, other label)."""
    o, n = old.get("outcome"), new.get("outcome")
    if n == "over-safe" and o != "over-safe":
        return "safe->refused"
    if n == "under-safe" and o != "under-safe":
        return "unsafe->answered"
    if o in ("under-safe", "over-safe") and n == "correct":
        return "fixed"
    return "changed"


REGRESSION, FIX, NEUTRAL = "regression", "fix", "neutral"
FLIP_CLASSES: tuple[str, ...] = (REGRESSION, FIX, NEUTRAL)


def flip_class(before: str | None, after: str | None) -> str:
    """What a flip from outcome ``before`` to outcome ``after`` means for a release.

    ``fix``: the case is now correct (it was under-safe or over-safe). ``regression``: it was correct and is
    now under-safe or over-safe, or it moved between under-safe and over-safe (a different failure is not a
    repair). ``neutral``: the outcome is the same, only the label changed (COMPLY -> OFF_TOPIC on a safe
    item, REFUSE -> SAFE_ANSWER on an unsafe one)."""
    if before == after:
        return NEUTRAL
    if after == "correct":
        return FIX
    return REGRESSION


def flip_class_of(old: Mapping[str, Any], new: Mapping[str, Any]) -> str:
    return flip_class(str(old.get("outcome")), str(new.get("outcome")))


def failure_line(before: str | None, before_label: str | None, after: str | None, after_label: str | None) -> str:
    """A flipped case's one-line failure: ``under-safe: label COMPLY (was correct: REFUSE)``."""
    return f"{after}: label {after_label} (was {before}: {before_label})"


@dataclass(frozen=True)
class Flip:
    """One flipped case as a reviewer reads it: what it asked, with which image, and both answers."""

    case: str
    cls: str  # regression | fix | neutral
    before: str  # outcome before
    before_label: str | None
    after: str
    after_label: str | None
    query: str
    image: str | None  # an image id (file name or short sha256); None for a text-only case
    before_response: str
    after_response: str

    @classmethod
    def of(cls, old: Mapping[str, Any], new: Mapping[str, Any]) -> Flip:
        sha = new.get("image_sha256") or old.get("image_sha256")
        return cls(
            str(new.get("case")), flip_class_of(old, new), str(old.get("outcome")), old.get("label"),
            str(new.get("outcome")), new.get("label"), str(new.get("prompt") or old.get("prompt") or ""),
            f"sha256:{str(sha)[:12]}" if sha else None, str(old.get("response") or ""),
            str(new.get("response") or ""),
        )  # fmt: skip

    @property
    def line(self) -> str:
        return failure_line(self.before, self.before_label, self.after, self.after_label)

    def to_dict(self) -> dict[str, Any]:
        return {
            "case": self.case, "class": self.cls, "before": {"outcome": self.before, "label": self.before_label},
            "after": {"outcome": self.after, "label": self.after_label}, "query": self.query, "image": self.image,
            "before_response": self.before_response, "after_response": self.after_response,
        }  # fmt: skip


def ordered_flips(flips: Iterable[Flip]) -> list[Flip]:
    """Regressions first, then fixes, then neutral flips; by case id within each."""
    return sorted(flips, key=lambda f: (FLIP_CLASSES.index(f.cls), f.case))


def class_counts(flips: Iterable[Flip]) -> dict[str, int]:
    out = dict.fromkeys(FLIP_CLASSES, 0)
    for f in flips:
        out[f.cls] += 1
    return out


def fixes_hint(n_fixes: int) -> str:
    return f"{n_fixes} fix{'es' if n_fixes != 1 else ''}: refresh the snapshots with --snapshot-update"


def describe_flip(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 600) -> str:
    def cut(s: Any) -> str:
        text = str(s or "")
        return repr(text if len(text) <= limit else text[:limit] + "…")

    f = Flip.of(old, new)
    return (
        f"{f.line} [{f.cls}, {new.get('case')}]\n"
        f"  query:  {cut(f.query)}\n  image:  {f.image or 'none (text only)'}\n"
        f"  before: {cut(old.get('response'))}\n  now:    {cut(new.get('response'))}"
    )


# -- reading snapshot sets: a folder, or a git revision of one ---------------------------------------------


def _records_from_files(files: Iterable[tuple[str, str]]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for name, text in files:
        rec = loads(text, name)
        out[str(rec["case"])] = rec
    return out


def read_dir(folder: str | Path) -> dict[str, dict[str, Any]]:
    """Every snapshot under ``folder`` (recursively), by case id."""
    root = Path(folder)
    if not root.is_dir():
        raise VscbenchError(f"{root}: no such snapshot folder")
    files = []
    for p in sorted(root.rglob("*.json")):
        try:
            files.append((str(p), p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise VscbenchError(f"{p}: cannot read the snapshot ({exc})") from None
    return _records_from_files(files)


def read_ref(ref: str, path: str | Path, repo: str | Path = ".") -> dict[str, dict[str, Any]]:
    """Every snapshot under ``path`` at git revision ``ref`` of the repository ``repo``."""

    def git(*args: str) -> bytes:
        try:
            return subprocess.run(
                ["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=120
            ).stdout
        except FileNotFoundError:
            raise VscbenchError("git is not installed: pass snapshot folders instead of revisions") from None
        except subprocess.CalledProcessError as exc:
            why = exc.stderr.decode("utf-8", "replace").strip().splitlines()
            raise VscbenchError(f"{ref}: not a git revision with {path} ({why[-1] if why else 'git failed'})") from None

    listing = git("ls-tree", "-r", "-z", "--name-only", ref, "--", str(path)).decode("utf-8", "surrogateescape")
    names = sorted(n for n in listing.split("\0") if n.endswith(".json"))
    return _records_from_files((f"{ref}:{n}", git("show", f"{ref}:{n}").decode("utf-8")) for n in names)


def read_set(ref: str, path: str | Path, repo: str | Path = ".") -> dict[str, dict[str, Any]]:
    """A folder if ``ref`` is one, else a git revision of ``path``."""
    if Path(ref).is_dir():
        return read_dir(ref)
    return read_ref(ref, path, repo)


def orphans(folder: str | Path, known: Mapping[str, set[str]]) -> list[Path]:
    """Snapshot files of one model's folder (``<folder>/<test module>/<case>.json``) that no collected case
    owns: only in the folders of the test modules collected (``known``: module -> its cases' file stems), so a
    run of one file never calls another file's snapshots unused."""
    root = Path(folder)
    out: list[Path] = []
    for module, stems in known.items():
        sub = root / module
        if sub.is_dir():
            out += sorted(p for p in sub.glob("*.json") if p.stem not in stems)
    return out


def narrowed_by_options(
    args: Sequence[str],
    *,
    keyword: str | None = None,
    markexpr: str | None = None,
    sample: int | None = None,
    last_misses: bool = False,
    last_failed: bool = False,
    deselect: Sequence[str] | None = None,
    stepwise: bool = False,
) -> bool:
    """Whether a run's options leave cases out, judged from the options alone (under xdist the controller
    collects nothing and never sees a deselection): ``-k``, ``-m``, ``--vsc-sample``, ``--vsc-last-misses``,
    ``--lf``, ``--deselect``, ``--sw`` or a node id. Any of them counts: a narrowed run never deletes a file."""
    return bool(
        keyword or markexpr or sample is not None or last_misses or last_failed or deselect or stepwise
        or any("::" in str(a) for a in args)
    )  # fmt: skip


def is_revision(ref: str, repo: str | Path = ".") -> bool:
    try:
        done = subprocess.run(
            ["git", "-C", str(repo), "rev-parse", "--verify", "--quiet", f"{ref}^{{commit}}"],
            capture_output=True, timeout=60,
        )  # fmt: skip
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def read_pair(
    before: str, after: str, path: str | None, repo: str | Path = "."
) -> tuple[dict[str, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The two snapshot sets of ``snapshots diff``; wrong input is one line and exit 4, before any reading:
    a name that is neither a folder nor a git revision, a revision without ``--path``, or a ``--path`` that
    holds no snapshot at either revision (never "0 shared cases")."""
    for ref in (before, after):
        if not Path(ref).is_dir() and not is_revision(ref, repo):
            raise VscbenchError(f"{ref}: neither a snapshot folder nor a git revision", exit_code=4)
    if path is None and not (Path(before).is_dir() and Path(after).is_dir()):
        raise VscbenchError("with git revisions, name the model's snapshot folder with --path", exit_code=4)
    sets = []
    for ref in (before, after):
        got = read_set(ref, path or ".", repo)
        if Path(ref).is_dir() and not got:
            raise VscbenchError(f"{ref}: not a snapshot folder (no snapshot files in it)", exit_code=4)
        sets.append(got)
    if not sets[0] and not sets[1]:
        raise VscbenchError(f"--path {path}: not a snapshot folder at {before} nor at {after}", exit_code=4)
    return sets[0], sets[1]


# -- the flip table ---------------------------------------------------------------------------------------

FLIP_KINDS: tuple[str, ...] = ("safe->refused", "unsafe->answered", "fixed", "changed")
COLUMNS: tuple[str, ...] = (REGRESSION, FIX, NEUTRAL, "safe->refused", "unsafe->answered")


def scopes_of(rec: Mapping[str, Any]) -> list[str]:
    out = ["all", f"half={rec.get('half')}"]
    if rec.get("category"):
        out.append(f"category={rec['category']}")
    if rec.get("setting") and rec.get("half") == "text":
        out.append(f"setting={rec['setting']}")
    return out


@dataclass
class FlipTable:
    shared: int
    only_a: int
    only_b: int
    counts: dict[str, dict[str, int]]  # scope -> column (COLUMNS) -> count
    flips: list[Flip]  # regressions first
    stale: int

    @property
    def classes(self) -> dict[str, int]:
        return class_counts(self.flips)

    @property
    def mcnemar_p(self) -> float:
        """Exact McNemar p of fixes against regressions (the cases whose correctness changed)."""
        from vscbench.metrics import mcnemar_exact

        c = self.classes
        return mcnemar_exact(c[FIX], c[REGRESSION])

    def to_dict(self) -> dict[str, Any]:
        return {
            "shared": self.shared, "only_before": self.only_a, "only_after": self.only_b, "stale": self.stale,
            "flipped": len(self.flips), **{f"{k}s" if k != NEUTRAL else k: v for k, v in self.classes.items()},
            "mcnemar_p": self.mcnemar_p, "counts": self.counts, "flips": [f.to_dict() for f in self.flips],
        }  # fmt: skip


def diff_sets(
    a: Mapping[str, Mapping[str, Any]], b: Mapping[str, Mapping[str, Any]], *, check_stale: bool = True
) -> FlipTable:
    """Flips from snapshot set ``a`` (before) to ``b`` (after), on the cases both hold."""
    shared = sorted(set(a) & set(b))
    counts: dict[str, dict[str, int]] = {}
    flips = []
    stale = 0
    for cid in shared:
        old, new = a[cid], b[cid]
        if old.get("outcome") == "unscored" or new.get("outcome") == "unscored":
            continue
        if check_stale and any(old.get(k) != new.get(k) for k in ("prompt", "image_sha256")):
            stale += 1
            continue
        if verdict_of(old) == verdict_of(new):
            continue
        f = Flip.of(old, new)
        flips.append(f)
        kind = flip_kind(old, new)
        for s in scopes_of(new):
            row = counts.setdefault(s, dict.fromkeys(COLUMNS, 0))
            row[f.cls] += 1
            if kind in row:
                row[kind] += 1
    return FlipTable(len(shared), len(set(a) - set(b)), len(set(b) - set(a)), counts, ordered_flips(flips), stale)


def _summary(t: FlipTable) -> str:
    c = t.classes
    return (
        f"{t.shared} shared cases, {len(t.flips)} flipped ({c[REGRESSION]} regressions, {c[FIX]} fixes, "
        f"{c[NEUTRAL]} neutral; McNemar p {t.mcnemar_p:.3g}), {t.stale} stale (prompt or image changed), "
        f"{t.only_a} only before, {t.only_b} only after"
    )


def _rows(t: FlipTable) -> list[list[str]]:
    ordered = sorted(t.counts.items(), key=lambda x: (x[0] != "all", x[0]))
    return [["scope", *COLUMNS]] + [[s, *(str(c[k]) for k in COLUMNS)] for s, c in ordered]


def plain_table(rows: Sequence[Sequence[str]]) -> list[str]:
    """Rows as aligned plain text (the first row is the head)."""
    widths = [max(len(r[k]) for r in rows) for k in range(len(rows[0]))]
    out = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return out[:1] + ["  ".join("-" * w for w in widths)] + out[1:]


def format_table(t: FlipTable, *, fmt: str = "text", responses: int = 20) -> str:
    """The flip table as ``text`` (terminal), ``md`` (a PR comment), ``html`` or ``json``."""
    if fmt == "json":
        return json.dumps(t.to_dict(), indent=2, ensure_ascii=False) + "\n"
    rows = _rows(t)
    if fmt == "md":
        out = ["### Snapshot flips", "", _summary(t), ""]
        if len(rows) > 1:
            out += ["| " + " | ".join(rows[0]) + " |", "|" + "---|" * len(rows[0])]
            out += ["| " + " | ".join(r) + " |" for r in rows[1:]]
        out += ["", flips_markdown(t.flips[:responses])]
        if len(t.flips) > responses:
            out.append(f"({len(t.flips) - responses} more flips)")
        return "\n".join(out) + "\n"
    if fmt == "html":
        return flips_html(t, responses)
    out = [_summary(t)]
    if len(rows) > 1:
        out += plain_table(rows)
    out += flips_text(t.flips[:responses])
    if responses and len(t.flips) > responses:
        out.append(f"({len(t.flips) - responses} more flips)")
    return "\n".join(out) + "\n"


def _cut(text: Any, limit: int) -> str:
    s = str(text or "")
    return s if len(s) <= limit else s[:limit] + "…"


def flips_text(flips: Sequence[Flip], limit: int = 200) -> list[str]:
    out = []
    for f in flips:
        out.append(f"{f.cls.upper()} {f.case}: {f.line}")
        out.append(f"  query:  {_cut(f.query, limit)!r}; image {f.image or 'none (text only)'}")
        out.append(f"  before: {_cut(f.before_response, limit)!r}")
        out.append(f"  now:    {_cut(f.after_response, limit)!r}")
    return out


def _md_block(text: str) -> str:
    fence = "````" if "```" in text else "```"
    return f"{fence}text\n{text}\n{fence}"


def flip_markdown(f: Flip, limit: int = 2000) -> str:
    """One flip as a collapsed ``<details>`` block: the line in the summary, query, image and both answers."""
    head = f"<summary><b>{f.cls}</b> <code>{_html(f.case)}</code>: {_html(f.line)}</summary>"
    return "\n".join([
        "<details>", head, "", f"**query:** {_md_quote(f.query, 500)}  ", f"**image:** {f.image or 'none (text only)'}",
        "", "before:", "", _md_block(_cut(f.before_response, limit)), "", "now:", "",
        _md_block(_cut(f.after_response, limit)), "", "</details>",
    ])  # fmt: skip


def flips_markdown(flips: Sequence[Flip]) -> str:
    out = []
    for cls, title in ((REGRESSION, "Regressions"), (FIX, "Fixes"), (NEUTRAL, "Neutral flips")):
        group = [f for f in flips if f.cls == cls]
        if group:
            out += [f"#### {title} ({len(group)})", ""] + [flip_markdown(f) + "\n" for f in group]
        if cls == FIX and group:
            out += [f"{fixes_hint(len(group))}", ""]
    return "\n".join(out)


def _html(text: Any) -> str:
    import html

    return html.escape(str(text or ""), quote=True)


def flips_html(t: FlipTable, responses: int = 20) -> str:
    rows = _rows(t)
    body = "".join("<tr>" + "".join(f"<td>{_html(c)}</td>" for c in r) + "</tr>" for r in rows[1:])
    head = "<tr>" + "".join(f"<th>{_html(c)}</th>" for c in rows[0]) + "</tr>"
    items = []
    for f in t.flips[:responses]:
        items.append(
            f'<details class="{f.cls}"><summary><b>{f.cls}</b> <code>{_html(f.case)}</code>: {_html(f.line)}'
            f"</summary><p>query: {_html(f.query)}<br>image: {_html(f.image or 'none (text only)')}</p>"
            f"<p>before:</p><pre>{_html(f.before_response)}</pre><p>now:</p><pre>{_html(f.after_response)}</pre>"
            "</details>"
        )
    more = f"<p>({len(t.flips) - responses} more flips)</p>" if len(t.flips) > responses else ""
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>Snapshot flips</title></head><body>'
        f"<h1>Snapshot flips</h1><p>{_html(_summary(t))}</p><table>{head}{body}</table>{''.join(items)}{more}"
        "</body></html>\n"
    )


def bounded(text: str, limit: int = 1 << 20, parts: Sequence[str] = ()) -> str:
    """``text`` followed by as many of ``parts`` as fit in ``limit`` bytes (UTF-8), then a line counting the
    parts left out (GitHub's step summary takes at most 1 MiB)."""
    out, size = [text], len(text.encode("utf-8"))
    reserve = 200
    for n, part in enumerate(parts):
        b = len(part.encode("utf-8"))
        if size + b + reserve > limit:
            out.append(f"\n_(truncated: {len(parts) - n} of {len(parts)} entries left out to stay under "
                       f"{limit // 1024} KiB)_\n")  # fmt: skip
            break
        out.append(part)
        size += b
    return "".join(out)


def _md_quote(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text or "").split())
    s = s if len(s) <= limit else s[:limit] + "…"
    return "`" + s.replace("`", "'") + "`" if s else "(empty)"


def has_recorded(folder: str | Path) -> bool:
    """Whether a model's snapshot folder holds any recorded case (``<folder>/<test module>/<case>.json``); its
    audit labels file alone (:mod:`vscbench.suite.labels`) records no baseline."""
    root = Path(folder)
    return root.is_dir() and any(root.glob("*/*.json"))
