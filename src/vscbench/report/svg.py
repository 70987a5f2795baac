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


#: A box on the chart: (left, top, right, bottom) in SVG user units.
Box = tuple[float, float, float, float]
#: Longest point label drawn (characters); the full run id stays in the point's tooltip.
MAX_LABEL_CHARS = 22


def text_box(x: float, baseline: float, text: str, size: float, anchor: str = "start", bold: bool = False) -> Box:
    """A generous estimate of the box a line of text takes (sans-serif: about 0.62 em per character, 0.75
    for bold), so that boxes that do not overlap here do not overlap on screen either."""
    w = len(text) * size * (0.75 if bold else 0.62)
    left = x if anchor == "start" else (x - w if anchor == "end" else x - w / 2)
    return (left, baseline - size * 0.95, left + w, baseline + size * 0.3)


#: Clear space kept between two boxes on the chart.
GAP = 3.0


def _overlap(a: Box, b: Box, gap: float = GAP) -> float:
    """Area where ``a``, grown by ``gap`` on every side, covers ``b`` (0 when they keep ``gap`` apart)."""
    w = min(a[2] + gap, b[2]) - max(a[0] - gap, b[0])
    h = min(a[3] + gap, b[3]) - max(a[1] - gap, b[1])
    return w * h if w > 0 and h > 0 else 0.0


def _outside(a: Box, frame: Box) -> float:
    """How far ``a`` sticks out of ``frame`` (0 when inside)."""
    return max(0.0, frame[0] - a[0]) + max(0.0, a[2] - frame[2]) + max(0.0, frame[1] - a[1]) + max(0.0, a[3] - frame[3])


def short_label(label: str, limit: int = MAX_LABEL_CHARS) -> str:
    return label if len(label) <= limit else label[: limit - 1] + "…"


def place_labels(
    anchors: Sequence[tuple[float, float]], texts: Sequence[str], frame: Box, obstacles: Sequence[Box],
    *, size: float = 12.0, soft: Sequence[Box] = (),
) -> list[tuple[float, float, str, Box]]:
    """Greedy label placement: for each point, the first spot around it (near ones first, then farther) whose
    box stays inside ``frame`` and overlaps no obstacle, no point and no label already placed; when none is
    free, the spot with the least overlap. ``soft`` boxes (interval whiskers) cost a tenth as much: a label
    may cross a thin line (it has a white halo) when nothing better is free. Returns (x, baseline,
    text-anchor, box) per label."""
    marks = [(x - 7.0, y - 7.0, x + 7.0, y + 7.0) for x, y in anchors]
    placed: list[Box] = []
    out: list[tuple[float, float, str, Box]] = []
    for k, ((x, y), text) in enumerate(zip(anchors, texts, strict=True)):
        best: tuple[float, tuple[float, float, str, Box]] | None = None
        for d in (9.0, 18.0, 30.0, 46.0, 66.0, 90.0, 120.0):
            e = d * 0.7
            spots = (
                (x + d, y + 4, "start"), (x - d, y + 4, "end"),
                (x + e, y - e, "start"), (x - e, y - e, "end"),
                (x + e, y + e + 9, "start"), (x - e, y + e + 9, "end"),
                (x, y - d, "middle"), (x, y + d + 9, "middle"),
            )  # fmt: skip
            for lx, ly, anchor in spots:
                box = text_box(lx, ly, text, size, anchor, bold=True)
                cost = 1000.0 * _outside(box, frame)
                cost += 10.0 * sum(_overlap(box, o) for o in (*obstacles, *placed))
                cost += 10.0 * sum(_overlap(box, m) for j, m in enumerate(marks) if j != k)
                cost += 0.1 * sum(_overlap(box, b, 0.0) for b in soft)
                cost += 0.01 * d  # nearer is better among equals
                if best is None or cost < best[0]:
                    best = (cost, (lx, ly, anchor, box))
            if best is not None and best[0] < 1.0:
                break
        assert best is not None
        out.append(best[1])
        placed.append(best[1][3])
    return out


