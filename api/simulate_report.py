"""What ``dripline simulate`` prints at the end (or when it is stopped): a table per email step
and variant against the true rates, the bandit's split over the run, and the choose steps."""

from __future__ import annotations

from api.simulate import PHASES, WARMED_UP, Report, SimConfig
from sequences.simulation import Truth

NO_LINK = "-"


def print_report(report: Report, truth: Truth, config: SimConfig) -> None:
    _header(report, config)
    print(
        f"\n{'email (step/variant)':<28}{'sent':>6}{'clicked':>9}{'rate':>7}{'base':>7}"
        f"{'replied':>9}{'converted':>11}{'rate':>7}{'base':>7}"
    )
    linkless = False
    for arm, c in sorted(report.arms.items()):
        step, _, variant = arm.partition("/")
        rates = truth.for_email(step, variant or None)
        sends = max(c["sends"], 1)
        clicked = f"{c['clicks']:>9}{c['clicks'] / sends:>7.1%}"
        if c["sends"] and not c["linked"]:  # nothing to click: a 0% would read as a failure
            clicked, linkless = f"{NO_LINK:>9}{NO_LINK:>7}", True
        print(
            f"{arm:<28}{c['sends']:>6}{clicked}"
            f"{rates.click:>7.1%}{c['replies']:>9}{c['conversions']:>11}"
            f"{c['conversions'] / sends:>7.1%}{rates.convert:>7.1%}"
        )
    print(
        f"(base: the true rate before interest; a contact interested in the email's topic "
        f"responds {truth.interest_boost:g}x as often)"
    )
    if linkless:
        print(f"({NO_LINK}: these emails have no link to click, so no click can be counted)")
    _split(report)
    _choices(report)


def _header(report: Report, config: SimConfig) -> None:
    if report.interrupted:
        print(
            f"\nStopped at sequence day {report.day:.1f} of {config.days:g}: the report so far "
            f"({report.enrolled} contacts enrolled, {report.seconds:.1f} s real)"
        )
        return
    print(
        f"\nSimulated {report.enrolled} contacts over {config.days:g} sequence days "
        f"({report.seconds:.1f} s real, one day = {config.day_seconds:g} s, seed {config.seed})"
    )


def _split(report: Report) -> None:
    for step, phases in report.phases.items():
        variants = sorted({v for counts in phases.values() for v in counts})
        print(f"\nShare of {step!r} sends by variant, over the run (the bandit at work):")
        for phase in PHASES:
            total = sum(phases[phase].values())
            shares = "  ".join(f"{v} {report.share(step, phase, v):>6.1%}" for v in variants)
            print(f"  {phase:<7} ({total:>4} sent)  {shares}")


def _choices(report: Report) -> None:
    for step, targets in report.choices.items():
        print(f"\nchoose {step!r}: " + ", ".join(f"{t} {n}" for t, n in targets.most_common()))
        hit, seen, k = report.matched.get(step, (0, 0, len(targets)))
        if seen:
            print(
                f"  once the candidates had {WARMED_UP} sends, contacts with an affinity for one "
                f"candidate's topic went there "
                f"{hit}/{seen} times ({hit / seen:.0%}; chance would be {1 / max(k, 1):.0%})"
            )
