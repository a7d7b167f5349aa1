"""The reports: JSON, JUnit XML for CI, the terminal table, and the HTML report opened in headless
Chromium (Debian's package, not a Playwright download) with both emails side by side."""

from __future__ import annotations

import asyncio
import json
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path

import pytest
from eval_cases import SUITES, WORSE, WORSE_PROMPTS
from playwright.sync_api import Browser, FloatRect, Locator, sync_playwright
from rich.console import Console

from agents.config import ModelConfig
from agents.standin import is_stand_in
from evals.cache import Mode
from evals.compare import ALL, Totals
from evals.reports import html, junit, terminal
from evals.reports import json as json_report
from evals.reports.model import Report, figure
from evals.session import Plan, execute

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Report:
    """The onboarding suite: the worse prompt as candidate, v1 as baseline, the fake model."""
    plan = Plan(
        suites=(SUITES[0],),
        prompt=WORSE,
        baseline="v1",
        model=ModelConfig(model="fake-heuristic"),
        mode=Mode.live,
        cache_dir=tmp_path_factory.mktemp("cache"),
        prompts_dir=WORSE_PROMPTS,
        progress=False,
    )
    return asyncio.run(execute(plan))


def test_the_json_report_has_totals_gate_and_every_case(report: Report) -> None:
    data = json.loads(json.dumps(json_report.to_json(report)))
    assert data["candidate"] == {"label": "candidate", "prompt": WORSE, "model": "fake-heuristic"}
    assert data["gate"]["passed"] is False and data["gate"]["max_drop"] == 2.0
    onboarding = data["suites"]["onboarding"]
    assert onboarding["candidate"]["cases"] == 14
    assert onboarding["delta_points"] < 0
    assert onboarding["candidate"]["cost_usd"] > 0 and onboarding["candidate"]["prompt_tokens"] > 0
    case = next(c for c in data["cases"] if c["key"] == "onboarding/plain-welcome")
    assert case["change"] == "regressed"
    assert case["baseline"]["email"]["paragraphs"][0] == "Hi Dana,"
    assert case["candidate"]["email"]["paragraphs"][0] == "Hi there,"
    statuses = {a["label"]: a["status"] for a in case["candidate"]["assertions"]}
    assert statuses['mentions_fact ["first_name"]'] == "fail"
    assert statuses["guardrails"] == "pass"
    assert any(s == "skip" for label, s in statuses.items() if label.startswith("judge"))


def test_junit_has_a_testcase_per_case_and_assertion_and_one_for_the_gate(report: Report) -> None:
    root = ET.fromstring(junit.to_junit(report))
    onboarding, gate = root.findall("testsuite")
    expected = sum(len(p.candidate.verdicts) for p in report.comparison.pairs)
    assert onboarding.get("tests") == str(expected)
    failure = onboarding.find(
        "testcase[@classname='onboarding.plain-welcome'][@name='mentions_fact [\"first_name\"]']"
        "/failure"
    )
    assert failure is not None
    assert failure.get("message") == "mentions none of the contact's first_name"
    assert int(onboarding.get("skipped", "0")) >= 2  # the judge, with no judge model configured
    gate_case = gate.find("testcase/failure")
    assert gate_case is not None and "onboarding: pass rate fell" in gate_case.get("message", "")


def test_the_terminal_report_shows_the_table_the_changes_and_the_gate(report: Report) -> None:
    console = Console(width=200, record=True)
    terminal.render(report, console)
    text = console.export_text()
    assert f"candidate: prompt {WORSE}, fake-heuristic vs baseline: prompt v1" in text
    assert "onboarding" in text and "all suites" in text
    assert "regressed (" in text
    assert "onboarding/plain-welcome: mentions_fact" in text
    assert "assertion(s) skipped, not passed" in text
    assert "gate failed (max drop 2 points, floor 0%)" in text


def test_the_terminal_report_says_how_many_more_it_left_out(report: Report) -> None:
    regressed = report.comparison.changed("regressed")
    assert len(regressed) >= 2
    console = Console(width=200, record=True)
    terminal.render(report, console, shown=1)
    text = console.export_text()
    assert f"regressed ({len(regressed)}):\n  {regressed[0].key}: " in text
    assert regressed[1].key + ":" not in text.split("regressed (")[1].split("fixed")[0]
    assert f"  and {len(regressed) - 1} more (every case is in --html and --json)" in text
    console = Console(width=200, record=True)
    terminal.render(report, console, shown=len(regressed))
    assert f"and {len(regressed) - len(regressed)} more" not in console.export_text()


