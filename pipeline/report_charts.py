"""The bar charts of ``report.html``, as small SVG documents drawn from the numbers alone.

Every plot of the page is bars on a zero baseline with round gridlines, which a few dozen SVG
elements draw. matplotlib drew them before, at about 3 CPU seconds of every build (its import
while Ray started, then a second of layout in the commit). Text is SVG text in a sans-serif
font, so the same numbers always give the same bytes.
"""

from __future__ import annotations

import math
from html import escape

WIDTH = 640
ROW = 24  # pixels per bar of a horizontal chart
CHAR = 6.6  # about the width of one 11-pixel character, to size the label column
GRID, AXIS, INK, MUTED = "#e4e7eb", "#9aa5b1", "#1f2933", "#616e7c"
FONT = 'font-family="system-ui, -apple-system, Segoe UI, Helvetica, Arial, sans-serif" font-size="11"'


def columns(series: list[tuple[str, list[float], str]], labels: list[str], xlabel: str, ylabel: str,
            every: int = 1, slanted: bool = False, min_slots: int = 1) -> str:
    """Vertical bars: each series (name, one value per label, colour) has a bar in every label's slot,
    side by side; every ``every``-th label is written under its slot, slanted for long ones. At least
    ``min_slots`` slots wide, so that a lone bar stays a bar. A legend above the plot names the series
    when they are two or more."""
    named = len(series) > 1
    height, left, right, top = 300, 64, 12, 32 if named else 12
    bottom = 84 if slanted else 44
    plot_width, plot_height = WIDTH - left - right, height - top - bottom
    ticks = _ticks(max((v for _, values, _ in series for v in values), default=0))
    y = _scale(ticks[-1], top + plot_height, -plot_height)
    slot = plot_width / max(len(labels), min_slots)
    bar = 0.8 * slot / len(series)
    parts = _gridlines(ticks, lambda t: (left, y(t), WIDTH - right, y(t)), lambda t: (left - 6, y(t) + 4, "end"))
    for k, (_, values, colour) in enumerate(series):
        for i, value in enumerate(values):
            x = left + i * slot + 0.1 * slot + k * bar
            parts.append(_rect(x, y(value), bar, y(0) - y(value), colour))
    parts.append(_line(left, y(0), WIDTH - right, y(0), AXIS))
    for i in range(0, len(labels), every):
        x = left + (i + 0.5) * slot
        if slanted:
            parts.append(_text(x, y(0) + 12, labels[i], "end", turn=-40))
        else:
            parts.append(_text(x, y(0) + 16, labels[i], "middle"))
    parts.append(_text(left + plot_width / 2, height - 6, xlabel, "middle", MUTED))
    parts.append(_text(14, top + plot_height / 2, ylabel, "middle", MUTED, turn=-90))
    legend_x = left
    for name, _, colour in series if named else []:  # one line above the plot
        parts.append(_rect(legend_x, 6, 10, 10, colour))
        parts.append(_text(legend_x + 14, 15, name, "start"))
        legend_x += 30 + CHAR * len(name)
    return _svg(height, parts)


def rows(labels: list[str], values: list[float], colours: list[str], xlabel: str, value_format: str = ",") -> str:
    """Horizontal bars, one per label from top to bottom, each with its value (``value_format``) after it."""
    left = max(80, 12 + CHAR * max((len(label) for label in labels), default=0))
    right, top, bottom = 72, 8, 40
    height = top + ROW * len(labels) + bottom
    plot_width, baseline = WIDTH - left - right, top + ROW * len(labels)
    ticks = _ticks(max(values, default=0))
    x = _scale(ticks[-1], left, plot_width)
    parts = _gridlines(ticks, lambda t: (x(t), top, x(t), baseline), lambda t: (x(t), baseline + 14, "middle"))
    for i, (label, value, colour) in enumerate(zip(labels, values, colours)):
        row_top = top + ROW * i
        parts.append(_rect(left, row_top + 4, x(value) - left, ROW - 8, colour))
        parts.append(_text(left - 6, row_top + ROW / 2 + 4, label, "end"))
        parts.append(_text(x(value) + 4, row_top + ROW / 2 + 4, format(value, value_format), "start", MUTED))
    parts.append(_line(left, top, left, baseline, AXIS))
    parts.append(_text(left + plot_width / 2, height - 6, xlabel, "middle", MUTED))
    return _svg(height, parts)


def _ticks(top: float) -> list[float]:
    """0, then steps of 1, 2 or 5 times a power of ten up to ``top`` or just above it: about five gridlines."""
    if top <= 0:
        return [0, 1]
    power = 10 ** math.floor(math.log10(top / 5))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= top / 5)
    return [i * step for i in range(math.ceil(top / step - 1e-9) + 1)]


def _scale(top: float, origin: float, length: float):
    return lambda value: origin + length * value / top


def _gridlines(ticks: list[float], line, label) -> list[str]:
    """A light line and a label per tick; ``line(t)``: (x1, y1, x2, y2), ``label(t)``: (x, y, anchor)."""
    decimals = 0 if ticks[1] >= 1 else -math.floor(math.log10(ticks[1]))
    parts = []
    for tick in ticks:
        x, y, anchor = label(tick)
        parts.append(_line(*line(tick), GRID))
        parts.append(_text(x, y, f"{tick:,.{decimals}f}", anchor, MUTED))
    return parts


def _svg(height: int, parts: list[str]) -> str:
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
            f'viewBox="0 0 {WIDTH} {height}" {FONT}>{"".join(parts)}</svg>')


def _rect(x: float, y: float, width: float, height: float, colour: str) -> str:
    return f'<rect x="{x:.1f}" y="{y:.1f}" width="{max(width, 0):.1f}" height="{max(height, 0):.1f}" fill="{colour}"/>'


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return f'<line x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}" stroke="{colour}"/>'


def _text(x: float, y: float, text: str, anchor: str, colour: str = INK, turn: float = 0) -> str:
    """``text`` at (x, y), turned by ``turn`` degrees about that point (clockwise, as SVG turns)."""
    place = f'transform="translate({x:.1f},{y:.1f}) rotate({turn:g})"' if turn else f'x="{x:.1f}" y="{y:.1f}"'
    return f'<text {place} text-anchor="{anchor}" fill="{colour}">{escape(text)}</text>'
