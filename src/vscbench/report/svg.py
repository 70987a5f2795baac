"""Inline SVG charts for the HTML report: the calibration plane and grouped bars. Pure string building.

Every text that reaches the SVG goes through :func:`html.escape`; numbers are formatted by this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

#: Colour per run, in run order (colour-blind-safe Okabe–Ito first, then extra tones).
PALETTE: tuple[str, ...] = (
    "#0072B2",
    "#D55E00",
    "#009E73",
    "#CC79A7",
    "#E69F00",
    "#56B4E9",
    "#000000",
    "#8C564B",
    "#7F7F7F",
    "#BCBD22",
)


def color(k: int) -> str:
    return PALETTE[k % len(PALETTE)]


def _f(x: float) -> str:
    return f"{x:.1f}"


@dataclass(frozen=True)
class PlanePoint:
    """One run on the calibration plane: x = SRA_s, y = SRA_u (fractions), optional interval whiskers."""

    label: str
    x: float
    y: float
    color: str
    x_lo: float | None = None
    x_hi: float | None = None
    y_lo: float | None = None
    y_hi: float | None = None


def calibration_plane(points: Sequence[PlanePoint], *, size: int = 440, title: str = "Calibration plane") -> str:
    """x = SRA_s (helps with the safe), y = SRA_u (declines the unsafe); the ideal model sits at (1, 1)."""
    m_left, m_bottom, m_top, m_right = 56, 48, 30, 20
    w = h = size
    pw, ph = w - m_left - m_right, h - m_top - m_bottom

    def px(x: float) -> float:
        return m_left + max(0.0, min(1.0, x)) * pw

    def py(y: float) -> float:
        return m_top + (1.0 - max(0.0, min(1.0, y))) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart plane" viewBox="0 0 {w} {h}" width="{w}" height="{h}"'
        f' role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect x="{m_left}" y="{m_top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
    ]
    for k in range(0, 11, 2):
        v = k / 10
        out.append(f'<line x1="{_f(px(v))}" y1="{m_top}" x2="{_f(px(v))}" y2="{m_top + ph}" stroke="#e3e3e3"/>')
        out.append(f'<line x1="{m_left}" y1="{_f(py(v))}" x2="{m_left + pw}" y2="{_f(py(v))}" stroke="#e3e3e3"/>')
        out.append(
            f'<text x="{_f(px(v))}" y="{m_top + ph + 16}" text-anchor="middle" class="tick">{k * 10}</text>'
        )
        out.append(f'<text x="{m_left - 6}" y="{_f(py(v) + 4)}" text-anchor="end" class="tick">{k * 10}</text>')
    out.append(
        f'<text x="{m_left + pw / 2:.1f}" y="{h - 8}" text-anchor="middle" class="axis">'
        "SRA_s (%): helps with safe items →</text>"
    )
    out.append(
        f'<text transform="translate(14 {m_top + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis">'
        "SRA_u (%): declines unsafe items →</text>"
    )
    out.append(f'<text x="{_f(px(0.02))}" y="{_f(py(0.97))}" class="hint">over-safe</text>')
    out.append(f'<text x="{_f(px(0.98))}" y="{_f(py(0.03))}" text-anchor="end" class="hint">under-safe</text>')
    # the ideal corner
    cx, cy = px(1.0), py(1.0)
    out.append(
        f'<path d="M{_f(cx)} {_f(cy - 9)} L{_f(cx + 3)} {_f(cy - 3)} L{_f(cx + 9)} {_f(cy - 3)} '
        f'L{_f(cx + 4)} {_f(cy + 2)} L{_f(cx + 6)} {_f(cy + 9)} L{_f(cx)} {_f(cy + 5)} L{_f(cx - 6)} {_f(cy + 9)} '
        f'L{_f(cx - 4)} {_f(cy + 2)} L{_f(cx - 9)} {_f(cy - 3)} L{_f(cx - 3)} {_f(cy - 3)} Z" fill="#f2b600" '
        'stroke="#8a6a00"><title>ideal (100, 100)</title></path>'
    )
    out.append(f'<text x="{_f(cx - 12)}" y="{_f(cy + 20)}" text-anchor="end" class="hint">ideal (100, 100)</text>')
    for p in points:
        x, y = px(p.x), py(p.y)
        out.append(f'<g class="pt"><title>{escape(p.label)}: SRA_s {100 * p.x:.1f}, SRA_u {100 * p.y:.1f}</title>')
        if p.x_lo is not None and p.x_hi is not None:
            a, b = px(p.x_lo), px(p.x_hi)
            out.append(f'<line x1="{_f(a)}" y1="{_f(y)}" x2="{_f(b)}" y2="{_f(y)}" stroke="{p.color}" stroke-width="1.5"/>')
            for e in (a, b):
                out.append(f'<line x1="{_f(e)}" y1="{_f(y - 4)}" x2="{_f(e)}" y2="{_f(y + 4)}" stroke="{p.color}"/>')
        if p.y_lo is not None and p.y_hi is not None:
            a, b = py(p.y_lo), py(p.y_hi)
            out.append(f'<line x1="{_f(x)}" y1="{_f(a)}" x2="{_f(x)}" y2="{_f(b)}" stroke="{p.color}" stroke-width="1.5"/>')
            for e in (a, b):
                out.append(f'<line x1="{_f(x - 4)}" y1="{_f(e)}" x2="{_f(x + 4)}" y2="{_f(e)}" stroke="{p.color}"/>')
        out.append(f'<circle cx="{_f(x)}" cy="{_f(y)}" r="5.5" fill="{p.color}" stroke="#fff" stroke-width="1.5"/>')
        # labels of points in the right half go to the left of the point so they stay inside the plot
        lx, anchor = (x - 8, "end") if x > px(0.5) else (x + 8, "start")
        out.append(
            f'<text x="{_f(lx)}" y="{_f(y - 8)}" text-anchor="{anchor}" class="ptlabel" '
            f'fill="{p.color}">{escape(p.label)}</text>'
        )
        out.append("</g>")
    out.append("</svg>")
    return "\n".join(out)


@dataclass(frozen=True)
class Series:
    """One bar per category for one run; values are fractions or ``None`` (no scored item: an ``n/a`` mark)."""

    name: str
    color: str
    values: Sequence[float | None]
    lo: Sequence[float | None] | None = None
    hi: Sequence[float | None] | None = None


def bar_chart(title: str, categories: Sequence[str], series: Sequence[Series], *, width: int = 760) -> str:
    """Grouped vertical bars (0–100 %), one group per category, one bar per series, with interval ticks.

    A missing value (``None``: no scored item) is drawn as a grey ``n/a`` mark (class ``na``) and a rate of
    exactly 0 as a thin visible bar with a ``0`` above it (class ``zero``), so the two never look alike.
    """
    m_left, m_bottom, m_top, m_right = 44, 58, 30, 10
    h = 260
    pw, ph = width - m_left - m_right, h - m_top - m_bottom
    n_cat, n_ser = max(1, len(categories)), max(1, len(series))
    gw = pw / n_cat
    bw = min(28.0, (gw * 0.8) / n_ser)

    def py(v: float) -> float:
        return m_top + (1.0 - max(0.0, min(1.0, v))) * ph

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart bars" viewBox="0 0 {width} {h}" width="{width}"'
        f' height="{h}" role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<text x="{m_left}" y="16" class="ctitle">{escape(title)}</text>',
    ]
    for k in range(0, 11, 2):
        out.append(f'<line x1="{m_left}" y1="{_f(py(k / 10))}" x2="{m_left + pw}" y2="{_f(py(k / 10))}" stroke="#e6e6e6"/>')
        out.append(f'<text x="{m_left - 5}" y="{_f(py(k / 10) + 4)}" text-anchor="end" class="tick">{k * 10}</text>')
    for ci, cat in enumerate(categories):
        x0 = m_left + ci * gw + (gw - bw * n_ser) / 2
        for si, s in enumerate(series):
            v = s.values[ci] if ci < len(s.values) else None
            x = x0 + si * bw
            if v is None:
                out.append(
                    f'<text x="{_f(x + bw / 2)}" y="{_f(py(0) - 4)}" text-anchor="middle" class="na">n/a'
                    f"<title>{escape(s.name)} · {escape(cat)}: no scored item</title></text>"
                )
                continue
            if v <= 0.0:
                out.append(
                    f'<g class="zero"><rect x="{_f(x + 1)}" y="{_f(py(0) - 2)}" width="{_f(max(1.0, bw - 2))}"'
                    f' height="2" fill="{s.color}"/><text x="{_f(x + bw / 2)}" y="{_f(py(0) - 5)}"'
                    f' text-anchor="middle" class="tick">0</text>'
                    f"<title>{escape(s.name)} · {escape(cat)}: 0.0</title></g>"
                )
            else:
                out.append(
                    f'<rect x="{_f(x + 1)}" y="{_f(py(v))}" width="{_f(max(1.0, bw - 2))}"'
                    f' height="{_f(py(0) - py(v))}" fill="{s.color}">'
                    f"<title>{escape(s.name)} · {escape(cat)}: {100 * v:.1f}</title></rect>"
                )
            lo = s.lo[ci] if s.lo is not None and ci < len(s.lo) else None
            hi = s.hi[ci] if s.hi is not None and ci < len(s.hi) else None
            if lo is not None and hi is not None:
                xm = x + bw / 2
                out.append(f'<line x1="{_f(xm)}" y1="{_f(py(lo))}" x2="{_f(xm)}" y2="{_f(py(hi))}" stroke="#333"/>')
        out.append(
            f'<text x="{_f(m_left + ci * gw + gw / 2)}" y="{h - m_bottom + 16}" text-anchor="middle" class="tick">'
            f"{escape(cat)}</text>"
        )
    # legend
    lx = m_left
    for s in series:
        out.append(f'<rect x="{_f(lx)}" y="{h - 22}" width="10" height="10" fill="{s.color}"/>')
        out.append(f'<text x="{_f(lx + 14)}" y="{h - 13}" class="tick">{escape(s.name)}</text>')
        lx += 24 + 7 * min(len(s.name), 40)
    out.append(f'<line x1="{m_left}" y1="{_f(py(0))}" x2="{m_left + pw}" y2="{_f(py(0))}" stroke="#666"/>')
    out.append("</svg>")
    return "\n".join(out)
