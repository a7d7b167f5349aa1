from __future__ import annotations

from pathlib import Path

import jinja2
import pytest

from sequences.mail.render import (
    EmailCopy,
    LayoutError,
    LayoutRenderer,
    RenderedEmail,
    UnknownLayoutError,
)

COPY = EmailCopy(
    subject="Your trial ends Friday",
    preheader="Two quick ways to keep your data",
    paragraphs=(
        "Hi Zoë,",
        "Your trial ends on Friday. <script>alert('x')</script>",
    ),
    cta_text="Keep my workspace",
    cta_url="https://acme.test/upgrade?plan=team&src=email",
)
UNSUBSCRIBE = "https://acme.test/u/tok123"
PIXEL = "https://acme.test/t/o/tok123"
SENDER = "Sam from Acme · 1 Market St"

MINI = """<mjml><mj-body><mj-section><mj-column>
<mj-raw>{% for p in paragraphs %}</mj-raw><mj-text>{{ p }}</mj-text><mj-raw>{% endfor %}</mj-raw>
<mj-text><a href="{{ unsubscribe_url }}">Unsubscribe</a> {{ sender_line }}</mj-text>
</mj-column></mj-section></mj-body></mjml>
"""


def render(renderer: LayoutRenderer, layout: str = "basic", **overrides: object) -> RenderedEmail:
    options: dict[str, object] = {
        "unsubscribe_url": UNSUBSCRIBE,
        "pixel_url": PIXEL,
        "sender_line": SENDER,
        "link_rewriter": lambda url: "https://acme.test/t/c/link1",
    }
    options.update(overrides)
    return renderer.render(layout, COPY, **options)  # type: ignore[arg-type]


def test_basic_layout_renders_copy() -> None:
    rendered = render(LayoutRenderer())
    assert "<title>" in rendered.html
    assert "Two quick ways to keep your data" in rendered.html
    assert "Hi Zoë," in rendered.html
    assert "Keep my workspace" in rendered.html
    assert f'<img alt="" height="1" src="{PIXEL}"' in rendered.html
    assert "Sam from Acme · 1 Market St" in rendered.html
    assert "{{" not in rendered.html
    assert "{%" not in rendered.html
    assert len(rendered.layout_version) == 12


def test_compiles_once_per_layout_version(tmp_path: Path) -> None:
    (tmp_path / "mini.mjml").write_text(MINI, encoding="utf-8")
    renderer = LayoutRenderer(tmp_path, recheck_seconds=0)
    first = render(renderer, "mini")
    second = render(renderer, "mini")
    assert renderer.compile_count == 1
    assert first.layout_version == second.layout_version

    (tmp_path / "mini.mjml").write_text(MINI.replace("Unsubscribe", "Opt out"), encoding="utf-8")
    edited = render(renderer, "mini")
    assert renderer.compile_count == 2
    assert edited.layout_version != first.layout_version
    assert "Opt out" in edited.html


def test_paragraphs_are_escaped() -> None:
    rendered = render(LayoutRenderer())
    assert "<script>" not in rendered.html
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;" in rendered.html


def test_cta_url_is_rewritten_in_both_parts() -> None:
    rendered = render(LayoutRenderer())
    assert 'href="https://acme.test/t/c/link1"' in rendered.html
    assert "acme.test/upgrade" not in rendered.html
    assert "Keep my workspace: https://acme.test/t/c/link1" in rendered.text
    assert "acme.test/upgrade" not in rendered.text


def test_cta_url_is_escaped_without_rewriter() -> None:
    rendered = render(LayoutRenderer(), link_rewriter=None)
    assert 'href="https://acme.test/upgrade?plan=team&amp;src=email"' in rendered.html


def test_unsubscribe_link_in_both_parts() -> None:
    rendered = render(LayoutRenderer())
    assert f'href="{UNSUBSCRIBE}"' in rendered.html
    assert f"Unsubscribe: {UNSUBSCRIBE}" in rendered.text
    assert rendered.text.startswith("Hi Zoë,\n\n")
    assert COPY.subject not in rendered.text


def test_no_pixel_and_no_button_when_absent() -> None:
    copy = EmailCopy("S", "P", ("Only text.",), cta_text=None, cta_url=None)
    rendered = LayoutRenderer().render(
        "basic", copy, unsubscribe_url=UNSUBSCRIBE, pixel_url=None, sender_line=SENDER
    )
    assert PIXEL not in rendered.html
    assert "<img" not in rendered.html
    assert "background:#2563eb" not in rendered.html
    assert rendered.text == f"Only text.\n\n--\n{SENDER}\nUnsubscribe: {UNSUBSCRIBE}\n"


def test_missing_variables_are_errors(tmp_path: Path) -> None:
    (tmp_path / "strict.mjml").write_text(MINI.replace("{{ p }}", "{{ p }}{{ nope }}"))
    with pytest.raises(jinja2.UndefinedError):
        render(LayoutRenderer(tmp_path), "strict")


def test_unsafe_link_schemes_are_refused() -> None:
    with pytest.raises(ValueError, match="http"):
        render(LayoutRenderer(), link_rewriter=None, unsubscribe_url="javascript:alert(1)")
    with pytest.raises(ValueError, match="http"):
        render(LayoutRenderer(), link_rewriter=lambda url: "javascript:alert(1)")


@pytest.mark.parametrize("name", ["nope", "../layouts/basic", "Basic", ""])
def test_unknown_layout(name: str) -> None:
    with pytest.raises(UnknownLayoutError):
        render(LayoutRenderer(), name)


def test_tags_dropped_by_mjml_are_reported(tmp_path: Path) -> None:
    broken = MINI.replace("<mj-raw>{% for p in paragraphs %}</mj-raw>", "{% for p in paragraphs %}")
    (tmp_path / "broken.mjml").write_text(broken)
    with pytest.raises(LayoutError, match="mj-raw"):
        render(LayoutRenderer(tmp_path), "broken")


def test_expressions_survive_mjml_parsing(tmp_path: Path) -> None:
    # Unprotected, MJML would turn the "<b>" literal into an element and append "</b>".
    layout = MINI.replace("{{ sender_line }}", '{{ sender_line | default("<b>") }}')
    (tmp_path / "literal.mjml").write_text(layout)
    rendered = render(LayoutRenderer(tmp_path), "literal")
    assert SENDER in rendered.html
    assert "</b>" not in rendered.html


def test_line_indentation_is_dropped_unless_the_layout_keeps_whitespace(tmp_path: Path) -> None:
    """MJML indents every line of its output; the compiled layout drops that (a quarter of the
    HTML) and keeps the line breaks, so words and inline tags stay apart as they were. A
    layout with a <pre> keeps its output whole."""
    basic = render(LayoutRenderer()).html
    lines = basic.split("\n")
    assert len(lines) > 100 and not any(line[:1] in (" ", "\t") for line in lines)
    assert "Hi Zoë," in basic and "Keep my workspace" in basic
    pre = MINI.replace(
        "<mj-text>{{ p }}</mj-text>", "<mj-text><pre>  {{ p }}\n    indented</pre></mj-text>"
    )
    (tmp_path / "pre.mjml").write_text(pre, encoding="utf-8")
    kept = render(LayoutRenderer(tmp_path), "pre").html
    assert "\n    indented</pre>" in kept
    assert any(line.startswith("  ") for line in kept.split("\n"))
