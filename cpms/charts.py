"""Small server-rendered SVG charts for portal pages: no JavaScript charting library and no front-end build.

Each chart is a <figure> with an accessible title, the SVG, and the same numbers in a visually hidden table
for screen readers. Values may be int, float or Decimal; None is a gap.
"""

from collections.abc import Sequence
from decimal import Decimal

from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString

WIDTH = 640
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 48, 12, 12, 28

Number = int | float | Decimal


def _scale(points: Sequence[tuple[str, Number | None]], height: int) -> tuple[float, float, float]:
    values = [float(v) for _, v in points if v is not None]
    top = max(values, default=0.0)
    top = top if top > 0 else 1.0
    plot_h = height - PAD_TOP - PAD_BOTTOM
    step = (WIDTH - PAD_LEFT - PAD_RIGHT) / max(len(points), 1)
    return top, plot_h, step


def _fmt(value: Number | None, unit: str) -> str:
    if value is None:
        return "—"
    value = float(value)
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.2f}".rstrip("0").rstrip(".")
    return f"{text} {unit}".strip()


def _frame(points, title: str, unit: str, height: int, body: SafeString) -> SafeString:
    top, _, step = _scale(points, height)
    label_every = max(1, len(points) // 8)
    labels = format_html_join(
        "",
        '<text x="{}" y="{}" class="chart-label" text-anchor="middle">{}</text>',
        (
            (round(PAD_LEFT + step * (i + 0.5), 1), height - 8, label)
            for i, (label, _) in enumerate(points)
            if i % label_every == 0
        ),
    )
    rows = format_html_join(
        "", "<tr><th>{}</th><td>{}</td></tr>", ((lbl, _fmt(v, unit)) for lbl, v in points)
    )
    return format_html(
        '<figure class="chart"><figcaption>{title}</figcaption>'
        '<svg viewBox="0 0 {w} {h}" role="img" aria-label="{title}" preserveAspectRatio="none">'
        '<line x1="{pl}" y1="{pt}" x2="{pl}" y2="{base}" class="chart-axis"/>'
        '<line x1="{pl}" y1="{base}" x2="{right}" y2="{base}" class="chart-axis"/>'
        '<text x="{lx}" y="{ty}" class="chart-label" text-anchor="end">{top}</text>'
        '<text x="{lx}" y="{base}" class="chart-label" text-anchor="end">0</text>'
        "{body}{labels}</svg>"
        '<table class="visually-hidden"><caption>{title}</caption>{rows}</table></figure>',
        title=title,
        w=WIDTH,
        h=height,
        pl=PAD_LEFT,
        pt=PAD_TOP,
        base=height - PAD_BOTTOM,
        right=WIDTH - PAD_RIGHT,
        lx=PAD_LEFT - 4,
        ty=PAD_TOP + 8,
        top=_fmt(top, unit),
        body=body,
        labels=labels,
        rows=rows,
    )


def line_chart(points: Sequence[tuple[str, Number | None]], *, title: str, unit: str = "", height: int = 180):
    if not points:
        return format_html('<p class="empty">No data for {}.</p>', title)
    top, plot_h, step = _scale(points, height)
    base = height - PAD_BOTTOM
    segments: list[list[str]] = [[]]
    for i, (_, value) in enumerate(points):
        if value is None:
            segments.append([])
            continue
        x = PAD_LEFT + step * (i + 0.5)
        y = base - plot_h * float(value) / top
        segments[-1].append(f"{x:.1f},{y:.1f}")
    body = format_html_join(
        "", '<polyline points="{}" class="chart-line"/>', ((" ".join(seg),) for seg in segments if seg)
    )
    return _frame(points, title, unit, height, body)


def bar_chart(points: Sequence[tuple[str, Number | None]], *, title: str, unit: str = "", height: int = 180):
    if not points:
        return format_html('<p class="empty">No data for {}.</p>', title)
    top, plot_h, step = _scale(points, height)
    base = height - PAD_BOTTOM
    bars = []
    for i, (label, value) in enumerate(points):
        if value is None:
            continue
        bar_h = plot_h * float(value) / top
        bars.append(
            format_html(
                '<rect x="{}" y="{}" width="{}" height="{}" class="chart-bar"><title>{}: {}</title></rect>',
                round(PAD_LEFT + step * i + step * 0.15, 1),
                round(base - bar_h, 1),
                round(step * 0.7, 1),
                round(bar_h, 1),
                label,
                _fmt(value, unit),
            )
        )
    return _frame(points, title, unit, height, format_html_join("", "{}", ((bar,) for bar in bars)))
