"""Integrity check of a release: counts, missing files, unreadable or mislabelled images, metadata quirks.

Invariants:

* ``ok`` is True only when every image that any item names is present, decodes fully, is within the pixel
  limit and has the extension of its real format. Metadata quirks (blank queries, duplicate names, a
  metadata file that differs from the pinned upstream copy) are reported but do not make a release broken.
* The JSON form has stable keys (:data:`REPORT_KEYS`); lists are sorted so two runs on the same tree give
  the same output.
* Nothing is written: verify only reads.
"""

from __future__ import annotations

import warnings
from collections import Counter, defaultdict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from vscbench.data.images import MAX_IMAGE_PIXELS, ImageProblem, check_image
from vscbench.data.items import BLANK_QUERY_NOTE, load_items
from vscbench.data.paths import METADATA_SHA256, DataPaths
from vscbench.hashing import sha256_file
from vscbench.types import CATEGORIES, SETTINGS, Item

#: Top-level keys of :meth:`VerifyReport.to_dict`, in order.
REPORT_KEYS: tuple[str, ...] = (
    "ok",
    "root",
    "metadata",
    "items",
    "benchmark_items",
    "counts",
    "settings",
    "runnable",
    "missing",
    "bad_images",
    "blank_queries",
    "duplicates",
    "extra_files",
    "problems",
)
#: Settings whose images ``vscbench data render`` can build from metadata (concat needs the search image).
RENDERABLE = ("typography", "figstep", "concat")


#: Missing files named one per line in the text report; --json always lists them all.
MAX_LISTED = 50


@dataclass
class SettingStatus:
    """Images of one setting: how many items, files named, present, missing, bad; runnable iff none lacking."""

    items: int = 0
    files: int = 0
    present: int = 0
    missing: int = 0
    bad: int = 0

    @property
    def runnable(self) -> bool:
        return self.missing == 0 and self.bad == 0

    def to_dict(self, setting: str) -> dict[str, Any]:
        hint = None
        if not self.runnable:
            if setting in ("typography", "figstep"):
                hint = "run vscbench data render" + (" --force" if self.bad else "")
            elif setting == "concat":
                hint = "get the search images, then run vscbench data render"
            else:
                hint = "run vscbench data fetch, or vscbench data import ARCHIVE"
        return {
            "items": self.items,
            "files": self.files,
            "present": self.present,
            "missing": self.missing,
            "bad": self.bad,
            "runnable": self.runnable,
            "fix": hint,
        }


