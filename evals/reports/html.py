"""The HTML report: one self-contained file (no external script, style or font).

Per case, the baseline's and the candidate's emails side by side, rendered in the real layout
inside sandboxed iframes (``srcdoc``; scripts never run in them), each assertion's verdict on
both sides, and a word diff of the copy. On top: the gate, the totals and two inline SVG charts.
"""

from __future__ import annotations

import html
from importlib import resources

from evals.compare import ALL, Comparison, Pair
from evals.reports.chart import COST, PASS_RATE, bar_chart
from evals.reports.diff import email_text, word_diff
from evals.reports.model import Report, figure
from evals.runner import CaseResult

_ORDER = {"regressed": 0, "fixed": 1, "still failing": 2, "new": 3, "still passing": 4}


def to_html(report: Report) -> str:
    body = "".join(
        [
            _header(report),
            _summary(report.comparison),
            _notices(report),
            '<section id="cases"><h2>Cases</h2>',
            *(_case(p) for p in sorted(report.comparison.pairs, key=lambda p: _ORDER[p.change])),
            "</section>",
        ]
    )
    title = html.escape(f"Dripline eval: {report.candidate.title}")
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f"<style>{_asset('report.css')}</style></head><body>{body}"
        f"<script>{_asset('report.js')}</script></body></html>\n"
    )


def _asset(name: str) -> str:
    return resources.files("evals.reports").joinpath(name).read_text(encoding="utf-8")


def _header(report: Report) -> str:
    verdict = report.verdict
    policy = f"max drop {verdict.policy.max_drop:g} points, floor {verdict.policy.min_pass_rate:g}%"
    state = "passed" if verdict.passed else "failed"
    reasons = "".join(f"<li>{html.escape(r)}</li>" for r in verdict.reasons)
    against = f" vs {report.baseline.title}" if report.baseline else ""
    judge = f"judge {report.judge}" if report.judge else "no judge configured"
    return (
        f"<header><h1>{html.escape(report.candidate.title + against)}</h1>"
        f"<p class=meta>{report.started_at:%Y-%m-%d %H:%M} UTC · {report.mode} mode · "
        f"{html.escape(judge)} · {report.seconds:.1f} s · {report.spending}</p>"
        f'<div class="gate {state}" id="gate"><strong>Gate {state}</strong> ({policy})'
        f"<ul>{reasons}</ul></div></header>"
    )


def _summary(comparison: Comparison) -> str:
    rows = "".join(_summary_row(comparison, s) for s in (*comparison.suites, ALL))
    columns = ["suite", "cases", "baseline", "candidate", "change", "fixed", "regressed"]
    if comparison.baseline is None:
        columns = ["suite", "cases", "pass rate"]
    columns += ["cost / email", "tokens / email", "model ms / email", "fell back"]
    head = "".join(f"<th>{c}</th>" for c in columns)
    charts = bar_chart(comparison, PASS_RATE) + bar_chart(comparison, COST)
    legend = (
        '<p class="legend"><span class="swatch baseline"></span>baseline '
        '<span class="swatch candidate"></span>candidate</p>'
    )
    return (
        f'<section id="summary"><h2>Suites</h2><table class="totals"><tr>{head}</tr>{rows}'
        f'</table><div class="charts">{charts}</div>{legend}</section>'
    )


def _summary_row(comparison: Comparison, suite: str) -> str:
    now = comparison.candidate[suite]
    was = comparison.baseline[suite] if comparison.baseline else None
    cells = [html.escape(suite), str(now.cases)]
    if was is None:
        cells.append(f"{now.pass_rate:.1f}%")
    else:
        pairs = [p for p in comparison.pairs if suite in (ALL, p.candidate.case.suite)]
        delta = comparison.delta(suite) or 0.0
        cells += [f"{was.pass_rate:.1f}%", f"{now.pass_rate:.1f}%", f"{delta:+.1f} pts"]
        cells += [str(sum(p.change == c for p in pairs)) for c in ("fixed", "regressed")]
    sides = [was, now] if was is not None else [now]
    cells += [
        " → ".join(figure(t, f"${t.cost_per_email:.6f}") for t in sides),
        " → ".join(figure(t, f"{t.tokens_per_email:.0f}") for t in sides),
        " → ".join(figure(t, f"{t.latency_per_email:.0f}") for t in sides),
        " → ".join(str(t.fell_back) for t in sides),
    ]
    return "<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def _notices(report: Report) -> str:
    items = "".join(f"<li>{html.escape(n)}</li>" for n in report.notices)
    return f'<section id="notices"><ul>{items}</ul></section>' if items else ""