def test_every_figure_from_the_stand_in_model_is_labelled_simulated(report: Report) -> None:
    """The fake's tokens come from a length formula: no report shows them as measured."""
    for totals in (report.comparison.candidate[ALL], (report.comparison.baseline or {})[ALL]):
        assert totals.simulated_calls == totals.model_calls > 0
        assert totals.figures == "simulated"
    console = Console(width=250, record=True)
    terminal.render(report, console)
    text = console.export_text()
    assert "simulated (a stand-in model; nothing billed)" in text and "$0.0" in text
    assert " spent" not in text.split("\n")[1]  # the headline: nothing was spent
    row = next(line for line in text.splitlines() if "onboarding" in line and "│" in line)
    assert row.count("simulated") == 6  # cost, tokens and latency, on both sides
    assert "answered by a stand-in model, not a provider" in text
    data = json_report.to_json(report)
    assert data["suites"]["onboarding"]["candidate"]["figures"] == "simulated"
    calls = [c for case in data["cases"] for c in case["candidate"]["usage"]["calls"]]
    assert calls and all(c["simulated"] for c in calls)
    page = html.to_html(report)
    assert "Cost per 1,000 emails (USD), simulated: a stand-in model answered" in page
    assert page.count("(simulated: a stand-in model answered)") == 2 * len(report.comparison.pairs)
    assert "ms model time<" not in page  # every case's usage line carries the label


def test_figures_from_a_real_endpoint_are_not_labelled() -> None:
    real = Totals(cases=1, model_calls=2, prompt_tokens=10)
    assert real.figures == "measured" and figure(real, "$0.1") == "$0.1"
    mixed = Totals(cases=1, model_calls=2, simulated_calls=1)
    assert figure(mixed, "$0.1") == "$0.1 partly simulated"
    assert Totals().figures == "none"


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not CHROMIUM.exists():
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=str(CHROMIUM), args=["--no-sandbox"])
        yield launched
        launched.close()


def test_the_html_report_renders_both_emails_side_by_side(
    report: Report, browser: Browser, tmp_path: Path
) -> None:
    page_file = tmp_path / "report.html"
    page_file.write_text(html.to_html(report), encoding="utf-8")
    assert "http://" not in page_file.read_text().split("<iframe")[0]  # nothing fetched
    page = browser.new_page(viewport={"width": 1400, "height": 1600})
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(page_file.as_uri())
    case = page.locator("#case-onboarding-plain-welcome")
    frames = case.locator("iframe")
    assert frames.count() == 2
    baseline, candidate = (frames.nth(i).content_frame for i in range(2))
    assert baseline.get_by_text("Hi Dana,").is_visible()
    assert candidate.get_by_text("Hi there,").is_visible()
    assert candidate.get_by_role("link", name="Open the quickstart").is_visible()
    left, right = (_box(frames.nth(i)) for i in range(2))
    assert left["height"] > 300  # sized to the email, not collapsed
    assert left["x"] < right["x"] and abs(left["y"] - right["y"]) < 2  # side by side
    assert "Gate failed" in page.locator("#gate").inner_text()
    assert case.locator("del", has_text="Dana").count() >= 1  # the diff: the name is gone
    assert case.locator("ins", has_text="there").count() == 1
    assert page.locator("svg").count() == 2  # pass rate and cost charts
    assert [u for u in requests if not u.startswith(("file:", "about:", "data:"))] == []
    case.scroll_into_view_if_needed()
    page.screenshot(path=str(tmp_path / "report.png"))
    assert (tmp_path / "report.png").stat().st_size > 10_000


def _box(element: Locator) -> FloatRect:
    box = element.bounding_box()
    assert box is not None, "not displayed"
    return box


def test_only_our_own_stand_ins_count_as_simulated() -> None:
    assert all(is_stand_in(m) for m in ("dripline-local-heuristic", "fake-heuristic"))
    assert not any(is_stand_in(m) for m in ("gpt-4o-mini-2024-07-18", "llama3.1:8b", ""))