@dataclass
class VerifyReport:
    """What :func:`verify_release` found. ``ok`` iff nothing is missing or bad."""

    root: Path
    metadata: dict[str, dict[str, Any]]
    items: list[Item]
    settings: dict[str, SettingStatus]
    missing: list[Path] = field(default_factory=list)
    bad: list[ImageProblem] = field(default_factory=list)
    duplicates: list[dict[str, Any]] = field(default_factory=list)
    extra_files: list[Path] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.bad

    def blank_queries(self) -> list[dict[str, Any]]:
        by_q: dict[str, list[Item]] = defaultdict(list)
        for it in self.items:
            if it.note == BLANK_QUERY_NOTE:
                by_q[it.query_id].append(it)
        return [
            {
                "row": its[0].row,
                "query_id": q,
                "half": its[0].half,
                "items": len(its),
                "action": BLANK_QUERY_NOTE,
            }
            for q, its in sorted(by_q.items(), key=lambda kv: kv[1][0].row)
        ]

    def items_missing_image(self) -> int:
        """Items whose image file is missing. Can exceed ``len(missing)``: some files are named by two items."""
        miss = {str(p) for p in self.missing}
        return sum(1 for i in self.items if i.image is not None and i.image in miss)

    def shortfall(self) -> str:
        """What keeps the release from being whole, e.g.
        ``3598 image file(s) missing (named by 3600 items), 0 bad image(s)``.

        Files are counted once each; ``vscbench data export`` counts items, hence the second figure."""
        n_items = self.items_missing_image()
        named = f" (named by {n_items} items)" if n_items != len(self.missing) else ""
        return f"{len(self.missing)} image file(s) missing{named}, {len(self.bad)} bad image(s)"

    def problems(self) -> list[str]:
        """One line per bad or missing file (the reason verify fails)."""
        out = [f"{p}: missing" for p in self.missing]
        out += [b.line() for b in self.bad]
        return out

    def problem_lines(self) -> list[str]:
        """Problems for people: every bad image and every missing file, except that a setting whose files
        are all missing takes one line (the JSON always lists every file)."""
        out: list[str] = []
        missing = set(self.missing)
        folded: set[Path] = set()
        for s, st in self.settings.items():
            if st.files and st.missing == st.files:
                files = {Path(i.image) for i in self.items if i.setting == s and i.image}
                folded |= files
                where = sorted({str(p.parent.parent if s == "image" else p.parent) for p in files})
                label = "image-half" if s == "image" else s
                out.append(f"MISSING all {st.files} {label} images (under {', '.join(where)})")
        listed = sorted(missing - folded)
        out += [f"MISSING {p}" for p in listed[:MAX_LISTED]]
        if len(listed) > MAX_LISTED:
            out.append(f"MISSING ... and {len(listed) - MAX_LISTED} more (--json lists every file)")
        out += [f"BAD {b.line()}" for b in self.bad]
        return out

    def runnable(self) -> dict[str, Any]:
        settings = [s for s in SETTINGS if s in self.settings and self.settings[s].runnable]
        run_items = [i for i in self.items if i.setting in settings]
        blank = sum(1 for i in run_items if i.note == BLANK_QUERY_NOTE)
        return {
            "settings": settings,
            "items": len(run_items),
            "benchmark_items": sum(1 for i in run_items if i.in_benchmark),
            "blank_query_items_not_sent": blank,
        }

    def counts(self) -> dict[str, Any]:
        img = [i for i in self.items if i.half == "image"]
        txt = [i for i in self.items if i.half == "text"]
        by_cat = {c: {"safe": 0, "unsafe": 0} for c in CATEGORIES}
        for i in img:
            by_cat[i.category or ""][i.label] += 1
        by_setting: dict[str, dict[str, int]] = {}
        for i in txt:
            by_setting.setdefault(i.setting, {"safe": 0, "unsafe": 0})[i.label] += 1
        by_type = Counter(i.xstest_type or "" for i in txt if i.setting == "text")
        return {
            "image": {"by_category": by_cat},
            "text": {
                "by_setting": by_setting,
                "queries_by_type": dict(sorted(by_type.items())),
            },
            "by_half_label": {
                h: dict(sorted(Counter(i.label for i in self.items if i.half == h).items()))
                for h in ("image", "text")
            },
        }

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "ok": self.ok,
            "root": str(self.root),
            "metadata": self.metadata,
            "items": {h: sum(1 for i in self.items if i.half == h) for h in ("image", "text")},
            "benchmark_items": sum(1 for i in self.items if i.in_benchmark),
            "counts": self.counts(),
            "settings": {s: self.settings[s].to_dict(s) for s in SETTINGS if s in self.settings},
            "runnable": self.runnable(),
            "missing": [str(p) for p in self.missing],
            "bad_images": [{"path": str(b.path), "kind": b.kind, "detail": b.detail} for b in self.bad],
            "blank_queries": self.blank_queries(),
            "duplicates": self.duplicates,
            "extra_files": [str(p) for p in self.extra_files],
            "problems": self.problems(),
        }
        assert tuple(d) == REPORT_KEYS
        return d

    def lines(self) -> list[str]:
        """The human-readable report."""
        d = self.to_dict()
        out = [f"release root: {d['root']}"]
        for half, m in d["metadata"].items():
            state = (
                "matches the pinned upstream copy"
                if m["matches_upstream"]
                else "differs from upstream 426fa1f"
            )
            out.append(f"metadata ({half}): {m['path']} ({state})")
        text_only = sum(1 for i in self.items if i.setting == "text")
        out.append(
            f"items: image {d['items']['image']}, text {d['items']['text']} "
            f"(benchmark {d['benchmark_items']}, text-only baseline {text_only})"
        )
        cats = d["counts"]["image"]["by_category"]
        out.append(
            "image half by category (safe/unsafe): "
            + ", ".join(f"{c} {v['safe']}/{v['unsafe']}" for c, v in cats.items())
        )
        sets = d["counts"]["text"]["by_setting"]
        out.append(
            "text half by setting (safe/unsafe): "
            + ", ".join(f"{s} {v['safe']}/{v['unsafe']}" for s, v in sets.items())
        )
        out.append(f"{'setting':<11}{'items':>7}{'files':>7}{'present':>9}{'missing':>9}{'bad':>6}  runnable")
        for s, st in d["settings"].items():
            run = "yes" if st["runnable"] else f"no: {st['fix']}"
            out.append(
                f"{s:<11}{st['items']:>7}{st['files']:>7}{st['present']:>9}{st['missing']:>9}{st['bad']:>6}  {run}"
            )
        r = d["runnable"]
        out.append(
            f"runnable now: {', '.join(r['settings']) or 'none'} = {r['items']} items"
            + (
                f" ({r['blank_query_items_not_sent']} with a blank query are not sent)"
                if r["blank_query_items_not_sent"]
                else ""
            )
        )
        for b in d["blank_queries"]:
            out.append(f"blank query: row {b['row']} ({b['query_id']}, {b['items']} items): {b['action']}")
        for dup in d["duplicates"]:
            out.append(f"duplicate image name: {dup['message']}")
        if d["extra_files"]:
            out.append(f"files not named by the metadata: {len(d['extra_files'])} (ignored)")
        out += self.problem_lines()
        if self.ok:
            out.append("result: the release is whole")
        else:
            out.append(f"result: NOT whole: {self.shortfall()}")
        return out


