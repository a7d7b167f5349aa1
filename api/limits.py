"""Limits at the door for free-form JSON (contact attributes, event properties).

A value the rest of the system cannot carry is refused with a 422 naming its path, before
anything is written: nesting deeper than :data:`MAX_DEPTH`, integers outside 64 bits, NaN and
Infinity, control characters other than tab and newline, over-long strings and keys. Rows
stored before these limits are made readable by :func:`readable` instead of failing every read.
"""

from __future__ import annotations

import json
import math
import re
import unicodedata
from collections.abc import Iterator
from typing import Any

from pydantic_core import PydanticCustomError

MAX_DEPTH = 32
MAX_STRING_CHARS = 5_000
MAX_KEY_CHARS = 200
INT_RANGE = (-(2**63), 2**63 - 1)
_ALLOWED_CONTROLS = frozenset("\t\n")


def checked(value: dict[str, Any], *, max_bytes: int, what: str) -> dict[str, Any]:
    """``value`` unchanged when every limit holds; otherwise a validation error whose ``ctx``
    carries the offending path (see api.errors)."""
    for path, problem in _problems(value):
        raise PydanticCustomError("json_limit", "{problem}", {"problem": problem, "subpath": path})
    size = len(json.dumps(value, ensure_ascii=False).encode())
    if size > max_bytes:
        problem = f"{what} are {size} bytes as JSON (at most {max_bytes})"
        raise PydanticCustomError("json_limit", "{problem}", {"problem": problem, "subpath": ""})
    return value


def _problems(root: dict[str, Any]) -> Iterator[tuple[str, str]]:
    # Iterative, so a value nested thousands deep is measured, not a stack overflow.
    stack: list[tuple[str, Any, int]] = [("", root, 0)]
    while stack:
        path, value, depth = stack.pop()
        problem = _scalar_problem(value)
        if problem is not None:
            yield path, problem
            continue
        if not isinstance(value, dict | list):
            continue
        if depth >= MAX_DEPTH:
            yield path, f"nested deeper than {MAX_DEPTH} levels"
            continue
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for key, item in reversed(list(items)):
            key_problem = _key_problem(key) if isinstance(key, str) else None
            child = f"{path}.{_shown(key)}" if path else _shown(key)
            if key_problem is not None:
                yield child, key_problem
                continue
            stack.append((child, item, depth + 1))


def _scalar_problem(value: Any) -> str | None:
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int) and not INT_RANGE[0] <= value <= INT_RANGE[1]:
        return "integer outside the 64-bit range; send it as a string"
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN and Infinity are not JSON numbers"
    if isinstance(value, str):
        if len(value) > MAX_STRING_CHARS:
            return f"text longer than {MAX_STRING_CHARS} characters"
        return _control_problem(value)
    return None


def _key_problem(key: str) -> str | None:
    if len(key) > MAX_KEY_CHARS:
        return f"key longer than {MAX_KEY_CHARS} characters"
    return _control_problem(key)


# Unicode's control characters (category Cc) are exactly U+0000-U+001F and U+007F-U+009F; one
# regular expression finds them (less tab and newline) at C speed, instead of a category lookup
# per character (about 8 ms per batch of 100 events). tests/test_input_limits.py checks that it
# matches every code point the category lookup refuses, and no other.
_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _control_problem(text: str) -> str | None:
    found = _CONTROL.search(text)
    if found is None:
        return None
    return f"control character U+{ord(found.group()):04X} (only tab and newline are allowed)"


def is_control(char: str) -> bool:
    """The rule itself: a control character (Unicode category Cc) other than tab and newline."""
    return unicodedata.category(char) == "Cc" and char not in _ALLOWED_CONTROLS


def _shown(key: object) -> str:
    return str(key)[:60]


def readable(value: Any, depth: int = 0) -> Any:
    """A stored value as JSON can answer it: what lies deeper than :data:`MAX_DEPTH` is cut to
    ``"…"``, integers beyond 64 bits become strings and NaN/Infinity null (rows written before
    the limits)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return value if INT_RANGE[0] <= value <= INT_RANGE[1] else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {str(k): readable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [readable(v, depth + 1) for v in value]
    return str(value)
