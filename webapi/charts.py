"""Inline SVG charts for the UI's load view, drawn on the server: stacked bars of counts
(scaled to the largest, its peak labelled with the count, a hover title per bar) and lines
of lateness on a log scale. Each chart is an image with a label for screen readers."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta

from markupsafe import Markup, escape

WIDTH, HEIGHT = 1100, 190
LEFT, RIGHT, TOP, BOTTOM = 64, 12, 22, 24
OUTCOMES = ("done", "deleted", "retry", "not_sent", "stopped", "abandoned", "gave_up")


def _svg(label: str, body: list[str]) -> Markup:
    name = escape(label)
    return Markup(
        f'<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" preserveAspectRatio="none" '
        f'role="img" aria-label="{name}"><title>{name}</title>{"".join(body)}</svg>'
    )


def _level(y: float, text: str) -> str:
    """A y axis label and its grid line at height y."""
    return (
        f'<text class="tick" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{text}</text>'
        f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
    )


def _x_axis(count: int, start: datetime, step: timedelta, every: int, fmt: str) -> list[str]:
    """Time labels under every `every`-th column."""
    width = (WIDTH - LEFT - RIGHT) / count
    base = HEIGHT - BOTTOM
    out = [f'<line class="axis" x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}"/>']
    for i in range(0, count, every):
        when = (start + step * i).strftime(fmt)
        out.append(f'<text class="tick" x="{LEFT + i * width:.1f}" y="{HEIGHT - 6}">{when}</text>')
    return out


def _y(value: float, top: float) -> float:
    return HEIGHT - BOTTOM - value / top * (HEIGHT - TOP - BOTTOM)


def bars(
    stacks: Sequence[dict[str, int]],
    start: datetime,
    step: timedelta,
    label: str,
    unit: str,
    every: int,
    fmt: str = "%H:%M",
) -> Markup:
    """Columns of counts stacked by key (an outcome, or "due"), one per step from start; the
    y axis goes to the largest column, whose count is written above it."""
    totals = [sum(s.values()) for s in stacks]
    top = max(totals, default=0)
    body = [_level(_y(v, max(top, 1)), f"{v:,}") for v in sorted({0, top // 2, top})]
    width = (WIDTH - LEFT - RIGHT) / max(len(stacks), 1)
    for i, (stack, total) in enumerate(zip(stacks, totals, strict=True)):
        if not total:
            continue
        x, y = LEFT + i * width, float(HEIGHT - BOTTOM)
        when = (start + step * i).strftime(fmt)
        parts = ", ".join(f"{n:,} {k}" for k, n in stack.items() if n)
        rects = []
        for key in sorted(stack, key=lambda k: OUTCOMES.index(k) if k in OUTCOMES else 99):
            h = stack[key] / top * (HEIGHT - TOP - BOTTOM)
            y -= h
            rects.append(
                f'<rect class="o-{escape(key)}" x="{x:.2f}" y="{y:.2f}" '
                f'width="{max(width - 0.4, 0.6):.2f}" height="{h:.2f}"/>'
            )
        body.append(f"<g><title>{when}: {parts}</title>{''.join(rects)}</g>")
    if top:
        peak = totals.index(top)
        x = min(max(LEFT + (peak + 0.5) * width, LEFT + 60), WIDTH - RIGHT - 60)
        when = (start + step * peak).strftime(fmt)
        body.append(
            f'<text class="peak" x="{x:.1f}" y="{TOP - 6}" text-anchor="middle">'
            f"peak {top:,} {unit} at {when}</text>"
        )
    body += _x_axis(len(stacks), start, step, every, fmt)
    peak_text = (
        f"; peak {top:,} {unit} at {(start + step * totals.index(top)).strftime(fmt)}"
        if top
        else ""
    )
    return _svg(f"{label}{peak_text}", body)


def lines(
    series: dict[str, Sequence[float | None]],
    start: datetime,
    step: timedelta,
    label: str,
    every: int,
    fmt: str = "%H:%M",
) -> Markup:
    """Lines of seconds on a log scale (1 ms up to the largest value's decade), broken where
    a value is missing; a dot with a hover title at each value."""
    values = [v for s in series.values() for v in s if v]
    high = math.ceil(math.log10(max(values))) if values else 0
    low = min(-3, high - 1)

    def y(value: float) -> float:
        level = (math.log10(max(value, 10.0**low)) - low) / (high - low)
        return HEIGHT - BOTTOM - level * (HEIGHT - TOP - BOTTOM)

    body = []
    for decade in range(low, high + 1):
        value = 10.0**decade
        text = f"{value * 1000:g} ms" if value < 1 else f"{value:g} s"
        body.append(_level(y(value), text))
    count = max((len(s) for s in series.values()), default=1)
    width = (WIDTH - LEFT - RIGHT) / count
    for name, points in series.items():
        run: list[str] = []
        for i, point in enumerate([*points, None]):
            if point is None:
                if len(run) > 1:
                    body.append(f'<polyline class="l-{name}" points="{" ".join(run)}"/>')
                run = []
                continue
            value = point
            x = LEFT + (i + 0.5) * width
            run.append(f"{x:.1f},{y(value):.1f}")
            when = (start + step * i).strftime(fmt)
            body.append(
                f'<circle class="l-{name}" cx="{x:.1f}" cy="{y(value):.1f}" r="1.6">'
                f"<title>{when}: {name} {value:g} s</title></circle>"
            )
    body += _x_axis(count, start, step, every, fmt)
    return _svg(label, body)