def _metadata_info(paths: DataPaths) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for half, p in (("image", paths.image_centric_xlsx), ("text", paths.text_centric_xlsx)):
        digest = sha256_file(p)
        out[half] = {"path": str(p), "sha256": digest, "matches_upstream": digest == METADATA_SHA256[p.name]}
    return out


def _column(it: Item) -> str:
    if it.half == "image":
        return f"{it.label}_img_{it.slot}"
    return f"{it.setting}_img"


def find_duplicates(items: Sequence[Item], root: Path) -> list[dict[str, Any]]:
    """Image files named by more than one item *for different images slots* (same file, several cells)."""
    by_path: dict[str, list[Item]] = defaultdict(list)
    for it in items:
        if it.image is not None:
            by_path[it.image].append(it)
    out: list[dict[str, Any]] = []
    for path, its in sorted(by_path.items(), key=lambda kv: (kv[1][0].half != "image", kv[1][0].row, kv[0])):
        if len(its) < 2:
            continue
        cells = [f"row {i.row} {_column(i)}" for i in its]
        rel = str(Path(path).relative_to(root)) if Path(path).is_relative_to(root) else path
        out.append(
            {
                "half": its[0].half,
                "file": rel,
                "name": its[0].image_name,
                "rows": sorted({i.row for i in its}),
                "columns": [_column(i) for i in its],
                "items": [i.id for i in its],
                "message": (
                    f"{its[0].image_name} ({its[0].half} half) is named by {', '.join(cells)}: "
                    f"items {', '.join(i.id for i in its)} show the same image"
                ),
            }
        )
    return out


def _extra_files(paths: DataPaths, named: set[Path]) -> list[Path]:
    out: list[Path] = []
    for base in (paths.image_centric_images, paths.text_centric_images):
        if base.is_dir():
            out += [p for p in base.rglob("*") if p.is_file() and p not in named]
    return sorted(out)


def verify_release(
    paths: DataPaths, max_pixels: int = MAX_IMAGE_PIXELS, workers: int | None = None
) -> VerifyReport:
    """Check every image the metadata names under ``paths.root``; see the module docstring for ``ok``."""
    from vscbench.data.render import default_jobs

    items = load_items(paths)
    settings: dict[str, SettingStatus] = {s: SettingStatus() for s in SETTINGS}
    files_by_setting: dict[str, dict[Path, None]] = {s: {} for s in SETTINGS}
    for it in items:
        settings[it.setting].items += 1
        if it.image is not None:
            files_by_setting[it.setting][Path(it.image)] = None
    all_files = sorted({p for fs in files_by_setting.values() for p in fs})
    present = [p for p in all_files if p.is_file()]
    missing = sorted(set(all_files) - set(present))

    n = workers or max(2, default_jobs() * 2)
    with warnings.catch_warnings():
        # Pillow warns (rather than fails) for images between its limit and twice its limit: make it fail.
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        with ThreadPoolExecutor(max_workers=n) as pool:
            results = list(pool.map(lambda p: check_image(p, max_pixels), present))
    bad = [r for r in results if r is not None]
    bad_paths = {b.path for b in bad}
    missing_set = set(missing)
    for s, fs in files_by_setting.items():
        st = settings[s]
        st.files = len(fs)
        st.missing = sum(1 for p in fs if p in missing_set)
        st.present = st.files - st.missing
        st.bad = sum(1 for p in fs if p in bad_paths)
    return VerifyReport(
        root=paths.root,
        metadata=_metadata_info(paths),
        items=items,
        settings=settings,
        missing=missing,
        bad=sorted(bad, key=lambda b: str(b.path)),
        duplicates=find_duplicates(items, paths.root),
        extra_files=_extra_files(paths, set(all_files)),
    )
