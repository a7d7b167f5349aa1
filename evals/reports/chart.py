"""Inline SVG bar charts for the HTML report: no script, no external file."""

from __future__ import annotations

import html
from collections.abc import Callable
from dataclasses import dataclass

from evals.compare import ALL, Comparison, Totals

_BAR, _GAP, _GROUP_GAP, _HEIGHT, _LEFT, _TOP = 34, 4, 28, 150, 8, 40
COLOURS = {"baseline": "#94a3b8", "candidate": "#2563eb"}


@dataclass(frozen=True)
class Metric:
    title: str
    value: Callable[[Totals], float]
    label: Callable[[float], str]
    ceiling: float | None = None  # a fixed top of scale (100 for per cent)
    usage: bool = False  # a usage figure: simulated when a stand-in model answered


PASS_RATE = Metric("Pass rate per suite", lambda t: t.pass_rate, lambda v: f"{v:.0f}%", 100.0)
# Per thousand emails: a single email's cost is too small a number to read at a glance.
COST = Metric(
    "Cost per 1,000 emails (USD)",
    lambda t: 1000 * t.cost_per_email,
    lambda v: f"${v:.2f}",
    usage=True,
)


def bar_chart(comparison: Comparison, metric: Metric) -> str:
    groups = [*comparison.suites, ALL]
    sides = [("baseline", comparison.baseline), ("candidate", comparison.candidate)]
    present = [(name, totals) for name, totals in sides if totals is not None]
    values = [metric.value(totals[g]) for _, totals in present for g in groups]
    top = metric.ceiling or max([*values, 0.0]) or 1.0
    group_width = len(present) * (_BAR + _GAP) + _GROUP_GAP
    width = _LEFT + len(groups) * group_width
    bars = []
    for g, group in enumerate(groups):
        x0 = _LEFT + g * group_width
        for s, (name, totals) in enumerate(present):
            value = metric.value(totals[group])
            bars.append(_bar(x0 + s * (_BAR + _GAP), value, top, name, metric.label(value)))
        bars.append(_caption(x0 + (group_width - _GROUP_GAP) / 2, group))
    size = f'width="{width}" height="{_TOP + _HEIGHT + 40}"'
    simulated = metric.usage and any(t[ALL].simulated_calls for _, t in present)
    heading = metric.title + (", simulated: a stand-in model answered" if simulated else "")
    title = f'<text x="{_LEFT}" y="14" class="chart-title">{html.escape(heading)}</text>'
    label = html.escape(heading)
    return f'<svg {size} role="img" aria-label="{label}">{title}{"".join(bars)}</svg>'


def _bar(x: float, value: float, top: float, side: str, label: str) -> str:
    height = max(1.0, _HEIGHT * value / top)
    y = _TOP + _HEIGHT - height
    tip = html.escape(f"{side}: {label}")
    return (
        f'<rect x="{x}" y="{y:.1f}" width="{_BAR}" height="{height:.1f}" '
        f'fill="{COLOURS[side]}"><title>{tip}</title></rect>'
        f'<text x="{x + _BAR / 2}" y="{y - 3:.1f}" class="bar-label">{html.escape(label)}</text>'
    )


def _caption(x: float, text: str) -> str:
    y = _TOP + _HEIGHT + 16
    return f'<text x="{x}" y="{y}" class="group-label">{html.escape(text)}</text>'