def calibration_plane(points: Sequence[PlanePoint], *, size: int = 440, title: str = "Calibration plane") -> str:
    """x = SRA_s (helps with the safe), y = SRA_u (declines the unsafe); the ideal model sits at (1, 1).

    Invariants: every mark (points, whiskers, the ideal star, labels) lies inside the frame, because the
    0–100 range sits ``pad`` units inside it; point labels are placed apart from each other, from the points
    and from the corner hints (:func:`place_labels`); a corner hint that points cover moves along the frame,
    and is left out only when every spot it has is covered."""
    m_left, m_bottom, m_top, m_right = 56, 48, 12, 12
    pad = 16.0
    w = h = size
    pw, ph = w - m_left - m_right, h - m_top - m_bottom
    frame: Box = (m_left, m_top, m_left + pw, m_top + ph)

    def px(x: float) -> float:
        return m_left + pad + max(0.0, min(1.0, x)) * (pw - 2 * pad)

    def py(y: float) -> float:
        return m_top + pad + (1.0 - max(0.0, min(1.0, y))) * (ph - 2 * pad)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart plane" viewBox="0 0 {w} {h}" width="{w}" height="{h}"'
        f' role="img" aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<rect class="frame" x="{m_left}" y="{m_top}" width="{pw}" height="{ph}" fill="#fafafa" stroke="#999"/>',
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
    anchors = [(px(p.x), py(p.y)) for p in points]
    marks = [(x - 7.0, y - 7.0, x + 7.0, y + 7.0) for x, y in anchors]
    # the ideal corner: a star and its label, inside the frame
    cx, cy = px(1.0), py(1.0)
    star: Box = (cx - 10, cy - 10, cx + 10, cy + 10)
    ideal_text = "ideal (100, 100)"
    ideal = (cx - 14, cy + 22, "end")
    ideal_box = text_box(*ideal[:2], ideal_text, 11, "end")
    # corner hints, left out where a point covers them
    # corner hints: in their corner, else moved along the frame away from the points that cover it
    hints: list[tuple[str, str, list[tuple[float, float]]]] = [
        ("over-safe", "start", [(m_left + 6, m_top + 14), (m_left + 6, m_top + 40), (m_left + 60, m_top + 14)]),
        ("under-safe", "end", [(m_left + pw - 6, m_top + ph - 6), (m_left + pw - 6, m_top + ph - 32),
                               (m_left + pw - 60, m_top + ph - 6)]),
    ]  # fmt: skip
    kept: list[tuple[float, float, str, str, Box]] = []
    for text, anchor, where in hints:
        for hx, hy in where:
            box = text_box(hx, hy, text, 11, anchor)
            if not any(_overlap(box, m) for m in marks):
                kept.append((hx, hy, anchor, text, box))
                break
    show_ideal = not any(_overlap(ideal_box, m) for m in marks)
    obstacles = [star, *(k[4] for k in kept), *([ideal_box] if show_ideal else [])]
    for hx, hy, anchor, text, _box in kept:
        out.append(f'<text x="{_f(hx)}" y="{_f(hy)}" text-anchor="{anchor}" class="hint">{text}</text>')
    out.append(
        f'<path class="ideal" d="M{_f(cx)} {_f(cy - 9)} L{_f(cx + 3)} {_f(cy - 3)} L{_f(cx + 9)} {_f(cy - 3)} '
        f'L{_f(cx + 4)} {_f(cy + 2)} L{_f(cx + 6)} {_f(cy + 9)} L{_f(cx)} {_f(cy + 5)} L{_f(cx - 6)} {_f(cy + 9)} '
        f'L{_f(cx - 4)} {_f(cy + 2)} L{_f(cx - 9)} {_f(cy - 3)} L{_f(cx - 3)} {_f(cy - 3)} Z" fill="#f2b600" '
        'stroke="#8a6a00"><title>ideal (100, 100)</title></path>'
    )
    if show_ideal:
        out.append(f'<text x="{_f(ideal[0])}" y="{_f(ideal[1])}" text-anchor="end" class="hint">{ideal_text}</text>')
    texts = [short_label(p.label) for p in points]
    whiskers: list[Box] = []
    for p, (x, y) in zip(points, anchors, strict=True):
        if p.x_lo is not None and p.x_hi is not None:
            whiskers.append((px(p.x_lo), y - 4, px(p.x_hi), y + 4))
        if p.y_lo is not None and p.y_hi is not None:
            whiskers.append((x - 4, py(p.y_hi), x + 4, py(p.y_lo)))
    spots = place_labels(anchors, texts, frame, obstacles, soft=whiskers)
    for p, (x, y), text, (lx, ly, anchor, box) in zip(points, anchors, texts, spots, strict=True):
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
        out.append(
            f'<circle class="mark" cx="{_f(x)}" cy="{_f(y)}" r="5.5" fill="{p.color}" stroke="#fff" stroke-width="1.5"/>'
        )
        # a label set away from its point gets a thin leader line to the nearest edge of its box
        bx = min(max(x, box[0]), box[2])
        by = min(max(y, box[1]), box[3])
        if (bx - x) ** 2 + (by - y) ** 2 > 14.0**2:
            out.append(
                f'<line class="leader" x1="{_f(x)}" y1="{_f(y)}" x2="{_f(bx)}" y2="{_f(by)}" stroke="{p.color}"'
                ' stroke-width="0.8" stroke-dasharray="2 2"/>'
            )
        out.append(
            f'<text x="{_f(lx)}" y="{_f(ly)}" text-anchor="{anchor}" class="ptlabel" '
            f'fill="{p.color}">{escape(text)}</text>'
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
    m_left, m_top, m_right = 44, 30, 10
    # legend entries wrap onto as many rows as they need (8 runs with long ids stay inside the chart)
    legend: list[tuple[float, int, str]] = []  # (x, row, name)
    lx, row = float(m_left), 0
    for s in series:
        name = short_label(s.name, 40)
        step = 24 + 7 * len(name)
        if lx > m_left and lx + step > width - m_right:
            lx, row = float(m_left), row + 1
        legend.append((lx, row, name))
        lx += step
    rows = (legend[-1][1] + 1) if legend else 1
    m_bottom = 40 + 18 * rows
    h = 242 + 18 * rows
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
        values = [s.values[ci] if ci < len(s.values) else None for s in series]
        if len(series) > 1 and all(v is None for v in values):  # one mark for the group, not one per run
            out.append(
                f'<text x="{_f(m_left + ci * gw + gw / 2)}" y="{_f(py(0) - 4)}" text-anchor="middle" class="na">n/a'
                f"<title>{escape(cat)}: no scored item in any run</title></text>"
            )
            values = []
        for si, (s, v) in enumerate(zip(series, values, strict=False)):
            x = x0 + si * bw
            if v is None:
                # "n/a" where it fits in the bar's width, else a dash (the tooltip says which)
                mark = "n/a" if bw >= 18 else "–"
                out.append(
                    f'<text x="{_f(x + bw / 2)}" y="{_f(py(0) - 4)}" text-anchor="middle" class="na">{mark}'
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
    for s, (lx, row, name) in zip(series, legend, strict=True):
        ly = h - m_bottom + 26 + 18 * row
        out.append(f'<rect x="{_f(lx)}" y="{_f(ly)}" width="10" height="10" fill="{s.color}"/>')
        out.append(f'<text x="{_f(lx + 14)}" y="{_f(ly + 9)}" class="tick legend">{escape(name)}</text>')
    out.append(f'<line x1="{m_left}" y1="{_f(py(0))}" x2="{m_left + pw}" y2="{_f(py(0))}" stroke="#666"/>')
    out.append("</svg>")
    return "\n".join(out)
