"""Thompson sampling over Beta posteriors, and the contact-score arithmetic (pure functions)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest

from agents.bandit import (
    ArmStats,
    Candidate,
    affinity_boost,
    pooled_prior,
    replay,
    seed_for,
    thompson,
)
from sequences.signals.scores import ContactScore, Decay, link_topic, weight
from sequences.store.events import Incoming

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def picks(candidates: list[Candidate], affinities: dict[str, float], n: int = 2000) -> Counter[str]:
    return Counter(thompson(candidates, affinities, seed=s).id for s in range(n))


def test_posterior_counts_unique_hits_against_sends() -> None:
    stats = ArmStats(sends=10, clicks=3, conversions=12)  # more hits than sends: capped
    assert stats.posterior("clicks") == (4, 8)
    assert stats.posterior("conversions") == (11, 1)


def test_the_arm_with_the_better_record_is_sampled_most() -> None:
    good = Candidate(id="good", stats=ArmStats(sends=200, clicks=60, conversions=15))
    poor = Candidate(id="poor", stats=ArmStats(sends=200, clicks=20, conversions=5))
    counts = picks([poor, good], {})
    assert counts["good"] > 0.95 * sum(counts.values())


def test_unknown_arms_are_explored_about_evenly() -> None:
    counts = picks([Candidate(id="a"), Candidate(id="b")], {})
    assert 0.4 < counts["a"] / 2000 < 0.6


def test_an_arm_with_few_sends_still_gets_explored() -> None:
    known = Candidate(id="known", stats=ArmStats(sends=500, clicks=50))
    new = Candidate(id="new", stats=ArmStats(sends=2, clicks=0))
    counts = picks([known, new], {})
    assert 0.02 < counts["new"] / 2000 < 0.6


def test_goal_decides_what_counts() -> None:
    clicky = Candidate(id="clicky", stats=ArmStats(sends=300, clicks=90, conversions=3))
    buying = Candidate(id="buying", stats=ArmStats(sends=300, clicks=30, conversions=30))
    by_clicks = Counter(
        thompson([clicky, buying], {}, seed=s, goal="clicks").id for s in range(500)
    )
    by_sales = Counter(
        thompson([clicky, buying], {}, seed=s, goal="conversions").id for s in range(500)
    )
    assert by_clicks["clicky"] > 450 and by_sales["buying"] > 450


def test_affinity_steers_towards_the_matching_topic() -> None:
    arms = [Candidate(id=t, topics=(t,)) for t in ("pricing", "integrations", "security")]
    counts = picks(arms, {"pricing": 3.0})
    assert counts["pricing"] / 2000 > 0.5  # chance would be a third
    assert affinity_boost(("pricing",), {"pricing": 3.0}, 1.0) == pytest.approx(1.75)
    assert affinity_boost(("security",), {"pricing": 3.0}, 1.0) == 1.0
    assert affinity_boost(("pricing",), {"pricing": 3.0}, 0.0) == 1.0


def test_a_logged_choice_replays_exactly() -> None:
    arms = [
        Candidate(id="a", topics=("x",), stats=ArmStats(sends=40, clicks=8)),
        Candidate(id="b", stats=ArmStats(sends=40, clicks=9, replies=2)),
    ]
    choice = thompson(arms, {"x": 1.0}, seed=seed_for(3, "enr_1", "step"), affinity_weight=2.0)
    later = [a.model_copy(update={"stats": ArmStats(sends=999, clicks=1)}) for a in arms]
    again = replay(choice, later)  # today's counts differ; the logged ones rule
    assert again == choice
    assert choice.reason.startswith(f"thompson sampling on engagement: {choice.id} ")
    assert set(choice.samples) == {"a", "b"} and choice.boosts["a"] == pytest.approx(1.0 + 2 / 2)


def test_seeds_differ_per_decision_and_repeat_per_input() -> None:
    assert seed_for(0, "e1", "s") == seed_for(0, "e1", "s")
    assert len({seed_for(0, f"e{i}", "s") for i in range(100)}) == 100
    assert seed_for(1, "e1", "s") != seed_for(0, "e1", "s")


def test_no_candidates_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least one candidate"):
        thompson([], {}, seed=1)


def event(kind: str, at: datetime, **properties: object) -> Incoming:
    return Incoming(
        type=kind,
        contact_id=1,
        email_key="a@example.com",
        occurred_at=at,
        properties=dict(properties),
    )


def test_weights_reward_clicks_and_replies_and_punish_bounces() -> None:
    assert (
        weight(event("replied", T0))
        > weight(event("clicked", T0))
        > weight(event("opened", T0))
        > 0
    )
    assert (
        weight(event("bounced", T0, bounce_type="hard"))
        < weight(event("bounced", T0, bounce_type="soft"))
        < 0
    )
    assert weight(event("complained", T0)) < weight(event("bounced", T0)) < 0
    assert weight(event("custom.thing", T0)) == 0


def test_scores_halve_every_half_life_in_sequence_time() -> None:
    decay = Decay(timedelta(days=14), speed=86400 / 10)  # one sequence day = 10 real seconds
    score = ContactScore()
    score.add(T0, 8.0, ("pricing",), decay)
    later = score.at(T0 + timedelta(seconds=140), decay)  # 14 sequence days
    assert later.score == pytest.approx(4.0) and later.affinities["pricing"] == pytest.approx(0.5)
    assert score.score == 8.0  # reading at a later time does not change the stored value


def test_a_late_event_counts_as_already_decayed() -> None:
    decay = Decay(timedelta(days=1))
    score = ContactScore()
    score.add(T0 + timedelta(days=1), 3.0, (), decay)
    score.add(T0, 4.0, ("docs",), decay)  # arrived late: it happened a day before the first
    assert score.as_of == T0 + timedelta(days=1)
    assert score.score == pytest.approx(3.0 + 2.0)
    assert score.affinities == {"docs": pytest.approx(0.5)} and score.events == 2


def test_faint_and_surplus_topics_are_dropped() -> None:
    decay = Decay(timedelta(days=1))
    score = ContactScore()
    score.add(T0, 0.0, ("old",), decay)
    for number in range(25):
        score.add(T0 + timedelta(days=8), 0.0, (f"t{number}",), decay)
    assert "old" not in score.affinities and len(score.affinities) == 20


def test_link_topic_is_the_first_path_segment() -> None:
    assert link_topic("https://acme.test/Pricing/plans?x=1") == ("pricing",)
    assert link_topic("https://acme.test/case_studies") == ("case-studies",)
    assert link_topic("https://acme.test/") == ()


def test_a_new_arm_starts_from_the_pooled_rate_not_from_fifty_percent() -> None:
    known = Candidate(id="known", stats=ArmStats(sends=98, clicks=9))
    new = Candidate(id="new")
    alpha, beta = pooled_prior([known, new], "clicks")
    assert alpha / (alpha + beta) == pytest.approx(0.1) and alpha + beta == 2.0
    assert pooled_prior([new], "conversions") == (1.0, 1.0)  # nothing known: uniform
