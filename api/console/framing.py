"""Serving an email's HTML into the console's sandboxed iframes.

The iframe carries ``sandbox`` (no scripts, no same-origin, no popups, no navigation of the
page), and the response carries the same sandbox as a CSP, so the HTML stays inert even when
its URL is opened on its own. Two things are taken out first, because viewing an email must
not count as reading it: the open-tracking pixel, and navigation through tracked links (a base
target of ``_blank`` turns every click into a popup, which the sandbox refuses).
"""

from __future__ import annotations

import re

from fastapi.responses import HTMLResponse

FRAME_CSP = (
    "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
    "font-src https: data:; frame-ancestors 'self'"
)
_PIXEL = re.compile(r"<img\b[^>]*/t/o/[^>]*>", re.IGNORECASE)
_HEAD = re.compile(r"<head\b[^>]*>", re.IGNORECASE)
_BASE = '<base target="_blank">'


def inert(html: str) -> str:
    html = _PIXEL.sub("", html)
    match = _HEAD.search(html)
    if match is None:
        return _BASE + html
    return html[: match.end()] + _BASE + html[match.end() :]


def framed(html: str) -> HTMLResponse:
    return HTMLResponse(
        inert(html),
        headers={
            "Content-Security-Policy": FRAME_CSP,
            "X-Content-Type-Options": "nosniff",
            "Referrer-Policy": "no-referrer",
            "Cache-Control": "no-store",
        },
    )
