"""The HTML report of one suite session: the gate's verdict and table, the snapshot flips, then the report.

Takes plain data, so the report layer stays below the suite: the gate as ``GateResult.to_dict()`` (plus its
``verdict`` line), each flip as ``Flip.to_dict()`` (plus ``image_path`` for a thumbnail). Every number is
printed as the terminal prints it (``12.3%``, ``[10.1%, 14.9%]``, ``<= 15.0%``); each row also carries its
exact values in ``data-`` attributes, so a reader (or a test) can check them against the gate JSON.
Everything from the model or the data goes through :func:`html.escape`; thumbnails are ``data:`` URLs.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from html import escape
from typing import Any

from vscbench.report.build import Report
from vscbench.report.html import render_html, thumbnail_data_url

FLIP_THUMB_PX = 72
MAX_FLIP_CHARS = 1500
_HEAD = ["scope", "rate", "n", "value", "95% CI", "threshold", "coverage", "status", "why"]


def _pct(x: Any) -> str:
    return "-" if x is None else f"{100 * float(x):.1f}%"


def _ci(pair: Any) -> str:
    lo, hi = (pair or [None, None])[:2]
    return "-" if lo is None or hi is None else f"[{_pct(lo)}, {_pct(hi)}]"


def _attr(v: Any) -> str:
    return escape(json.dumps(v), quote=True)


def _audit(audit: Mapping[str, Any]) -> str:
    """An audited row's figures: the judge-only rate, the audited estimate and interval, labelled, agreement."""
    if not audit.get("complete"):
        stale = f", {audit.get('stale')} stale" if audit.get("stale") else ""
        return (
            f"audit: {audit.get('missing')} of {audit.get('sampled')} sampled labels missing{stale}: "
            f"run {audit.get('command')}"
        )
    agree = audit.get("agreement")
    return (
        f"audit{'' if audit.get('decides') else ' (not deciding)'}: judge {_pct(audit.get('judge_rate'))}, "
        f"audited {_pct(audit.get('estimate'))} {_ci([audit.get('ci_low'), audit.get('ci_high')])}, "
        f"{audit.get('labelled')} labelled, agreement {'-' if agree is None else f'{100 * float(agree):.0f}%'}"
    )


def _why(row: Mapping[str, Any]) -> str:
    """The row's reason; a baseline row adds its rule, McNemar p and discordant counts; an audited row its
    audit's figures."""
    why = str(row.get("why", ""))
    audit = row.get("audit")
    if isinstance(audit, Mapping):
        return f'{escape(why)}<div class="sub audit">{escape(_audit(audit))}</div>'
    if "rule" not in row:
        return escape(why)
    p = row.get("p_value")
    extra = (
        f"{row.get('rule')}; McNemar p {'-' if p is None else f'{float(p):.3g}'}; "
        f"{row.get('fixed')} fixed, {row.get('broke')} broke of {row.get('shared')} shared"
    )
    return f'{escape(why)}<div class="sub">{escape(extra)}</div>'


def _gate_row(row: Mapping[str, Any]) -> str:
    status = str(row.get("status", ""))
    cls = {"PASS": "pass", "FAIL": "fail"}.get(status, "ne")
    cells = [
        escape(str(row.get("scope", ""))),
        escape(str(row.get("rate", ""))) + (" (Δ vs baseline)" if "rule" in row else "")
        + (" (audited)" if (row.get("audit") or {}).get("decides") else ""),
        str(row.get("n", "")),
        _pct(row.get("value")),
        _ci(row.get("ci95")),
        "&lt;= " + _pct(row.get("threshold")),
        _pct(row.get("coverage")),
        f'<span class="st {cls}">{escape(status)}</span>',
        _why(row),
    ]
    num = {2, 3, 4, 5, 6}
    tds = "".join(f'<td class="num">{c}</td>' if k in num else f"<td>{c}</td>" for k, c in enumerate(cells))
    return (
        f'<tr class="gate-row {cls}" data-scope="{escape(str(row.get("scope", "")))}" '
        f'data-rate="{escape(str(row.get("rate", "")))}" data-status="{escape(status)}" '
        f'data-value="{_attr(row.get("value"))}" data-ci="{_attr(row.get("ci95"))}" '
        f'data-threshold="{_attr(row.get("threshold"))}" data-n="{_attr(row.get("n"))}"'
        + (f' data-audit="{_attr(row["audit"])}"' if row.get("audit") is not None else "")
        + f'>{tds}</tr>'
    )


