"""The one-file HTML report: leaderboard, calibration plane, bars, paired comparisons and an item browser.

Invariants:

* Self-contained: CSS and JS inline, no fonts, no network; images are small JPEG thumbnails inlined as
  ``data:`` URLs. A Content-Security-Policy meta tag forbids every fetch (``default-src 'none'``), allows
  images only from ``data:``, inline styles, and only the report's own script (by nonce).
* Model output and item text are untrusted: server-side text goes through :func:`html.escape`; the item
  browser's data is a JSON block in ``<script type="application/json">`` with ``<``, ``>``, ``&``, U+2028
  and U+2029 written as ``\\uXXXX`` escapes, and the page script builds the DOM with ``textContent`` only.
* Deterministic: the same report data gives the same bytes (the nonce is a hash of the content).
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
from collections.abc import Sequence
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from vscbench import __version__
from vscbench.metrics import MetricValue, is_correct
from vscbench.report.build import Report, reasons_text
from vscbench.report.svg import PlanePoint, Series, bar_chart, calibration_plane, color
from vscbench.report.tables import (
    BASELINE_OUT,
    CATEGORY_TITLES,
    COMPARISON_GROUPS,
    COMPARISON_HEADERS,
    SETTING_TITLES,
    SUMMARY_TITLE,
    _comparison_rows,
    bench_coverage,
    notes,
    pct,
    scored_text,
)
from vscbench.types import CATEGORIES, TEXT_IMAGE_SETTINGS

#: Longest response text put into the browser; longer ones are cut with a visible marker.
MAX_RESPONSE_CHARS = 4000
THUMB_PX = 96


def _asset(name: str) -> str:
    return resources.files("vscbench.report").joinpath("assets", name).read_text(encoding="utf-8")


def json_for_script(obj: Any) -> str:
    """JSON safe to place inside a ``<script type="application/json">`` element."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return (
        s.replace("&", "\\u0026")
        .replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def thumbnail_data_url(path: str | Path, px: int = THUMB_PX) -> str | None:
    """A small JPEG thumbnail as a ``data:image/jpeg;base64`` URL, or ``None`` if the file can't be read."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if im.format == "JPEG":
                im.draft("RGB", (px * 2, px * 2))
            rgb = im.convert("RGB")
            rgb.thumbnail((px, px))
            buf = io.BytesIO()
            rgb.save(buf, format="JPEG", quality=70, optimize=True)
    except (OSError, UnidentifiedImageError, ValueError, Image.DecompressionBombError):
        return None
    return "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _truncate(text: str) -> str:
    if len(text) <= MAX_RESPONSE_CHARS:
        return text
    return text[:MAX_RESPONSE_CHARS] + f"\n… [cut: {len(text):,} characters in all]"


def browser_data(rep: Report, *, thumbnails: bool = True, thumb_px: int = THUMB_PX) -> dict[str, Any]:
    """The item browser's data: one entry per (run, item), images deduplicated by path."""
    images: dict[str, str] = {}
    key_of: dict[str, str | None] = {}
    items: list[dict[str, Any]] = []
    for ri, run in enumerate(rep.runs):
        for it in run.items:
            img_key: str | None = None
            if thumbnails and it.image:
                if it.image not in key_of:
                    url = thumbnail_data_url(it.image, thumb_px)
                    if url is None:
                        key_of[it.image] = None
                    else:
                        k = f"i{len(images)}"
                        images[k] = url
                        key_of[it.image] = k
                img_key = key_of[it.image]
            v = run.verdicts[it.id]
            ok = is_correct(it, v)
            resp = run.responses.get(it.id)
            labs = {j: run.labels[j][it.id].value for j in run.judges if it.id in run.labels[j]}
            items.append(
                {
                    "r": ri,
                    "id": it.id,
                    "half": it.half,
                    "label": it.label,
                    "setting": it.setting,
                    "grp": it.group,
                    "q": it.query,
                    "resp": _truncate(resp.text) if resp else "",
                    "st": resp.status.value if resp else ("not sent" if v.reason == "not_sent" else "missing"),
                    "err": (resp.error or "")[:300] if resp else "",
                    "lab": labs,
                    "v": "excluded" if ok is None else ("right" if ok else "wrong"),
                    "why": v.reason,
                    "img": img_key,
                    "dis": len(set(labs.values())) > 1,
                }
            )
    return {
        "runs": [{"id": r.run_id, "judge": r.judge} for r in rep.runs],
        "images": images,
        "items": items,
    }


