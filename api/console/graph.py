"""A sequence definition drawn as a graph: the steps in a column in their list order, the
fall-through to the next step as a short arrow, every jump (branch, choose, goto) as an arc
in a lane of its own on the right, so no two arcs overlap however the steps cross-link."""

from __future__ import annotations

from dataclasses import dataclass, replace

from sequences.definitions.document import (
    BranchStep,
    ChooseStep,
    EmailStep,
    ExitStep,
    GotoStep,
    SequenceDefinition,
    Step,
    WaitStep,
)

NODE_X = 16
NODE_WIDTH = 340
NODE_HEIGHT = 72
ROW = 104  # node height plus the gap an arrow needs
LANE = 18
TOP = 16
CHAR = 7  # width of a label character at the graph's 11.5 px, roughly
LABEL_ROW = 16
DONE = "(completed)"


@dataclass(frozen=True)
class Node:
    id: str
    kind: str  # email | wait | branch | choose | goto | exit | done
    title: str
    detail: str
    y: int

    @property
    def middle(self) -> int:
        return self.y + NODE_HEIGHT // 2


@dataclass(frozen=True)
class Edge:
    source: str
    target: str
    label: str
    path: str  # SVG path data
    jump: bool
    label_x: int = 0  # where the label's text starts (its baseline), beside the line
    label_y: int = 0

    @property
    def label_width(self) -> int:
        return len(self.label) * CHAR + 8


@dataclass(frozen=True)
class Graph:
    nodes: list[Node]
    edges: list[Edge]
    width: int
    height: int


def layout(defn: SequenceDefinition) -> Graph:
    steps = list(defn.steps)
    nodes = [_node(step, TOP + i * ROW) for i, step in enumerate(steps)]
    if isinstance(steps[-1], EmailStep | WaitStep):  # the last step falls through to the end
        nodes.append(
            Node(DONE, "done", "completed", "the enrollment ends here", TOP + len(steps) * ROW)
        )
    where = {node.id: node for node in nodes}
    edges: list[Edge] = []
    lanes = 0
    for index, step in enumerate(steps):
        following = nodes[index + 1].id if index + 1 < len(nodes) else None
        for target, label in _targets(step, following):
            if target == following:
                edges.append(_straight(where[step.id], where[target], label))
            else:
                edges.append(_arc(where[step.id], where[target], label, lanes))
                lanes += 1
    edges = _unclash([e for e in edges if e.jump]) + [e for e in edges if not e.jump]
    width = NODE_X + NODE_WIDTH + 24 + lanes * LANE + 8
    width = max([width] + [e.label_x + e.label_width for e in edges if e.label])
    return Graph(nodes, edges, width, TOP + len(nodes) * ROW - (ROW - NODE_HEIGHT) + TOP)


def _unclash(jumps: list[Edge]) -> list[Edge]:
    """Move arc labels down (within their arc) until no two overlap."""
    placed: list[Edge] = []
    for edge in jumps:
        y = edge.label_y
        while any(_overlap(edge, y, other) for other in placed if other.label):
            y += LABEL_ROW
        placed.append(replace(edge, label_y=y))
    return placed


def _overlap(edge: Edge, y: int, other: Edge) -> bool:
    apart = edge.label_x >= other.label_x + other.label_width or (
        other.label_x >= edge.label_x + edge.label_width
    )
    return bool(edge.label) and not apart and abs(y - other.label_y) < LABEL_ROW


def _targets(step: Step, following: str | None) -> list[tuple[str, str]]:
    if isinstance(step, BranchStep):
        return [(r.target, f"if {r.if_}" if r.if_ else "else") for r in step.branch]
    if isinstance(step, ChooseStep):
        return [(target, "bandit") for target in step.choose]
    if isinstance(step, GotoStep):
        return [(step.goto, "goto")]
    if isinstance(step, ExitStep) or following is None:
        return []
    return [(following, "")]


def _node(step: Step, y: int) -> Node:
    if isinstance(step, EmailStep):
        spec = step.email
        variants = f"  ({len(spec.variants)} variants)" if spec.variants else ""
        return Node(step.id, "email", step.id + variants, _clip(spec.brief), y)
    if isinstance(step, WaitStep):
        until = f", or until {' / '.join(step.wait.until)}" if step.wait.until else ""
        return Node(step.id, "wait", step.id, f"wait {step.wait.for_}{until}", y)
    if isinstance(step, BranchStep):
        rules = "; ".join(f"{r.if_} → {r.goto}" for r in step.branch if r.if_)
        return Node(
            step.id, "branch", step.id, _clip(f"{rules}; else → {step.branch[-1].target}"), y
        )
    if isinstance(step, ChooseStep):
        return Node(step.id, "choose", step.id, _clip("bandit picks: " + ", ".join(step.choose)), y)
    if isinstance(step, GotoStep):
        return Node(step.id, "goto", step.id, f"go to {step.goto}", y)
    reason = step.exit.reason or "exit"
    return Node(step.id, "exit", step.id, _clip(reason), y)


def _clip(text: str, limit: int = 50) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def _straight(source: Node, target: Node, label: str) -> Edge:
    x = NODE_X + NODE_WIDTH // 2
    path = f"M{x},{source.y + NODE_HEIGHT} V{target.y - 2}"
    middle = (source.y + NODE_HEIGHT + target.y) // 2 + 4
    return Edge(source.id, target.id, _clip(label, 28), path, False, x + 8, middle)


def _arc(source: Node, target: Node, label: str, lane: int) -> Edge:
    right = NODE_X + NODE_WIDTH
    x = right + 24 + lane * LANE
    y1, y2 = source.middle, target.middle
    bend = 8 if y2 > y1 else -8
    path = (
        f"M{right},{y1} H{x - 8} Q{x},{y1} {x},{y1 + bend} "
        f"V{y2 - bend} Q{x},{y2} {x - 8},{y2} H{right + 2}"
    )
    # The label sits beside the arc's vertical run, a third of the way from its source.
    at = y1 + (y2 - y1) // 3 + 4
    return Edge(source.id, target.id, _clip(label, 28), path, True, x + 6, at)
