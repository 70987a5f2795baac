"""``vscbench data``: list, render, verify, fetch, import and export the benchmark data."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from vscbench.cli.common import SETTINGS, Parser, add_data_args, positive_int, print_json


def _cmd_data_items(a: argparse.Namespace) -> int:
    from vscbench.data import load_items, resolve_paths

    items = load_items(resolve_paths(a.root, a.metadata), half=a.half, settings=a.setting)
    if a.json:
        print_json([i.to_dict() for i in items])
    else:
        for i in items:
            sys.stdout.write(f"{i.id}\t{i.label}\t{i.setting}\t{i.query[:80]!r}\n")
    return 0


def _cmd_data_render(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data import resolve_paths
    from vscbench.data.render import render_release

    s = render_release(
        resolve_paths(a.root, a.metadata), out=Path(a.out) if a.out else None, force=a.force, workers=a.jobs
    )
    if a.json:
        print_json(s.to_dict())
        return 0
    for setting in s.written:
        sys.stdout.write(f"{setting}: {s.written[setting]} written, {s.kept[setting]} kept\n")
    if s.skipped_no_search:
        sys.stdout.write(f"concat: {len(s.skipped_no_search)} skipped (search image not present)\n")
    sys.stdout.write(f"images under {s.out} (font {s.font})\n")
    return 0


def _cmd_data_verify(a: argparse.Namespace) -> int:
    from vscbench.data import resolve_paths
    from vscbench.data.verify import verify_release

    report = verify_release(resolve_paths(a.root, a.metadata), max_pixels=a.max_pixels, workers=a.jobs)
    if a.json:
        print_json(report.to_dict())
    else:
        sys.stdout.write("\n".join(report.lines()) + "\n")
    if not report.ok:
        sys.stderr.write(f"vscbench: the release under {report.root} is not whole: {report.shortfall()}\n")
    return 0 if report.ok else 1


def _cmd_data_fetch(a: argparse.Namespace) -> int:
    from vscbench.data.fetch import DRIVE_FILE_ID, RAW_BASE_URL, fetch_images, fetch_metadata
    from vscbench.data.paths import release_root

    root = release_root(a.root)
    for f in fetch_metadata(root, base_url=a.base_url or RAW_BASE_URL, force=a.force):
        sys.stdout.write(f"{f.name}: {f.action} ({f.path}, sha256 {f.sha256[:12]}… matches the pin)\n")
    if a.metadata_only:
        return 0
    s = fetch_images(root, drive_id=a.drive_id or DRIVE_FILE_ID)
    sys.stdout.write(f"images: {s.files} under {s.root}\n")
    return 0


def _cmd_data_import(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data.archive import import_archive
    from vscbench.data.paths import release_root

    s = import_archive(Path(a.archive), release_root(a.root))
    if a.json:
        print_json(s.to_dict())
        return 0
    for folder, n in s.files.items():
        sys.stdout.write(f"{folder}: {n} files\n")
    for name in s.metadata:
        sys.stdout.write(f"{name}: installed (matches the pinned upstream copy)\n")
    for note in s.skipped:
        sys.stdout.write(f"skipped: {note}\n")
    sys.stdout.write(f"imported into {s.root}; check with: vscbench data verify --root {s.root}\n")
    return 0


def _cmd_data_export(a: argparse.Namespace) -> int:
    from pathlib import Path

    from vscbench.data import load_items, resolve_paths
    from vscbench.data.export import export_items

    items = load_items(resolve_paths(a.root, a.metadata), half=a.half, settings=a.setting)
    s = export_items(items, a.format, Path(a.out), embed=a.embed_images)
    note = f" ({s.note()})" if s.images_missing else ""
    sys.stdout.write(f"wrote {s.rows} items as {s.format} to {s.out}{note}\n")
    return 0


def register(sub: argparse._SubParsersAction[Any]) -> None:
    data = sub.add_parser("data", help="get, check, render and export the benchmark data")
    dsub = data.add_subparsers(dest="data_command", required=True, metavar="COMMAND", parser_class=Parser)

    p = dsub.add_parser(
        "items",
        help="list the benchmark items",
        description="List the items the metadata defines, in canonical order, one per line: id, label "
        "(safe/unsafe), setting and the first 80 characters of the query. The image half has 1800 items "
        "(6 per query: 3 safe and 3 unsafe images); the text half 2250 (450 queries x text, search, "
        "typography, concat, figstep), the text-only baseline included. Reads only the two metadata files: "
        "images need not be present.",
    )
    add_data_args(p)
    p.add_argument("--half", choices=["image", "text"], help="only this half")
    p.add_argument("--setting", action="append", choices=list(SETTINGS), help="only this setting (repeatable)")
    p.add_argument("--json", action="store_true", help="a JSON list of objects keyed by the Item field names")
    p.set_defaults(func=_cmd_data_items)

    p = dsub.add_parser(
        "render",
        help="build the typography, FigStep and concat images from the metadata",
        description="Render the 450 typography and 450 FigStep images (and concat images where the search "
        "image exists) into <out>/vscbench_text_centric_images/<setting>/. Output is byte-identical across runs.",
    )
    add_data_args(p)
    p.add_argument("--out", help="write the images under this folder instead of the root (same layout)")
    p.add_argument("--force", action="store_true", help="re-render images that already exist")
    p.add_argument("--jobs", type=positive_int, help="worker processes (default: the CPUs available)")
    p.add_argument("--json", action="store_true", help="print what was done as JSON")
    p.set_defaults(func=_cmd_data_render)

    p = dsub.add_parser(
        "verify",
        help="check the release: counts, missing/corrupt/mislabelled images, metadata quirks",
        description="Check every image the metadata names: present, decodable, within the pixel limit, and "
        "in the format its extension says. Reports counts per half/category/setting/label, blank-query rows, "
        "duplicate image names and which settings can run now. Exit 0 only when the release is whole, "
        "else 1 (each bad file is named).",
    )
    add_data_args(p)
    p.add_argument("--json", action="store_true", help="the report as JSON with stable keys")
    p.add_argument(
        "--max-pixels", type=positive_int, default=50_000_000, help="largest image accepted (width x height)"
    )
    p.add_argument("--jobs", type=positive_int, help="threads decoding images (default: 2 x CPUs)")
    p.set_defaults(func=_cmd_data_verify)

    p = dsub.add_parser(
        "fetch",
        help="download the metadata (pinned, SHA-256 checked) and the image archive",
        description="Download the two metadata files from jiahuigeng/VSCBench at commit 426fa1f (checked "
        "against pinned SHA-256 hashes), then the image archive from the Google Drive link in the upstream "
        "README (needs the 'fetch' extra: pip install 'vscbench[fetch]'), extracted safely under the root.",
    )
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument("--metadata-only", action="store_true", help="download only the two metadata files")
    p.add_argument("--force", action="store_true", help="download the metadata even if a good copy exists")
    p.add_argument(
        "--drive-id", help="Google Drive file id of the image archive (default: the one in the upstream README)"
    )
    p.add_argument(
        "--base-url", help="fetch the metadata files from this mirror instead of raw.githubusercontent.com"
    )
    p.set_defaults(func=_cmd_data_fetch)

    p = dsub.add_parser(
        "import",
        help="install an image archive downloaded by hand (zip or tar), safely",
        description="Extract a zip/tar of the official release under the root: no absolute paths, no '..', "
        "no links or devices, per-file/total size and file-count limits; only the release folders (and "
        "metadata matching the pinned hashes) are installed.",
    )
    p.add_argument("archive", help="the .zip or .tar(.gz/.bz2/.xz) file")
    p.add_argument("--root", help="release root (default: $VSCBENCH_HOME or ~/.cache/vscbench)")
    p.add_argument("--json", action="store_true", help="print what was installed as JSON")
    p.set_defaults(func=_cmd_data_import)

    p = dsub.add_parser(
        "export",
        help="write the items for other harnesses (jsonl, parquet, Hugging Face datasets)",
        description="One row per item: id, half, label, category/xstest_type, setting, query, image path "
        "(hf: an Image feature with the bytes; parquet --embed-images: an image_bytes column).",
    )
    add_data_args(p)
    p.add_argument("--format", required=True, choices=["jsonl", "parquet", "hf"], help="output format")
    p.add_argument("--out", required=True, help="output file (jsonl, parquet) or folder (hf)")
    p.add_argument("--half", choices=["image", "text"], help="only this half")
    p.add_argument("--setting", action="append", choices=list(SETTINGS), help="only this setting (repeatable)")
    p.add_argument("--embed-images", action="store_true", help="parquet: add the image bytes")
    p.set_defaults(func=_cmd_data_export)
