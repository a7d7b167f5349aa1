"""What a reviewer compares: a draft against the fallback copy or the revision before it (a
word diff), and the bandit's pick against the variants it beat, read from the logged reason."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import Any

from markupsafe import Markup, escape

_TOKENS = re.compile(r"\s+|[^\s]+")


def copy_text(copy: dict[str, Any]) -> str:
    """A draft's (or a fallback's) words as a reader meets them: subject, preheader, body."""
    paragraphs = copy.get("paragraphs") or [copy.get("body", "")]
    head = f"Subject: {copy.get('subject', '')}\n"
    if copy.get("preheader"):
        head += f"Preheader: {copy['preheader']}\n"
    return head + "\n" + "\n\n".join(str(p) for p in paragraphs)


def word_diff(before: str, after: str) -> Markup:
    """``after`` with the words it adds in <ins> and those it drops from ``before`` in <del>."""
    old, new = _TOKENS.findall(before), _TOKENS.findall(after)
    out: list[str] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op == "equal":
            out.append(str(escape("".join(new[b1:b2]))))
            continue
        if a2 > a1:
            out.append(f"<del>{escape(''.join(old[a1:a2]))}</del>")
        if b2 > b1:
            out.append(f"<ins>{escape(''.join(new[b1:b2]))}</ins>")
    return Markup("".join(out))


@dataclass(frozen=True)
class Arm:
    id: str
    draw: float
    boost: float | None  # the contact's topic affinity multiplier, when it changed the draw
    sent: int
    clicked: int
    replied: int
    converted: int


@dataclass(frozen=True)
class Pick:
    goal: str
    winner: Arm
    others: list[Arm]


_PICK = re.compile(r"^thompson sampling on (\w+): (.+?) beat (.+)$")
_ARM = re.compile(
    r"^(\S+) ([\d.]+)(?: x([\d.]+) affinity)? \((\d+) sent, (\d+) clicked, "
    r"(\d+) replied, (\d+) converted\)$"
)


def read_pick(reason: str | None) -> Pick | None:
    """The bandit's logged reason as a table to read; None when it is not a sampled pick."""
    match = _PICK.match(reason or "")
    if not match:
        return None
    winner = _arm(match.group(2))
    others = [_arm(part) for part in match.group(3).split("; ")]
    if winner is None or any(o is None for o in others):
        return None
    return Pick(match.group(1), winner, [o for o in others if o is not None])


def _arm(text: str) -> Arm | None:
    found = _ARM.match(text.strip())
    if not found:
        return None
    name, draw, boost, *counts = found.groups()
    sent, clicked, replied, converted = (int(c) for c in counts)
    return Arm(
        name, float(draw), float(boost) if boost else None, sent, clicked, replied, converted
    )
