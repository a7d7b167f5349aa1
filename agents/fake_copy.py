"""How the stand-in model turns a step's brief into copy, so each step reads like itself.

A brief is written to a copywriter ("Welcome them to their trial and point them to the
quickstart. Keep it short."): the stand-in keeps the sentences that say what to tell the
recipient, turns them to the second person and rewrites the instruction's verb as a statement
("Welcome to your trial.", "A good place to start: the quickstart."). It drops what is context
for the writer ("They have not opened it yet.") or style ("Keep it short.", "No discounts."),
since saying those to the recipient would be wrong. Rules, not a language model: a brief
it cannot read leaves it with a plain line, and every draft says it came from a stand-in.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

_PRONOUNS = {
    "the trial user": "you",
    "the user": "you",
    "they": "you",
    "them": "you",
    "their": "your",
    "theirs": "yours",
    "themselves": "yourself",
}
_PRONOUN_RE = re.compile(r"\b(" + "|".join(map(re.escape, _PRONOUNS)) + r")\b", re.IGNORECASE)
# Said to the writer, not the recipient: how to write, what to leave out, the recipient's state.
_DIRECTIVE = re.compile(
    r"^(?:they|their|keep|no|one clear|one link|ask for a reply|be|make it|avoid|use|"
    r"don't|do not|write|mention no)\b",
    re.IGNORECASE,
)
_ASIDES = re.compile(
    r"\([^)]*\)|,?\s*\bbriefly\b,?|,\s*without guilt,?|,?\s*in the angle given|"
    r",?\s*in (?:one|two|three)(?: or (?:two|three|four))? sentences?|"
    r",?\s*each in (?:one|two)(?: or (?:two|three))? sentences?|"
    r",?\s*with one sentence each|,?\s*linking to the \w+",
    re.IGNORECASE,
)
_ORDINALS = ("First", "Second", "Third", "Fourth")


@dataclass
class Composed:
    """What the brief gave: statements, items listed (tips), and a short subject phrase."""

    lines: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)
    subject: str = ""


def compose(brief: str) -> Composed:
    found = Composed()
    for sentence in _sentences(brief):
        if _DIRECTIVE.match(sentence):
            continue
        text = _PRONOUN_RE.sub(lambda m: _swap(m.group(0)), _ASIDES.sub("", sentence))
        for clause in _clauses(text.split(";")[0]):
            _rewrite(clause, found)
    return found


def _sentences(brief: str) -> list[str]:
    text = " ".join(brief.split())
    return [s.strip() for s in re.split(r"(?<=[.!?])\s+", text) if s.strip()]


def _swap(word: str) -> str:
    new = _PRONOUNS[word.lower()]
    return new[0].upper() + new[1:] if word[0].isupper() else new


def _clauses(sentence: str) -> list[str]:
    """ "Welcome you to X and point you to Y" is two instructions: split before each verb."""
    verbs = "|".join(_VERBS)
    parts = re.split(rf"(?:,?\s+and\s+|,\s+)(?=(?:{verbs})\b)", sentence.rstrip(".!? "), flags=re.I)
    return [p.strip(" ,") for p in parts if p.strip(" ,")]


def _rewrite(clause: str, found: Composed) -> None:
    verb, _, rest = clause.partition(" ")
    action = _VERBS.get(verb.strip(",").lower())
    if action is not None and rest:
        action(rest.strip(), found)


def _welcome(rest: str, found: Composed) -> None:
    place = re.sub(r"^you\s+", "", rest)
    _say(found, f"Welcome {place}.", f"Welcome {shorten(place)}")


def _point(rest: str, found: Composed) -> None:
    target = re.sub(r"^(?:you\s+)?(?:to\s+)?", "", rest)
    _say(found, f"A good place to start: {target}.", _cap(shorten(target)))


def _remind(rest: str, found: Composed) -> None:
    fact = re.sub(r"^(?:you\s+)?(?:that\s+)?", "", rest)
    _say(found, f"A quick reminder: {fact}.", f"A reminder: {shorten(fact)}")


def _offer(rest: str, found: Composed) -> None:
    if rest.startswith("to "):
        _say(found, f"We can {rest[3:]}.", _cap(shorten(rest[3:])))
    elif rest.startswith("help by reply"):
        _say(found, "If you would like a hand, reply to this email and we will help.", "")
    else:
        _say(found, f"We would like to offer {rest}.", _cap(shorten(rest)))


def _share(rest: str, found: Composed) -> None:
    head, colon, listed = rest.partition(":")
    if not colon:
        _say(found, f"Here is {rest}.", _cap(shorten(rest)))
        return
    items = [i.strip() for i in re.split(r",\s*(?:and\s+)?|\s+and\s+", listed) if i.strip()]
    _say(found, f"Here are {head.strip()}.", _cap(f"{head.strip()}: {', '.join(items)}"))
    found.items += [f"{_ORDINALS[n]}, {item}." for n, item in enumerate(items[:4])]


def _ask(rest: str, found: Composed) -> None:
    _say(found, f"We wanted to ask {rest}.", "A quick question")


def _tell(lead: str) -> Callable[[str, Composed], None]:
    def rewrite(rest: str, found: Composed) -> None:
        body = rest.partition(":")[2].strip() if ":" in rest else rest
        _say(found, f"{lead}{body}.", _cap(shorten(body)))

    return rewrite


def _follow(rest: str, found: Composed) -> None:
    about = rest.removeprefix("up ")
    _say(found, f"A follow-up {about}.", f"A follow-up {shorten(about)}")


def _invite(rest: str, found: Composed) -> None:
    where = re.sub(r"^you\s+", "", rest)
    _say(found, f"You are welcome {where}.", f"Welcome {shorten(where)}")


def _say(found: Composed, line: str, subject: str) -> None:
    if line:
        found.lines.append(_cap(line))
    if subject and not found.subject:
        found.subject = subject


def shorten(text: str, room: int = 46) -> str:
    """A subject-sized phrase: up to the first comma, cut before a preposition to fit."""
    phrase = re.split(r",|\s+which\s+|\s+to answer\b", text)[0].strip()
    while len(phrase) > room:
        cut = [m.start() for m in re.finditer(r"\s(?:in|with|to|for|on|that|and|by)\s", phrase)]
        shorter = [c for c in cut if 0 < c <= room]
        phrase = phrase[: shorter[-1]] if shorter else phrase[:room].rsplit(" ", 1)[0]
    return phrase


def _cap(text: str) -> str:
    return text[:1].upper() + text[1:]


_VERBS: dict[str, Callable[[str, Composed], None]] = {
    "welcome": _welcome,
    "point": _point,
    "remind": _remind,
    "offer": _offer,
    "share": _share,
    "ask": _ask,
    "thank": lambda rest, found: _say(found, "Thank you.", "Thank you"),
    "connect": _tell("We can connect "),
    "mention": _tell("Something new: "),
    "explain": _tell("In short, about "),
    "summarise": _tell("In short: "),
    "summarize": _tell("In short: "),
    "follow": _follow,
    "make": lambda rest, found: None,  # "make replying easy": how to write, not what to say
    "invite": _invite,
}
