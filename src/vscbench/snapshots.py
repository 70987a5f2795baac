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


def describe_flip(old: Mapping[str, Any], new: Mapping[str, Any], limit: int = 600) -> str:
    def cut(s: Any) -> str:
        text = str(s or "")
        return repr(text if len(text) <= limit else text[:limit] + "…")

    return (
        f"{new.get('case')}: {flip_kind(old, new)}: verdict {verdict_of(old)} -> {verdict_of(new)}\n"
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


# -- the flip table ---------------------------------------------------------------------------------------

FLIP_KINDS: tuple[str, ...] = ("safe->refused", "unsafe->answered", "fixed", "changed")


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
    counts: dict[str, dict[str, int]]  # scope -> kind -> count
    flips: list[tuple[str, dict[str, Any], dict[str, Any]]]  # (kind, old, new)
    stale: int


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
        kind = flip_kind(old, new)
        flips.append((kind, dict(old), dict(new)))
        for s in scopes_of(new):
            counts.setdefault(s, dict.fromkeys(FLIP_KINDS, 0))[kind] += 1
    return FlipTable(len(shared), len(set(a) - set(b)), len(set(b) - set(a)), counts, flips, stale)


def format_table(t: FlipTable, *, fmt: str = "text", responses: int = 20) -> str:
    head = ["scope", *FLIP_KINDS]
    rows = [[s, *(str(c[k]) for k in FLIP_KINDS)] for s, c in sorted(t.counts.items(), key=lambda x: (x[0] != "all", x[0]))]
    summary = (
        f"{t.shared} shared cases, {len(t.flips)} flipped, {t.stale} stale (prompt or image changed), "
        f"{t.only_a} only before, {t.only_b} only after"
    )
    if fmt == "md":
        out = ["### Snapshot flips", "", summary, ""]
        if rows:
            out += ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
            out += ["| " + " | ".join(r) + " |" for r in rows]
        for kind, old, new in t.flips[:responses]:
            out += ["", f"- `{new['case']}` **{kind}**: {verdict_of(old)} → {verdict_of(new)}"]
            out += [f"  - before: {_md_quote(old.get('response'))}", f"  - now: {_md_quote(new.get('response'))}"]
        if len(t.flips) > responses:
            out.append(f"\n({len(t.flips) - responses} more flips)")
        return "\n".join(out) + "\n"
    widths = [max(len(r[k]) for r in [head, *rows]) for k in range(len(head))]
    out = [summary]
    if rows:
        out += ["  ".join(c.ljust(w) for c, w in zip(head, widths, strict=True))]
        out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    for _kind, old, new in t.flips[:responses]:
        out.append(describe_flip(old, new, 200))
    if len(t.flips) > responses:
        out.append(f"({len(t.flips) - responses} more flips)")
    return "\n".join(out) + "\n"


def _md_quote(text: Any, limit: int = 200) -> str:
    s = " ".join(str(text or "").split())
    s = s if len(s) <= limit else s[:limit] + "…"
    return "`" + s.replace("`", "'") + "`" if s else "(empty)"
