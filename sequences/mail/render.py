"""Email rendering: MJML compiled once per layout version, Jinja2 per contact.

The ``mjml`` package keeps ``{{ }}`` in text and attributes, but it parses the layout as markup:
a ``<`` inside an expression (``default("<b>")``) is turned into an element, attribute values
are entity-decoded, and template text between components (a ``{% for %}`` around
``<mj-text>``) is silently dropped. So every Jinja tag is swapped for an inert marker before
compiling and swapped back afterwards; block tags between components belong in ``<mj-raw>``,
and a tag MJML dropped anyway is reported as a layout error instead of vanishing.
"""

from __future__ import annotations

import hashlib
import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import StrictUndefined, Template
from jinja2.sandbox import ImmutableSandboxedEnvironment
from mjml import mjml_to_html

__all__ = [
    "EmailCopy",
    "LayoutError",
    "LayoutRenderer",
    "RenderedEmail",
    "UnknownLayoutError",
]

logger = logging.getLogger(__name__)

_LAYOUT_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_JINJA_TAG_RE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_MARKER_PREFIX = "dljinjamarker"
_MARKER_RE = re.compile(_MARKER_PREFIX + r"(\d{5})x")
_VERSION_CHARS = 12
_INDENT = re.compile(r"^[ \t]+", re.MULTILINE)
_KEEPS_WHITESPACE = re.compile(r"<(pre|textarea)\b|white-space\s*:\s*pre", re.IGNORECASE)
_SAFE_SCHEMES = frozenset({"http", "https"})


class UnknownLayoutError(ValueError):
    """No layout file of that name exists."""


class LayoutError(ValueError):
    """A layout that exists but cannot be compiled into a working template."""


@dataclass(frozen=True)
class EmailCopy:
    """The per-contact words of one email; untrusted (written by the agent)."""

    subject: str
    preheader: str
    paragraphs: tuple[str, ...]
    cta_text: str | None
    cta_url: str | None


@dataclass(frozen=True)
class RenderedEmail:
    html: str
    text: str
    layout_version: str


@dataclass(frozen=True)
class _CompiledLayout:
    template: Template
    version: str


class LayoutRenderer:
    """Renders copy into a layout; compiled layouts are cached by (name, content hash)."""

    def __init__(
        self, layouts_dir: Traversable | Path | None = None, *, recheck_seconds: float = 2.0
    ) -> None:
        self.recheck_seconds = recheck_seconds
        self._dir: Traversable | Path = (
            layouts_dir if layouts_dir is not None else files("prompts") / "layouts"
        )
        self._env = ImmutableSandboxedEnvironment(autoescape=True, undefined=StrictUndefined)
        self._cache: dict[tuple[str, str], _CompiledLayout] = {}
        self._checked: dict[str, tuple[float, _CompiledLayout]] = {}
        # Number of MJML compilations so far; lets tests and metrics see cache effectiveness.
        self.compile_count = 0

    def render(
        self,
        layout: str,
        copy: EmailCopy,
        *,
        unsubscribe_url: str,
        pixel_url: str | None,
        sender_line: str,
        link_rewriter: Callable[[str], str] | None = None,
    ) -> RenderedEmail:
        compiled = self._compiled(layout)
        cta_url = _tracked_url(copy.cta_url, link_rewriter)
        context: dict[str, Any] = {
            "subject": copy.subject,
            "preheader": copy.preheader,
            "paragraphs": copy.paragraphs,
            "cta_text": copy.cta_text,
            "cta_url": cta_url,
            "unsubscribe_url": _checked_url(unsubscribe_url),
            "pixel_url": _checked_url(pixel_url) if pixel_url else None,
            "sender_line": sender_line,
        }
        html = compiled.template.render(context)
        text = _plain_text(copy, cta_url, unsubscribe_url, sender_line)
        return RenderedEmail(html=html, text=text, layout_version=compiled.version)

    def _compiled(self, layout: str) -> _CompiledLayout:
        # Reading and hashing the file per render showed in profiles; an edited layout is
        # still picked up within ``recheck_seconds``.
        recent = self._checked.get(layout)
        if recent is not None and time.monotonic() - recent[0] < self.recheck_seconds:
            return recent[1]
        compiled = self._compile(layout)
        self._checked[layout] = (time.monotonic(), compiled)
        return compiled

    def _compile(self, layout: str) -> _CompiledLayout:
        source = self._read_layout(layout)
        digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
        key = (layout, digest)
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        template = self._env.from_string(_compile_mjml(layout, source))
        # Jinja copies a template's globals into every render's context; as the ChainMap over
        # the environment's it is, iterating them took ~3% of a send. The globals never change.
        template.globals = dict(template.globals)
        compiled = _CompiledLayout(template=template, version=digest[:_VERSION_CHARS])
        self.compile_count += 1
        self._cache[key] = compiled
        logger.info("compiled layout %s version %s", layout, compiled.version)
        return compiled

    def exists(self, layout: str) -> bool:
        """Whether ``layout`` names a layout file (checked when a sequence is applied)."""
        return bool(_LAYOUT_NAME_RE.match(layout)) and (self._dir / f"{layout}.mjml").is_file()

    def _read_layout(self, layout: str) -> str:
        # The name may come from a sequence definition; never let it walk out of the directory.
        if not _LAYOUT_NAME_RE.match(layout):
            raise UnknownLayoutError(f"invalid layout name: {layout!r}")
        path = self._dir / f"{layout}.mjml"
        if not path.is_file():
            raise UnknownLayoutError(f"unknown layout: {layout!r}")
        return path.read_text(encoding="utf-8")


