"""Charts for the dashboard as inline SVG, drawn on the server: no script, no network.

Each function returns one ``<svg>`` element (as ``Markup``, ready for a template) that scales to
its container (``viewBox``, ``width="100%"``), carries a ``<title>`` and a ``<desc>`` for screen
readers, and a ``<title>`` tooltip on every point or bar. Colours come from CSS classes
(``series-0``, ``bar``, ...) in the dashboard's stylesheet. Every text is escaped.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date

from markupsafe import Markup, escape

Format = Callable[[float], str]

_W, _H = 640, 260  # drawing units; the SVG scales to its container
_NARROW = 480  # default width of bar charts, drawn in half-width cards
_LEFT, _RIGHT, _TOP, _BOTTOM = 58, 18, 30, 34
_BAR_ROW = 26  # height of one horizontal bar's row
_LABEL_CHARS = 22  # horizontal bar labels are cut to this many characters
_MIN_BAR = 3  # a histogram bar with any clients is at least this tall, so a thin tail shows


@dataclass(frozen=True)
class Series:
    """A named line: (date, value) points."""

    name: str
    points: Sequence[tuple[date, float]]


@dataclass(frozen=True)
class Threshold:
    """A horizontal reference line with a label (say, where the high-risk band starts)."""

    value: float
    label: str


def percent(value: float) -> str:
    return f"{value:.0%}" if abs(value) >= 0.1 or value == 0 else f"{value:.1%}"


def money(value: float) -> str:
    """A sum of money, shortened: 1.2M, 35k, 950."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:.1f}M"
    if size >= 1e4:
        return f"{value / 1e3:.0f}k"
    if size >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.0f}"


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    y_format: Format = percent,
    y_range: tuple[float, float] | None = None,
    thresholds: Sequence[Threshold] = (),
    x_format: str = "%b %Y",
    width: int = _W,
    provisional: Mapping[date, str] | None = None,
) -> Markup:
    """Lines over time, one per series, with axes, a legend and a tooltip on every point.

    ``width`` is in drawing units (the height is fixed): a wide chart keeps its text small.
    ``provisional`` maps the dates whose values may still change to why (say, "3 ends
    pending"): their points are hollow, the lines to them dashed, and their tooltips say why.
    """
    provisional = provisional or {}
    points = [p for s in series for p in s.points if math.isfinite(p[1])]
    if not points:
        return _empty(title, width)
    days = sorted({d.toordinal() for d, _ in points})
    values = [v for _, v in points] + [t.value for t in thresholds]
    lo, hi = y_range if y_range is not None else (min(values), max(values))
    ticks = _nice_ticks(min(lo, *values), max(hi, *values))
    x_of = _scale(days[0], days[-1], _LEFT + 8, width - _RIGHT - 8)
    y_of = _scale(ticks[0], ticks[-1], _H - _BOTTOM, _TOP)
    parts = _y_axis(ticks, y_of, _percent_ticks(ticks) if y_format is percent else y_format, width)
    labels = [date.fromordinal(d) for d in _spread(days, max(2, width // 150))]
    parts += _x_ticks(labels, x_of, x_format)
    for t in thresholds:
        y = y_of(t.value)
        parts.append(
            f'<line class="threshold" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" '
            f'y2="{y:.1f}"/><text class="threshold-label" x="{width - _RIGHT - 2}" '
            f'y="{y - 3:.1f}" text-anchor="end">{escape(t.label)}</text>'
        )
    for i, s in enumerate(series):
        parts += _line(s, f"series-{i}", x_of, y_of, (y_format, x_format), provisional)
    parts += _legend([s.name for s in series])
    desc = _describe_lines(series, y_format, x_format, provisional)
    return _svg(title, desc, parts, "line-chart", width=width)


def wide_and_narrow(draw: Callable[[int], Markup], wide: int = 1000, narrow: int = 420) -> Markup:
    """A chart drawn twice: the stylesheet shows the wide drawing on large screens and the
    narrow one (fewer labels, larger text once scaled) on phones."""
    return Markup(
        f'<div class="chart-wide">{draw(wide)}</div><div class="chart-narrow">{draw(narrow)}</div>'
    )


def bar_chart(
    bars: Sequence[tuple[str, float]],
    *,
    title: str,
    value_format: Format = money,
    classes: Sequence[str] = (),
    width: int = _NARROW,
    links: Sequence[str | None] = (),
) -> Markup:
    """Horizontal bars, one row per label, with the value written at the end of each bar.

    ``classes`` gives each bar a CSS class (default ``bar``); ``links`` makes each row a link.
    """
    if not bars:
        return _empty(title, width)
    height = _TOP + _BAR_ROW * len(bars) + 8
    label_w = 150
    top = max((v for _, v in bars), default=0.0)
    x_of = _scale(0.0, top if top > 0 else 1.0, label_w, width - _RIGHT - 56)
    parts = []
    for i, (label, value) in enumerate(bars):
        y = _TOP + i * _BAR_ROW
        length = max(x_of(max(value, 0.0)) - label_w, 0.0)
        css = classes[i] if i < len(classes) else "bar"
        shown = label if len(label) <= _LABEL_CHARS else label[: _LABEL_CHARS - 1] + "…"
        tip = f"{label}: {value_format(value)}"
        row = (
            f'<g class="bar-row"><title>{escape(tip)}</title>'
            f'<text class="bar-label" x="{label_w - 8}" y="{y + 16}" text-anchor="end">'
            f"{escape(shown)}</text>"
            f'<rect class="{escape(css)}" x="{label_w}" y="{y + 4}" width="{length:.1f}" '
            f'height="{_BAR_ROW - 8}" rx="2"/>'
            f'<text class="bar-value" x="{label_w + length + 6:.1f}" y="{y + 16}">'
            f"{escape(value_format(value))}</text></g>"
        )
        link = links[i] if i < len(links) else None
        parts.append(f'<a class="bar-link" href="{escape(link)}">{row}</a>' if link else row)
    desc = "; ".join(f"{label}: {value_format(v)}" for label, v in bars)
    return _svg(title, desc, parts, "bar-chart", height=height, width=width)


def histogram(
    bins: Sequence[tuple[float, float, int]],
    *,
    title: str,
    x_format: Format = percent,
    classes: Sequence[str] = (),
    width: int = _NARROW,
) -> Markup:
    """Vertical bars over (lo, hi, count) bins, each labelled with its count; ``classes`` gives
    each bar a CSS class. A bin with any clients stays visible however tall the others are."""
    if not bins or not any(count for _, _, count in bins):
        return _empty(title, width)
    ticks = _nice_ticks(0, max(count for _, _, count in bins), integers=True)
    y_of = _scale(ticks[0], ticks[-1], _H - _BOTTOM, _TOP)
    slot = (width - _LEFT - _RIGHT) / len(bins)
    parts = _y_axis(ticks, y_of, lambda v: f"{v:,.0f}", width)
    for i, (lo, hi, count) in enumerate(bins):
        x = _LEFT + i * slot
        y = min(y_of(count), _H - _BOTTOM - _MIN_BAR) if count else y_of(0)
        css = classes[i] if i < len(classes) else "bar"
        tip = f"{x_format(lo)}\N{EN DASH}{x_format(hi)}: {count:,} clients"
        parts.append(
            f'<g><title>{escape(tip)}</title><rect class="{escape(css)}" x="{x + 2:.1f}" '
            f'y="{y:.1f}" width="{slot - 4:.1f}" height="{_H - _BOTTOM - y:.1f}"/>'
            f'<text class="bar-count" x="{x + slot / 2:.1f}" y="{y - 4:.1f}" '
            f'text-anchor="middle">{count:,}</text></g>'
        )
        label_at = x + slot / 2
        parts.append(
            f'<text class="tick" x="{label_at:.1f}" y="{_H - _BOTTOM + 16}" '
            f'text-anchor="middle">{escape(x_format(lo))}</text>'
        )
    desc = "; ".join(f"{x_format(lo)}\N{EN DASH}{x_format(hi)}: {n}" for lo, hi, n in bins)
    return _svg(title, desc, parts, "histogram", width=width)


# ---------------------------------------------------------------------------------- pieces


def _svg(
    title: str, desc: str, parts: list[str], kind: str, height: int = _H, width: int = _W
) -> Markup:
    body = "".join(parts)
    return Markup(
        f'<svg class="chart {kind}" xmlns="http://www.w3.org/2000/svg" role="img" '
        f'viewBox="0 0 {width} {height}" width="100%" preserveAspectRatio="xMidYMid meet">'
        f"<title>{escape(title)}</title><desc>{escape(desc)}</desc>{body}</svg>"
    )


def _empty(title: str, width: int = _W) -> Markup:
    x, y = width / 2, _H / 2
    text = f'<text class="empty" x="{x}" y="{y}" text-anchor="middle">No data yet</text>'
    return _svg(title, "No data yet", [text], "empty-chart", width=width)


def _scale(lo: float, hi: float, out_lo: float, out_hi: float) -> Callable[[float], float]:
    """A linear map from [lo, hi] to [out_lo, out_hi]; a single value maps to the middle."""
    if hi == lo:
        return lambda _: (out_lo + out_hi) / 2
    factor = (out_hi - out_lo) / (hi - lo)
    return lambda v: out_lo + (v - lo) * factor


def _nice_ticks(lo: float, hi: float, n: int = 5, integers: bool = False) -> list[float]:
    """About ``n`` round tick values covering [lo, hi]."""
    if hi == lo:
        hi = lo + (1 if integers or lo == 0 else abs(lo) * 0.1)
    raw = (hi - lo) / n
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    if integers:
        step = max(1.0, math.ceil(step))
    first = math.floor(lo / step) * step
    count = math.ceil((hi - first) / step - 1e-9)
    return [round(first + i * step, 10) for i in range(count + 1)]


def _percent_ticks(ticks: list[float]) -> Format:
    """Percent tick labels with the decimals their step needs: 99.2%, 99.4% (not 99%, 99%)."""
    step = abs(ticks[1] - ticks[0]) * 100 if len(ticks) > 1 else 1.0
    decimals = next((d for d in range(6) if abs(round(step, d) - step) < 1e-9), 6)
    return lambda v: f"{v * 100 + 0.0:.{decimals}f}%"  # + 0.0: no "-0%"


def _spread(values: list[int], most: int) -> list[int]:
    """At most ``most`` values, evenly chosen, always the first and the last."""
    if len(values) <= most:
        return values
    step = (len(values) - 1) / (most - 1)
    return [values[round(i * step)] for i in range(most)]


def _y_axis(
    ticks: list[float], y_of: Callable[[float], float], fmt: Format, width: int = _W
) -> list[str]:
    parts = []
    for t in ticks:
        y = y_of(t)
        parts.append(
            f'<line class="grid" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>'
            f'<text class="tick" x="{_LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(fmt(t))}</text>"
        )
    parts.append(
        f'<line class="axis" x1="{_LEFT}" x2="{_LEFT}" y1="{_TOP}" y2="{_H - _BOTTOM}"/>'
        f'<line class="axis" x1="{_LEFT}" x2="{width - _RIGHT}" y1="{_H - _BOTTOM}" '
        f'y2="{_H - _BOTTOM}"/>'
    )
    return parts


def _x_ticks(days: list[date], x_of: Callable[[float], float], fmt: str) -> list[str]:
    """Date labels under the axis; the first and last align inwards to stay inside."""
    anchors = ["middle"] * len(days)
    if len(days) > 1:
        anchors[0], anchors[-1] = "start", "end"
    return [
        f'<text class="tick" x="{x_of(d.toordinal()):.1f}" y="{_H - _BOTTOM + 16}" '
        f'text-anchor="{anchor}">{escape(d.strftime(fmt))}</text>'
        for d, anchor in zip(days, anchors, strict=True)
    ]


def _line(
    s: Series,
    css: str,
    x_of: Callable[[float], float],
    y_of: Callable[[float], float],
    formats: tuple[Format, str],
    provisional: Mapping[date, str],
) -> list[str]:
    """A series' line and points; lines touching a provisional point are dashed."""
    y_format, x_format = formats
    points = sorted((d, v) for d, v in s.points if math.isfinite(v))
    xy = [(x_of(d.toordinal()), y_of(v)) for d, v in points]
    parts = []
    for dashed, run in _runs([d in provisional for d, _ in points], xy):
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in run)
        parts.append(f'<polyline class="line {css}{" provisional" * dashed}" points="{path}"/>')
    for (d, v), (x, y) in zip(points, xy, strict=True):
        note = provisional.get(d)
        tip = f"{s.name}, {d.strftime(x_format)}: {y_format(v)}" + (f" ({note})" if note else "")
        parts.append(
            f'<circle class="point {css}{" provisional" * bool(note)}" cx="{x:.1f}" '
            f'cy="{y:.1f}" r="4"><title>{escape(tip)}</title></circle>'
        )
    return parts


def _runs(
    marked: list[bool], xy: list[tuple[float, float]]
) -> list[tuple[bool, list[tuple[float, float]]]]:
    """The line as runs of (dashed, points): a segment is dashed when either end is marked."""
    runs: list[tuple[bool, list[tuple[float, float]]]] = []
    for i in range(1, len(xy)):
        dashed = marked[i - 1] or marked[i]
        if runs and runs[-1][0] == dashed:
            runs[-1][1].append(xy[i])
        else:
            runs.append((dashed, [xy[i - 1], xy[i]]))
    return runs


def _legend(names: list[str]) -> list[str]:
    parts, x = [], _LEFT
    for i, name in enumerate(names):
        parts.append(
            f'<rect class="swatch series-{i}" x="{x}" y="8" width="12" height="12" rx="2"/>'
            f'<text class="legend" x="{x + 17}" y="18">{escape(name)}</text>'
        )
        x += 30 + 8 * len(name)
    return parts


def _describe_lines(
    series: Sequence[Series], y_format: Format, x_format: str, provisional: Mapping[date, str]
) -> str:
    """The data in words, for screen readers."""

    def point(d: date, v: float) -> str:
        note = provisional.get(d)
        return f"{d.strftime(x_format)} {y_format(v)}" + (f" ({note})" if note else "")

    return "; ".join(
        f"{s.name}: " + ", ".join(point(d, v) for d, v in sorted(s.points)) for s in series
    )