def _case(pair: Pair) -> str:
    case = pair.candidate.case
    change = pair.change.replace(" ", "-")
    about = f"<p class=about>{html.escape(case.about)}</p>" if case.about else ""
    sides = [r for r in (pair.baseline, pair.candidate) if r is not None]
    return (
        f'<article class="case {change}" id="case-{html.escape(case.suite)}-{case.id}">'
        f'<h3>{html.escape(case.key)} <span class="badge {change}">{pair.change}</span></h3>'
        f"{about}<div class=side-by-side>{''.join(_email(r) for r in sides)}</div>"
        f"{_verdicts(pair)}{_diff(pair)}</article>"
    )


def _email(result: CaseResult) -> str:
    head = (
        f"<h4>{result.side} · prompt {html.escape(result.prompt)} · "
        f"{html.escape(result.model)} {_status(result)}</h4>"
    )
    if result.draft is None or result.preview is None:
        error = html.escape(result.error or "no email")
        return f'<div class="email {result.side}">{head}<p class=error>{error}</p></div>'
    draft = result.draft
    note = (
        f"<p class=fallback>fell back to the offline composer: {html.escape(result.reason)}</p>"
        if result.fell_back
        else ""
    )
    title = html.escape(f"{result.side} email for {result.case.key}")
    return (
        f'<div class="email {result.side}">{head}'
        f'<div class="inbox"><span class="subject">{html.escape(draft.subject)}</span> '
        f'<span class="preheader">{html.escape(draft.preheader)}</span></div>{note}'
        f'<iframe sandbox="allow-same-origin" loading="lazy" title="{title}" '
        f'srcdoc="{html.escape(result.preview.html, quote=True)}"></iframe>'
        f"<p class=usage>{_usage(result)}</p></div>"
    )


def _status(result: CaseResult) -> str:
    state = "pass" if result.passed else "fail"
    return f'<span class="badge {state}">{state}</span>'


def _usage(result: CaseResult) -> str:
    calls = [c for c in result.calls if c.purpose == "draft"]
    tokens = sum(c.prompt_tokens + c.completion_tokens for c in calls)
    latency = sum(c.latency_ms for c in calls)
    reused = sum(c.reused for c in calls)
    simulated = " (simulated: a stand-in model answered)" if any(c.simulated for c in calls) else ""
    return (
        f"{len(calls)} model call(s), {reused} from cache or recording · {tokens} tokens · "
        f"${result.cost_usd:.6f} · {latency} ms model time{simulated}"
    )


def _verdicts(pair: Pair) -> str:
    before = {e.label: v for e, v in pair.baseline.verdicts} if pair.baseline else {}
    rows = []
    for expectation, verdict in pair.candidate.verdicts:
        was = before.get(expectation.label)
        cells = [f"<td>{html.escape(expectation.label)}</td>"]
        if pair.baseline is not None:
            cells.append(_verdict_cell(was.status if was else "-", was.message if was else ""))
        cells.append(_verdict_cell(verdict.status, verdict.message))
        rows.append(f"<tr>{''.join(cells)}</tr>")
    head = "<th>assertion</th>" + ("<th>baseline</th>" if pair.baseline else "")
    return f'<table class="verdicts"><tr>{head}<th>candidate</th></tr>{"".join(rows)}</table>'


def _verdict_cell(status: str, message: str) -> str:
    note = f" <span class=message>{html.escape(message)}</span>" if message else ""
    return f'<td><span class="badge {status}">{status}</span>{note}</td>'


def _diff(pair: Pair) -> str:
    before = pair.baseline.draft if pair.baseline else None
    after = pair.candidate.draft
    if before is None or after is None:
        return ""
    if not pair.copy_changed:
        return "<p class=same>The copy is the same on both sides.</p>"
    diff = word_diff(email_text(before), email_text(after))
    return f'<details class="diff" open><summary>Copy diff</summary><pre>{diff}</pre></details>'