def _compile_mjml(layout: str, source: str) -> str:
    if _MARKER_PREFIX in source:
        raise LayoutError(f"layout {layout!r} contains the reserved text {_MARKER_PREFIX!r}")
    tags: list[str] = []

    def to_marker(match: re.Match[str]) -> str:
        tags.append(match.group(0))
        return f"{_MARKER_PREFIX}{len(tags) - 1:05d}x"

    result = mjml_to_html(_JINJA_TAG_RE.sub(to_marker, source))
    if result.errors:
        raise LayoutError(f"layout {layout!r} failed to compile: {result.errors}")
    html: str = result.html
    seen = {int(index) for index in _MARKER_RE.findall(html)}
    missing = [tag for index, tag in enumerate(tags) if index not in seen]
    if missing:
        raise LayoutError(
            f"layout {layout!r}: MJML dropped {missing}; put template tags that sit "
            "between components inside <mj-raw>"
        )
    return _MARKER_RE.sub(lambda m: tags[int(m.group(1))], _unindent(html))


def _unindent(html: str) -> str:
    """MJML's output without the indentation that starts its lines (about a quarter of its
    bytes). A browser reads a run of whitespace between words or tags as one space, and the
    line break stays; every email is smaller, and DKIM's relaxed body canonicalisation finds
    nothing to collapse in it. Left whole when it holds an element that keeps whitespace."""
    if _KEEPS_WHITESPACE.search(html):
        return html
    return _INDENT.sub("", html)


def _tracked_url(url: str | None, rewriter: Callable[[str], str] | None) -> str | None:
    if url is None:
        return None
    checked = _checked_url(url)
    return _checked_url(rewriter(checked)) if rewriter is not None else checked


def _checked_url(url: str) -> str:
    # Autoescaping stops markup injection but not a javascript: link in untrusted copy.
    if urlsplit(url).scheme.lower() not in _SAFE_SCHEMES:
        raise ValueError(f"only http(s) links are allowed in email, got {url!r}")
    return url


def _plain_text(
    copy: EmailCopy, cta_url: str | None, unsubscribe_url: str, sender_line: str
) -> str:
    blocks = [paragraph.strip() for paragraph in copy.paragraphs if paragraph.strip()]
    if copy.cta_text and cta_url:
        blocks.append(f"{copy.cta_text}: {cta_url}")
    blocks.append(f"--\n{sender_line}\nUnsubscribe: {unsubscribe_url}")
    return "\n\n".join(blocks) + "\n"
