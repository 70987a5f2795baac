"""Reports stage: terminal table, Markdown, LaTeX, CSV/JSON, one-file HTML, plots.

:func:`build_report` reads the store and computes the metrics once; :func:`render` turns the result into
one of :data:`FORMATS`.
"""

from __future__ import annotations

from pathlib import Path

from vscbench.errors import VscbenchError
from vscbench.report.build import Report, RunReport, build_report, choose_judge

FORMATS: tuple[str, ...] = ("table", "md", "latex", "csv", "json", "html")


def render(rep: Report, fmt: str, *, color: bool = False, thumbnails: bool = True) -> str:
    """The report as text in ``fmt`` (one of :data:`FORMATS`)."""
    if fmt == "table":
        from vscbench.report.tables import render_table

        return render_table(rep, color=color)
    if fmt == "md":
        from vscbench.report.tables import render_markdown

        return render_markdown(rep)
    if fmt == "latex":
        from vscbench.report.tables import render_latex

        return render_latex(rep)
    if fmt == "csv":
        from vscbench.report.longform import render_csv

        return render_csv(rep)
    if fmt == "json":
        from vscbench.report.longform import render_json

        return render_json(rep)
    if fmt == "html":
        from vscbench.report.html import render_html

        return render_html(rep, thumbnails=thumbnails)
    raise ValueError(f"unknown report format {fmt!r} (one of {', '.join(FORMATS)})")


def write_report(rep: Report, fmt: str, out: str | Path, *, thumbnails: bool = True) -> list[Path]:
    """Render and write ``out``; for CSV with paired comparisons also ``<stem>.comparisons.csv`` beside it."""
    path = Path(out)
    written = [_write(path, render(rep, fmt, thumbnails=thumbnails))]
    if fmt == "csv" and rep.comparisons:
        from vscbench.report.longform import render_comparisons_csv

        written.append(_write(path.with_name(path.stem + ".comparisons.csv"), render_comparisons_csv(rep)))
    return written


def _write(path: Path, text: str) -> Path:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    except OSError as exc:
        raise VscbenchError(f"{path}: cannot write the report ({exc.strerror})") from exc
    return path


__all__ = ["FORMATS", "Report", "RunReport", "build_report", "choose_judge", "render", "write_report"]