def _cell(m: MetricValue | None, ci: bool) -> str:
    if m is None or m.value is None:
        return '<td class="num">–</td>'
    s = pct(m.value)
    if ci and m.ci_low is not None and m.ci_high is not None:
        s += f' <span class="sub">[{pct(m.ci_low)}, {pct(m.ci_high)}]</span>'
    return f'<td class="num">{s}</td>'


def _leaderboard(rep: Report) -> str:
    def overall(k: int) -> float:
        v = rep.runs[k].value("benchmark", "overall")
        return -1.0 if v is None else v

    order = sorted(range(len(rep.runs)), key=lambda k: -overall(k))
    head = ["#", "Run", "Model", "Judge", "Overall", "SRA_s", "SRA_u", "helpful_s", "Pair acc.", "Consistency", "Scored", "Blocked"]
    rows = []
    for rank, k in enumerate(order, 1):
        r = rep.runs[k]
        rows.append(
            "<tr>"
            f'<td class="num">{rank}</td>'
            f'<td><span class="swatch" style="background:{color(k)}"></span>{escape(r.run_id)}</td>'
            f"<td>{escape(r.model)}</td><td>{escape(r.judge)}</td>"
            + _cell(r.metric("benchmark", "overall"), rep.ci)
            + _cell(r.metric("benchmark", "SRA_s"), rep.ci)
            + _cell(r.metric("benchmark", "SRA_u"), rep.ci)
            + _cell(r.metric("benchmark", "helpful_s"), rep.ci)
            + _cell(r.metric("half=image", "pair_acc"), rep.ci)
            + _cell(r.metric("half=text", "consistency"), rep.ci)
            + f'<td class="num" title="excluded: {escape(reasons_text(bench_coverage(r)))}">'
            f"{scored_text(bench_coverage(r))}</td>"
            + f'<td class="num">{bench_coverage(r).blocked}</td>'
            "</tr>"
        )
    return (
        '<div class="scroll"><table class="leaderboard" id="leaderboard"><thead><tr>'
        + "".join(f"<th>{escape(h)}</th>" for h in head)
        + "</tr></thead><tbody>"
        + "".join(rows)
        + "</tbody></table></div>"
    )


def _plane(rep: Report) -> str:
    pts = []
    for k, r in enumerate(rep.runs):
        s, u = r.metric("benchmark", "SRA_s"), r.metric("benchmark", "SRA_u")
        if s is None or u is None or s.value is None or u.value is None:
            continue
        pts.append(PlanePoint(r.run_id, s.value, u.value, color(k), s.ci_low, s.ci_high, u.ci_low, u.ci_high))
    title = "Calibration plane (benchmark items" + (", 95% intervals)" if rep.ci else ")")
    return calibration_plane(pts, title=title)


def _bars(rep: Report, title: str, groups: Sequence[tuple[str, str]], metric: str) -> str:
    series = []
    for k, r in enumerate(rep.runs):
        ms = [r.metric(g, metric) for g, _ in groups]
        series.append(
            Series(
                r.run_id,
                color(k),
                [m.value if m else None for m in ms],
                [m.ci_low if m else None for m in ms] if rep.ci else None,
                [m.ci_high if m else None for m in ms] if rep.ci else None,
            )
        )
    return bar_chart(title, [t for _, t in groups], series)


def _has_items(rep: Report, half: str) -> bool:
    return any(i.half == half for r in rep.runs for i in r.items)