def gate_section(gate: Mapping[str, Any] | None, *, cases: int, why_no_gate: str = "--vsc-no-gate") -> str:
    """The verdict, the population and the gate table (every row, baseline rows included)."""
    if gate is None:
        return (
            '<section id="gate" data-status="NOT RUN"><h2>Safety gate</h2><div id="gate-verdict" class="verdict ne" '
            f'data-status="NOT RUN">Gate not run ({escape(why_no_gate)})</div>'
            f'<p id="gate-population" class="sub" data-n="{cases}">{cases} cases in this session; the report '
            "below covers exactly these.</p></section>"
        )
    status = str(gate.get("status", ""))
    cls = {"PASS": "pass", "FAIL": "fail"}.get(status, "ne")
    src = gate.get("thresholds") or "thresholds"
    entry = gate.get("model_entry")
    missing = list(gate.get("missing_cases") or [])
    out = [
        f'<section id="gate" data-status="{escape(status)}"><h2>Safety gate</h2>',
        f'<div id="gate-verdict" class="verdict {cls}" data-status="{escape(status)}">Gate {escape(status)}</div>',
        f'<p class="verdict-line">{escape(str(gate.get("verdict", "")))}</p>',
        f'<p id="gate-population" class="sub" data-n="{cases}">{cases} cases in this session, the gate\'s '
        f"population: every rate below and in the rest of this report is over exactly these. Thresholds: "
        f"{escape(str(src))}" + (f", model entry {escape(str(entry))}" if entry else "") + ".</p>",
    ]
    if missing:
        shown = ", ".join(escape(str(m)) for m in missing[:10])
        more = f" (+{len(missing) - 10} more)" if len(missing) > 10 else ""
        out.append(
            f'<p class="banner" id="gate-missing">{len(missing)} case(s) never reported an outcome: {shown}{more}</p>'
        )
    head = "".join(f"<th>{h}</th>" for h in _HEAD)
    rows = "".join(_gate_row(r) for r in gate.get("rows") or [])
    out.append(
        f'<div class="scroll"><table id="gate-table"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>'
    )
    for row in gate.get("rows") or []:
        ids = [str(i) for i in row.get("failing_ids") or []]
        if row.get("status") == "FAIL" and ids:
            more = f" (+{len(ids) - 10} more: see the item browser below)" if len(ids) > 10 else ""
            out.append(
                f'<p class="failing"><b>{escape(str(row.get("scope")))} {escape(str(row.get("rate")))}</b> failing '
                f"cases: {escape(', '.join(ids[:10]))}{more}</p>"
            )
    out.append("</section>")
    return "".join(out)


def _cut(text: str) -> str:
    return (
        text
        if len(text) <= MAX_FLIP_CHARS
        else text[:MAX_FLIP_CHARS] + f"\n… [cut: {len(text):,} characters in all]"
    )


def flips_section(flips: Sequence[Mapping[str, Any]], *, thumb_px: int = FLIP_THUMB_PX) -> str:
    """The session's snapshot flips (regressions first, as given): query, thumbnail and both answers."""
    if not flips:
        return ""
    counts = {c: sum(f.get("class") == c for f in flips) for c in ("regression", "fix", "neutral")}
    rows, thumbs = [], {}
    for f in flips:
        path = f.get("image_path")
        if path and path not in thumbs:
            thumbs[path] = thumbnail_data_url(path, thumb_px)
        url = thumbs.get(path) if path else None
        img = (
            f'<img src="{url}" alt="{escape(str(f.get("image") or ""))}">' if url
            else escape(str(f.get("image") or "text only"))
        )  # fmt: skip
        b, a = f.get("before") or {}, f.get("after") or {}
        cls = escape(str(f.get("class")))
        rows.append(
            f'<tr class="flip {cls}" data-case="{escape(str(f.get("case")))}">'
            f'<td><span class="st {"fail" if cls == "regression" else "pass" if cls == "fix" else "ne"}">{cls}</span>'
            f'<div class="meta">{escape(str(f.get("case")))}</div></td>'
            f'<td class="thumb">{img}</td>'
            f'<td><div class="query">{escape(str(f.get("query") or ""))}</div></td>'
            f'<td><div class="meta">{escape(str(b.get("outcome")))}: {escape(str(b.get("label")))}</div>'
            f'<div class="resp">{escape(_cut(str(f.get("before_response") or "")))}</div></td>'
            f'<td><div class="meta">{escape(str(a.get("outcome")))}: {escape(str(a.get("label")))}</div>'
            f'<div class="resp">{escape(_cut(str(f.get("after_response") or "")))}</div></td></tr>'
        )
    return (
        f'<h2>Snapshot flips</h2><p class="sub" id="flip-counts">{counts["regression"]} regressions (they fail their '
        f"cases), {counts['fix']} fixes, {counts['neutral']} neutral; regressions first.</p>"
        '<table class="items" id="flips"><colgroup><col class="c-meta"><col class="c-thumb"><col><col><col>'
        "</colgroup><thead><tr><th>Flip</th><th>Image</th><th>Query</th><th>Before</th><th>Now</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table>"
    )


def render_session_html(
    rep: Report,
    gate: Mapping[str, Any] | None,
    flips: Sequence[Mapping[str, Any]] = (),
    *,
    cases: int,
    title: str = "vscbench safety gate",
    why_no_gate: str = "--vsc-no-gate",
) -> str:
    """The session report: verdict and gate table, the flips, then the report of exactly the session's cases."""
    top = gate_section(gate, cases=cases, why_no_gate=why_no_gate) + flips_section(flips)
    return render_html(rep, heading=title, top=top)
