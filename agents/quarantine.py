"""Contact fields are quarantined, not trusted: what a sign-up form typed is data, never copy.

A field value that holds a URL or domain, markup, template syntax, control characters,
instruction-like text, or more than :data:`FIELD_MAX_CHARS` characters (or whose name holds
any of these) is held back: fallback templates see it as missing (so their ``default(...)``
stands in) and the model never reads it.
Everything else reaches templates and prompts bounded (:data:`MAX_DEPTH` levels, the first
:data:`MAX_ITEMS` items of a list or mapping) with its whitespace folded. The reviewer reads the
raw value from the contact's row, escaped by the console.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

FIELD_MAX_CHARS = 120
MAX_KEY_CHARS = 60
MAX_DEPTH = 4
MAX_ITEMS = 50
# The contact's own address and zone are validated at the door: they are not form text.
TRUSTED_KEYS = frozenset({"email", "timezone"})

URL = re.compile(
    r"(?:https?://|www\.)[^\s<>()\"']+|"
    r"\b[a-z0-9-]+(?:\.[a-z0-9-]+)*\.(?:com|io|net|org|co|ai|app|dev|test|xyz|info|biz|me|us|"
    r"uk|de|fr|ly|gl|gg|sh|link|site|online|store|shop|ru|cn|tk|top|click|page)\b"
    r"(?:/[^\s<>()\"']*)?|"
    r"\b[a-z][a-z0-9+.-]*:(?://|[^\s]*@)",  # any scheme: ftp://, mailto:x@y, javascript://
    re.IGNORECASE,
)
INSTRUCTION = re.compile(
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(instructions?|rules?|prompts?|above|previous)\b|"
    r"\b(system prompt|you are now|you must now|new instructions?|act as|pretend to be)\b|"
    r"\b(assistant|system)\s*:|<\|[a-z_]+\|>|\b(write|say|include|add|put|insert)\b.{0,60}\b"
    r"(in|into|to) (the|your|this) (email|subject|reply|message|response)\b",
    re.IGNORECASE,
)
_MARKUP = re.compile(r"<\s*/?\s*[a-zA-Z!?][^<>]*>?|&(?:#\d+|#x[0-9a-f]+|[a-z]+);", re.IGNORECASE)
_TEMPLATE = re.compile(r"\{\{|\}\}|\{%|%\}|\{#|#\}|\$\{|\*\||\|\*|%[A-Z_]{3,}%|\{[a-z_]+\}")
# What a form or a CRM writes for "nothing": quoted, it would greet "Hi null,".
PLACEHOLDER_VALUES = frozenset(
    {"null", "undefined", "none", "nan", "nil", "n/a", "[object object]"}
)
# Bidi overrides and isolates reorder what a reader sees; they are never part of a name.
_BIDI = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f")


@dataclass(frozen=True)
class HeldField:
    """A contact field kept out of the copy and the prompt, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


def screen(value: str) -> str | None:
    """Why ``value`` may not be quoted to a reader, or None when it may."""
    if value.strip().lower() in PLACEHOLDER_VALUES:
        return "a placeholder, not a value"
    if len(value) > FIELD_MAX_CHARS:
        return f"longer than {FIELD_MAX_CHARS} characters"
    if CONTROLS.search(value):
        return "control characters"
    if _TEMPLATE.search(value):
        return "template syntax"
    if _MARKUP.search(value):
        return "markup"
    if URL.search(value):
        return "a URL or domain"
    if INSTRUCTION.search(value):
        return "instruction-like text"
    return None


def is_control(char: str) -> bool:
    """A control or bidi character: never part of copy (tab and newline are layout)."""
    return char in _BIDI or (unicodedata.category(char) == "Cc" and char not in "\t\n")


# The same set as one regular expression (Cc is exactly U+0000-U+001F and U+007F-U+009F), for
# scanning whole texts at C speed; tests/test_guardrails_facts.py checks the two agree.
CONTROLS = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def quarantine(contact: dict[str, Any]) -> tuple[dict[str, Any], tuple[HeldField, ...]]:
    """The contact as copy and prompts may use it, and the fields held back (by path)."""
    held: list[HeldField] = []
    clean: dict[str, Any] = {}
    for key, value in list(contact.items())[: MAX_ITEMS * 4]:
        if key in TRUSTED_KEYS:
            clean[key] = value
            continue
        if _deeper_than(value, MAX_DEPTH - 1):  # a structure too deep to read is held whole
            held.append(HeldField(f"contact.{key}", f"nested deeper than {MAX_DEPTH} levels"))
            continue
        kept = _item(str(key), value, "contact", held)
        if kept is not _HELD:
            clean[str(key)] = kept
    return clean, tuple(held)


def _item(key: str, value: Any, parent: str, held: list[HeldField]) -> Any:
    """A mapping's value, or _HELD; the model reads the keys too, so they are screened alike."""
    reason = screen(key) if len(key) <= MAX_KEY_CHARS else f"more than {MAX_KEY_CHARS} characters"
    if reason is not None:
        return _held(f"{parent}.{key[:MAX_KEY_CHARS]}", f"its name holds {reason}", held)
    return _bounded(value, f"{parent}.{key}", held)


_HELD: Any = object()


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list | tuple):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in list(children)[:MAX_ITEMS])
    return False


def _bounded(value: Any, path: str, held: list[HeldField]) -> Any:
    if isinstance(value, str):
        reason = screen(value)
        if reason is not None:
            held.append(HeldField(path, reason))
            return _HELD
        return " ".join(value.split())
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if abs(value) < 2**53 else _held(path, "a number too large", held)
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else None
    if isinstance(value, dict):
        items = list(value.items())[:MAX_ITEMS]
        kept = {str(k): _item(str(k), v, path, held) for k, v in items}
        return {k: v for k, v in kept.items() if v is not _HELD}
    if isinstance(value, list | tuple):
        head = list(value[:MAX_ITEMS])
        kept_items = [_bounded(v, f"{path}.{n}", held) for n, v in enumerate(head)]
        return [v for v in kept_items if v is not _HELD]
    return _held(path, f"a {type(value).__name__}", held)


def _held(path: str, reason: str, held: list[HeldField]) -> Any:
    held.append(HeldField(path, reason))
    return _HELD


def strings(value: Any, path: str = "contact") -> Iterator[tuple[str, str]]:
    """Every string (or number) in ``value`` with its path, for rules that read contact data."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from strings(item, f"{path}.{key}")
    elif isinstance(value, list | tuple):
        for n, item in enumerate(value):
            yield from strings(item, f"{path}.{n}")
    elif value is not None and not isinstance(value, bool):
        yield path, str(value)
