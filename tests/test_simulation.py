"""The bandit learns on the real engine: a seeded simulation through the public endpoints."""

from __future__ import annotations

import math
from pathlib import Path

from typer.testing import CliRunner

from api.cli import app
from api.simulate import SimConfig, simulate
from sequences.definitions.loading import parse_definition
from sequences.simulation import Person, Rates, Truth, people, react, seeded_truth

SEQUENCE = """key: sim
name: Simulated
sender: {from: "Dana <dana@acme.test>"}
adapt: {goal: engagement, affinity_weight: 10.0}
steps:
  - id: opener
    email:
      brief: opener
      cta: {text: Look, url: "https://acme.test/tour"}
      fallback: {subject: "Hello", body: "B."}
      variants:
        - {id: pricing, angle: money, topics: [pricing]}
        - {id: integrations, angle: tools, topics: [integrations]}
  - id: pause
    wait: {for: 60d, until: [clicked]}  # only clickers reach the choose step in the run
  - id: next
    choose: [tip-pricing, tip-integrations, tip-security]
  - id: tip-pricing
    email: {brief: p, topics: [pricing], cta: {text: Go, url: "https://acme.test/p"},
            fallback: {subject: "P", body: "B."}}
  - id: end-p
    exit: {}
  - id: tip-integrations
    email: {brief: i, topics: [integrations], cta: {text: Go, url: "https://acme.test/i"},
            fallback: {subject: "I", body: "B."}}
  - id: end-i
    exit: {}
  - id: tip-security
    email: {brief: s, topics: [security], cta: {text: Go, url: "https://acme.test/s"},
            fallback: {subject: "S", body: "B."}}
"""
# The pricing opener converts at three times the integrations one; the tips are alike.
TRUTH = Truth(
    rates={
        "opener/pricing": Rates(click=0.5, convert=0.24),
        "opener/integrations": Rates(click=0.5, convert=0.08),
        "tip-pricing": Rates(click=0.4),
        "tip-integrations": Rates(click=0.4),
        "tip-security": Rates(click=0.4),
    },
    interest_boost=1.5,
)


async def test_the_better_variant_wins_the_traffic_and_affinity_steers_choose(
    tmp_path: Path,
) -> None:
    defn = parse_definition(SEQUENCE)
    # Arrivals are spread thin (about 19 a second) so that feedback, which takes a second or two
    # to come back on a busy machine, reaches the bandit between one arrival and the next.
    config = SimConfig(
        contacts=180,
        days=40,
        seed=11,
        day_seconds=0.4,
        arrive_within=0.6,
        data_dir=tmp_path / "sim",
    )
    report = await simulate(defn, TRUTH, config)

    assert report.enrolled == 180
    sent = report.arms["opener/pricing"]["sends"] + report.arms["opener/integrations"]["sends"]
    assert sent >= 160
    early = report.share("opener", "early", "pricing")
    late = report.share("opener", "late", "pricing")
    # Most of the late traffic goes to the better variant (the early third starts from
    # nothing and may already lean its way: learning is quick at 3x).
    assert late > 0.6, (early, late, report.arms)
    assert report.arms["opener/pricing"]["sends"] > report.arms["opener/integrations"]["sends"]
    # Contacts who clicked one opener carry that topic's affinity into the choose step.
    hit, seen, k = report.matched["next"]
    assert k == 3 and seen >= 20
    # More often than chance (a third), by three standard errors: early decisions explore
    # unknown tips, so the affinity wins most but not all of them.
    chance = 1 / k
    assert hit / seen > chance + 3 * math.sqrt(chance * (1 - chance) / seen), (hit, seen)


def test_the_engagement_model_is_seeded_and_honours_interest() -> None:
    defn = parse_definition(SEQUENCE)
    crowd = people(400, ["pricing", "integrations"], seed=5)
    assert crowd == people(400, ["pricing", "integrations"], seed=5)
    assert {p.interest for p in crowd} == {"pricing", "integrations"}
    fans = [p for p in crowd if p.interest == "pricing"]
    others = [p for p in crowd if p.interest != "pricing"]

    def clicks(group: list[Person]) -> float:
        hits = [react(TRUTH, p, "tip-pricing", None, ("pricing",), 1).click for p in group]
        return sum(hits) / len(hits)

    assert clicks(fans) > clicks(others) * 1.2
    truth = seeded_truth(defn, 3)
    assert truth == seeded_truth(defn, 3)
    assert set(truth.rates) == {
        "opener",
        "opener/pricing",
        "opener/integrations",
        "tip-pricing",
        "tip-integrations",
        "tip-security",
    }


def test_bad_simulation_input_is_named_and_exits_2(tmp_path: Path) -> None:
    sequence = tmp_path / "sim.yaml"
    sequence.write_text(SEQUENCE)
    cases = {
        "rates: {opener/pricing: {click: 1.5}}": "rates.opener/pricing.click: Input should be",
        "rates: {opener/nope: {click: 0.1}}": "no email step or variant named 'opener/nope'",
        "rates: [": "truth.yaml:",
    }
    for text, message in cases.items():
        truth = tmp_path / "truth.yaml"
        truth.write_text(text)
        result = CliRunner().invoke(app, ["simulate", str(sequence), "--truth", str(truth)])
        assert result.exit_code == 2 and message in result.output, result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text(SEQUENCE.replace("choose: [tip-pricing", "choose: [tip-missing"))
    result = CliRunner().invoke(app, ["simulate", str(broken)])
    assert (
        result.exit_code == 2 and "steps.2.choose.0: no step named 'tip-missing'" in result.output
    )
