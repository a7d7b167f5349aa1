"""JUnit XML for CI: the candidate's cases, one testcase per case and assertion, and the gate.

A failed assertion is a <failure>, a skipped one (no judge configured) a <skipped> with the
reason, and a case that could not be scored an <error>. The last testsuite holds one testcase,
the regression gate, so a CI view that only counts failures still sees a gate that failed.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

from evals.compare import Pair
from evals.reports.model import Report

_COUNTED = (("failure", "failures"), ("skipped", "skipped"), ("error", "errors"))


def to_junit(report: Report) -> str:
    root = ET.Element("testsuites", name="dripline eval")
    for suite in report.comparison.suites:
        pairs = [p for p in report.comparison.pairs if p.candidate.case.suite == suite]
        _suite(root, suite, pairs)
    _gate(root, report)
    _count(root)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def _suite(root: ET.Element, name: str, pairs: list[Pair]) -> None:
    element = ET.SubElement(root, "testsuite", name=name)
    for pair in pairs:
        result = pair.candidate
        classname = f"{name}.{result.case.id}"
        if result.error is not None:
            case = ET.SubElement(element, "testcase", classname=classname, name="run")
            ET.SubElement(case, "error", message=result.error)
            continue
        for expectation, verdict in result.verdicts:
            case = ET.SubElement(element, "testcase", classname=classname, name=expectation.label)
            case.set("time", f"{result.seconds:.3f}")
            if verdict.status != "pass":
                _outcome(case, pair, verdict.status, verdict.message)


def _outcome(case: ET.Element, pair: Pair, status: str, message: str) -> None:
    if status == "skip":
        ET.SubElement(case, "skipped", message=message)
        return
    failure = ET.SubElement(case, "failure", message=message)
    draft = pair.candidate.draft
    failure.text = f"{pair.change} against the baseline; subject: {draft and draft.subject}"


def _gate(root: ET.Element, report: Report) -> None:
    element = ET.SubElement(root, "testsuite", name="regression-gate")
    policy = report.verdict.policy
    name = f"max drop {policy.max_drop:g} points, floor {policy.min_pass_rate:g}%"
    case = ET.SubElement(element, "testcase", classname="regression-gate", name=name)
    if not report.verdict.passed:
        failure = ET.SubElement(case, "failure", message="; ".join(report.verdict.reasons))
        failure.text = "\n".join(report.verdict.reasons)


def _count(root: ET.Element) -> None:
    for suite in root.iter("testsuite"):
        cases = suite.findall("testcase")
        suite.set("tests", str(len(cases)))
        for kind, attribute in _COUNTED:
            suite.set(attribute, str(sum(1 for c in cases if c.find(kind) is not None)))
