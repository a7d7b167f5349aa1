"""The console's pure parts: the sequence graph's layout, the bandit's split, email framing,
the word diff, the bandit's reason as a table, and timestamps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from agents.bandit import ArmStats, Candidate, split, thompson
from api.console.compare import read_pick, word_diff
from api.console.framing import inert
from api.console.graph import DONE, layout
from api.console.web import local, relative, stamp
from sequences.definitions.loading import parse_definition

EXAMPLES = Path(__file__).parent.parent / "sequences" / "examples"

BRANCHING = b"""
key: branching
name: Branching
sender: {from: "Dana <dana@acme.test>"}
steps:
  - id: hello
    email:
      brief: Say hello.
      fallback: {subject: Hello, body: "Hi there, hello."}
  - id: pause
    wait: {for: 2d, until: [clicked]}
  - id: fork
    branch:
      - {if: "score > 3", goto: keen}
      - {else: nudge}
  - id: nudge
    email:
      brief: A nudge.
      fallback: {subject: Nudge, body: "Hi there, a nudge."}
  - id: stop
    exit: {reason: not interested}
  - id: keen
    email:
      brief: More for keen readers.
      fallback: {subject: More, body: "Hi there, more."}
"""


def test_every_step_is_a_node_and_every_jump_an_arc_in_its_own_lane() -> None:
    graph = layout(parse_definition(BRANCHING))
    assert [n.id for n in graph.nodes] == ["hello", "pause", "fork", "nudge", "stop", "keen", DONE]
    edges = {(e.source, e.target): e for e in graph.edges}
    assert set(edges) == {
        ("hello", "pause"),
        ("pause", "fork"),
        ("fork", "keen"),
        ("fork", "nudge"),
        ("nudge", "stop"),
        ("keen", DONE),
    }
    assert edges[("fork", "keen")].jump and edges[("fork", "keen")].label == "if score > 3"
    assert not edges[("fork", "nudge")].jump  # the else is the next step: a straight arrow
    assert not any(e.source == "stop" for e in graph.edges)  # an exit leads nowhere
    lanes = [e.path.split(" H")[1].split(" ")[0] for e in graph.edges if e.jump]
    assert len(lanes) == len(set(lanes))  # no two arcs share a lane
    fork = next(n for n in graph.nodes if n.id == "fork")
    assert fork.detail == "score > 3 → keen; else → nudge"
    assert graph.height > graph.nodes[-1].y and graph.width > 356


def test_the_adaptive_example_draws_the_choose_and_its_gotos() -> None:
    defn = parse_definition((EXAMPLES / "adaptive-trial.yaml").read_bytes())
    graph = layout(defn)
    jumps = {(e.source, e.target) for e in graph.edges if e.jump}
    assert ("next-tip", "tip-security") in jumps and ("after-pricing", "settle") in jumps
    assert DONE not in {n.id for n in graph.nodes}  # it ends on an exit step
    assert all(len(n.detail) <= 70 for n in graph.nodes)


def test_split_favours_the_better_arm_and_repeats_with_the_seed() -> None:
    arms = [
        Candidate(id="strong", stats=ArmStats(sends=400, clicks=80, replies=10)),
        Candidate(id="weak", stats=ArmStats(sends=400, clicks=20, replies=1)),
        Candidate(id="new"),
    ]
    shares = split(arms, seed=3)
    assert abs(sum(shares.values()) - 1.0) < 1e-9
    assert shares["strong"] > 0.5 and shares["weak"] < 0.05
    assert 0.0 < shares["new"] < shares["strong"]  # an unseen arm still gets explored
    assert split(arms, seed=3) == shares
    even = split([Candidate(id="a"), Candidate(id="b")], draws=4000, seed=1)
    assert abs(even["a"] - 0.5) < 0.05
    assert split([]) == {}


def test_framing_removes_the_open_pixel_and_makes_links_inert() -> None:
    html = (
        '<html><head><title>x</title></head><body><a href="https://t.test/t/c/abc">go</a>'
        '<img src="https://t.test/t/o/abc.gif" width="1" height="1" alt=""></body></html>'
    )
    framed = inert(html)
    assert "/t/o/" not in framed and "/t/c/abc" in framed
    assert framed.index('<base target="_blank">') == framed.index("<head>") + len("<head>")
    assert inert("<p>no head</p>").startswith('<base target="_blank">')


def test_a_word_diff_marks_what_an_edit_adds_and_drops_and_escapes_both() -> None:
    diff = word_diff(
        "Hi there,\n\nThe quickstart is ready.", "Hi <b>Ana</b>,\n\nThe quickstart is ready."
    )
    assert (
        str(diff)
        == "Hi <del>there,</del><ins>&lt;b&gt;Ana&lt;/b&gt;,</ins>\n\nThe quickstart is ready."
    )


def test_the_bandits_logged_reason_reads_as_a_table_and_other_reasons_do_not() -> None:
    choice = thompson(
        [
            Candidate(id="warm", stats=ArmStats(sends=10, clicks=2)),
            Candidate(id="brief", topics=("pricing",), stats=ArmStats(sends=5)),
        ],
        {"pricing": 1.0},
        seed=3,
    )
    pick = read_pick(choice.reason)
    assert pick is not None and pick.winner.id == choice.id and pick.goal == "engagement"
    arms = {arm.id: arm for arm in [pick.winner, *pick.others]}
    assert (arms["warm"].sent, arms["warm"].clicked, arms["brief"].sent) == (10, 2, 5)
    assert arms["brief"].boost is not None and arms["warm"].boost is None
    assert (
        read_pick("variant warm (a warm welcome): the engine's split for this enrollment") is None
    )


def test_timestamps_carry_their_zone_and_the_recipients_clock() -> None:
    moment = datetime(2026, 11, 13, 23, 44, tzinfo=UTC)
    assert stamp(moment) == "2026-11-13 23:44 UTC" == stamp(moment.isoformat())
    assert local(moment, "Europe/Paris") == "2026-11-14 00:44 Europe/Paris"  # the next day there
    assert local(moment, "America/New_York") == "18:44 America/New_York"
    assert local(moment, None) == local(moment, "Not/AZone") == local(moment, "UTC") == ""
    shown = str(relative(moment, moment + timedelta(hours=3)))
    assert (
        shown
        == '<time datetime="2026-11-13T23:44:00+00:00" title="2026-11-13 23:44 UTC">3 h ago</time>'
    )


def test_jump_labels_sit_beside_their_arcs_without_overlapping_and_fit_the_width() -> None:
    graph = layout(parse_definition(BRANCHING))
    labelled = [e for e in graph.edges if e.label]
    assert {e.label for e in labelled} >= {"if score > 3", "else"}
    for a in labelled:
        assert a.label_x + a.label_width <= graph.width
        for b in labelled:
            if a is not b and a.jump and b.jump:
                apart = (
                    a.label_x >= b.label_x + b.label_width or b.label_x >= a.label_x + a.label_width
                )
                assert apart or abs(a.label_y - b.label_y) >= 16