def _comparisons(rep: Report) -> str:
    rows = _comparison_rows(rep, COMPARISON_GROUPS, "–")
    if not rows:
        return ""
    head = "".join(f"<th>{escape(h)}</th>" for h in COMPARISON_HEADERS)
    body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return (
        "<h2>Paired comparison</h2>"
        '<p class="sub">Each run against the first, on the items both scored; Δ = B − A in points; discordant '
        f"items A✓B✗ / B✓A✗ and the exact McNemar p-value; {BASELINE_OUT}.</p>"
        f'<table id="comparisons"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def _tradeoff(rep: Report) -> str:
    if not rep.tradeoff:
        return ""
    from vscbench.report import tradeoff

    return (
        "<h2>Safety–utility trade-off</h2>"
        f'<p class="sub">Benchmark items; {BASELINE_OUT}.</p>' + str(tradeoff.tradeoff_html(rep.tradeoff))
    )


def _browser() -> str:
    return """
<h2>Items</h2>
<div class="filters" id="filters">
 <label>Run <select id="f-run"></select></label>
 <label>Outcome <select id="f-verdict">
  <option value="">all</option><option value="wrong">wrong answers</option>
  <option value="right">right answers</option><option value="excluded">excluded</option></select></label>
 <label><input type="checkbox" id="f-dis"> judge disagreements</label>
 <label>Category / type <select id="f-group"></select></label>
 <label>Setting <select id="f-setting"></select></label>
 <label>Label <select id="f-label"><option value="">all</option><option value="safe">safe</option>
  <option value="unsafe">unsafe</option></select></label>
 <label>Search <input type="search" id="f-text" size="18"></label>
 <span id="f-count"></span>
</div>
<table class="items"><colgroup><col class="c-thumb"><col class="c-meta"><col><col class="c-labels"></colgroup>
<thead><tr><th>Image</th><th>Item</th><th>Query and response</th><th>Verdict and labels</th></tr></thead>
<tbody id="items-body"></tbody></table>
<button id="more" type="button" hidden>Show more</button>
"""


def render_html(
    rep: Report, *, thumbnails: bool = True, thumb_px: int = THUMB_PX, heading: str = "VSCBench report", top: str = ""
) -> str:
    """The one-file report; ``top`` is an HTML fragment (already escaped: e.g. a suite session's gate section,
    :mod:`vscbench.report.session`) placed under the heading, before everything else."""
    data_json = json_for_script(browser_data(rep, thumbnails=thumbnails, thumb_px=thumb_px))
    js = _asset("report.js")
    css = _asset("report.css")
    body: list[str] = []
    banners = [(r.run_id, r.banner) for r in rep.runs if r.banner]
    for rid, b in banners:
        body.append(f'<div class="banner" role="alert">{escape(rid)}: {escape(str(b))}</div>')
    runs_txt = ", ".join(r.run_id for r in rep.runs)
    body.append(
        f"<header><h1>{escape(heading)}</h1>"
        f'<div class="sub">runs: {escape(runs_txt)} · generated by vscbench {escape(__version__)}</div></header>'
    )
    if top:
        body.append(top)
    body.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in notes(rep)) + "</ul>")
    body.append(
        "<h2>Leaderboard</h2>"
        f'<p class="sub">{escape(SUMMARY_TITLE.capitalize())} (the baseline is the "Text only" bar below); '
        "Scored = benchmark items scored / benchmark items, the population of every rate in the row.</p>"
        + _leaderboard(rep)
    )
    charts = [_plane(rep)]
    body.append("<h2>Calibration</h2>")
    body.append(
        '<p class="sub">x = SRA_s (share of safe items answered, not refused), y = SRA_u (share of unsafe '
        "items refused or warned about). A calibrated model sits near the top-right corner.</p>"
    )
    body.append('<div class="charts">' + "".join(charts) + "</div>")
    body.append("<h2>By category and setting</h2>")
    # each half's two charts share one row of a grid (two equal columns when wide, one when narrow);
    # a half without items is a note outside the grid, so it never takes a chart's place
    for half, title in (("image", "image-half"), ("text", "text-half")):
        if not _has_items(rep, half):
            body.append(f'<p class="sub">No {title} items in these runs.</p>')
            continue
        if half == "image":
            cats = [(f"category={c}", CATEGORY_TITLES[c]) for c in CATEGORIES]
            pair = [
                _bars(rep, "Image half: SRA_s by category (%)", cats, "SRA_s"),
                _bars(rep, "Image half: SRA_u by category (%)", cats, "SRA_u"),
            ]
        else:
            sets = [(f"setting={s}", SETTING_TITLES[s]) for s in (*TEXT_IMAGE_SETTINGS, "text")]
            pair = [
                _bars(rep, "Text half: SRA_s by setting (%; Text only = the baseline)", sets, "SRA_s"),
                _bars(rep, "Text half: SRA_u by setting (%; Text only = the baseline)", sets, "SRA_u"),
            ]
        body.append(f'<div class="bars" id="bars-{half}">' + "".join(pair) + "</div>")
    body.append(_comparisons(rep))
    body.append(_tradeoff(rep))
    body.append(_browser())
    body.append(
        "<footer>Self-contained report: no network access; model output is shown as text and never run.</footer>"
    )
    nonce = hashlib.sha256((data_json + js + "".join(body)).encode("utf-8")).hexdigest()[:32]
    csp = (
        "default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'nonce-{nonce}'; base-uri 'none'; form-action 'none'"
    )
    title = f"{heading}: {runs_txt}"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\n"
        f'<meta http-equiv="Content-Security-Policy" content="{escape(csp, quote=False)}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{escape(title)}</title>\n<style>\n{css}\n</style></head>\n<body>\n"
        + "\n".join(b for b in body if b)
        + f'\n<script type="application/json" id="vsc-data">{data_json}</script>\n'
        f'<script nonce="{nonce}">\n{js}\n</script>\n</body></html>\n'
    )
