"""Telling a link scanner's click from a person's: the redirect and the ESP webhooks share it."""

from __future__ import annotations

import functools
import re
from datetime import datetime

SCANNERS = re.compile(
    r"(bot|crawler|spider|scanner|preview|proofpoint|mimecast|barracuda|safelinks|urldefense|"
    r"symantec|trendmicro|fireeye|python-requests|curl|wget|go-http-client|headless)",
    re.IGNORECASE,
)


def bot_reason(
    *,
    user_agent: str | None,
    sent_at: datetime | None,
    at: datetime,
    window_seconds: float,
    head: bool = False,
) -> str | None:
    """Why a click looks automated, or None for a person: HEAD probes, missing or scanner user
    agents, and clicks within seconds of the send (no person reads that fast)."""
    if head:
        return "HEAD request"
    if _scanner(user_agent or ""):
        return "scanner user agent"
    if sent_at is not None and (at - sent_at).total_seconds() < window_seconds:
        return "clicked within seconds of delivery"
    return None


@functools.lru_cache(maxsize=4096)
def _scanner(user_agent: str) -> bool:
    """A batch of clicks repeats a handful of user agents: each is matched once."""
    return not user_agent or SCANNERS.search(user_agent) is not None
