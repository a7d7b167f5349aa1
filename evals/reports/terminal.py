"""The terminal report: a table per suite, the cases that changed, the notices and the gate."""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console
from rich.table import Table

from evals.compare import ALL, Comparison, Pair, Totals
from evals.reports.model import Report, figure

_SHOWN = 12  # cases listed per kind of change; the HTML and JSON reports have them all


def render(report: Report, console: Console, shown: int = _SHOWN) -> None:
    """``shown``: how many cases to list per kind of change before "and N more"."""
    console.print(_title(report))
    console.print(_table(report.comparison))
    for change in ("regressed", "fixed"):
        _changes(console, report.comparison.changed(change), change, shown)
    _failing(console, report, shown)
    for notice in report.notices:
        console.print(f"[yellow]notice:[/] {notice}", highlight=False)
    _gate(console, report)


def _title(report: Report) -> str:
    against = f" vs {report.baseline.title}" if report.baseline else ""
    cases = report.comparison.candidate[ALL].cases
    judge = f", judge {report.judge}" if report.judge else ", no judge"
    return (
        f"[bold]{report.candidate.title}{against}[/]\n"
        f"{cases} cases, {report.mode} mode{judge}, {report.seconds:.1f} s; {report.spending}"
    )


def _table(comparison: Comparison) -> Table:
    both = comparison.baseline is not None
    table = Table(show_lines=False, header_style="bold")
    for column in ("suite", "cases"):
        table.add_column(column)
    if both:
        for column in ("baseline", "candidate", "change", "fixed", "regressed"):
            table.add_column(column, justify="right")
    else:
        table.add_column("pass rate", justify="right")
    for column in ("cost/email", "tokens/email", "model ms/email", "fell back"):
        table.add_column(column, justify="right")
    for suite in (*comparison.suites, ALL):
        table.add_row(*_row(comparison, suite), end_section=suite == comparison.suites[-1])
    return table


def _row(comparison: Comparison, suite: str) -> list[str]:
    now = comparison.candidate[suite]
    was = comparison.baseline[suite] if comparison.baseline else None
    cells = [suite, str(now.cases)]
    if was is None:
        cells.append(f"{now.pass_rate:.1f}%")
    else:
        pairs = [p for p in comparison.pairs if suite in (ALL, p.candidate.case.suite)]
        cells += [f"{was.pass_rate:.1f}%", f"{now.pass_rate:.1f}%", _delta(comparison, suite)]
        cells += [str(sum(p.change == c for p in pairs)) for c in ("fixed", "regressed")]
    cells += [
        _pair(was, now, lambda t: figure(t, f"${t.cost_per_email:.6f}")),
        _pair(was, now, lambda t: figure(t, f"{t.tokens_per_email:.0f}")),
        _pair(was, now, lambda t: figure(t, f"{t.latency_per_email:.0f}")),
        _pair(was, now, lambda t: str(t.fell_back)),
    ]
    return cells


def _pair(was: Totals | None, now: Totals, show: Callable[[Totals], str]) -> str:
    return f"{show(was)} → {show(now)}" if was is not None else show(now)


def _delta(comparison: Comparison, suite: str) -> str:
    delta = comparison.delta(suite) or 0.0
    colour = "red" if delta < 0 else "green" if delta > 0 else "default"
    return f"[{colour}]{delta:+.1f} pts[/]"


def _changes(console: Console, pairs: list[Pair], change: str, shown: int) -> None:
    if not pairs:
        return
    colour = "red" if change == "regressed" else "green"
    console.print(f"[bold {colour}]{change}[/] ({len(pairs)}):")
    _listed(console, pairs, shown)


def _listed(console: Console, pairs: list[Pair], shown: int) -> None:
    """The first ``shown`` pairs, and how many more the HTML and JSON reports list."""
    for pair in pairs[:shown]:
        console.print(f"  {pair.key}: {_failures(pair)}", highlight=False)
    if len(pairs) > shown:
        console.print(f"  and {len(pairs) - shown} more (every case is in --html and --json)")


def _failing(console: Console, report: Report, shown: int) -> None:
    failing = [p for p in report.comparison.pairs if not p.candidate.passed]
    if report.baseline is not None:
        failing = [p for p in failing if p.change == "still failing"]
    if failing:
        what = "still failing" if report.baseline else "failing"
        console.print(f"[bold]{what}[/] ({len(failing)}):")
        _listed(console, failing, shown)


def _failures(pair: Pair) -> str:
    """What fails now, or (for a fixed case) what failed before."""
    result = pair.candidate if not pair.candidate.passed or not pair.baseline else pair.baseline
    if result.error:
        return f"error: {result.error}"
    failed = [f"{e.label}: {v.message}" for e, v in result.verdicts if v.status == "fail"]
    return " | ".join(failed)[:300] or "passes"


def _gate(console: Console, report: Report) -> None:
    policy = report.verdict.policy
    rules = f"max drop {policy.max_drop:g} points, floor {policy.min_pass_rate:g}%"
    if report.verdict.passed:
        console.print(f"[bold green]gate passed[/] ({rules})")
        return
    console.print(f"[bold red]gate failed[/] ({rules}):")
    for reason in report.verdict.reasons:
        console.print(f"  {reason}", highlight=False)
