"""What the console's browser tests share: a signed-in Chromium page, the wait for console.js,
drafts to review, and axe-core run inside a page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console_cases import REVIEWED
from harness import Stack
from playwright.async_api import Browser, Page, expect
from review_cases import pending

from api.auth import Role, create_key

# axe-core as npm installed it from the committed package.json and package-lock.json
# (`make test` runs `npm ci`): the version is pinned there.
AXE = Path(__file__).parent.parent / "node_modules" / "axe-core" / "axe.min.js"
BLOCKING = ("serious", "critical")


@dataclass
class Console:
    stack: Stack
    base: str
    browser: Browser

    async def page(self, width: int = 1280, *, audited: bool = False) -> Page:
        """A fresh browser context; ``audited`` lets axe's script in past the page's CSP."""
        context = await self.browser.new_context(
            viewport={"width": width, "height": 900}, bypass_csp=audited
        )
        return await context.new_page()

    async def signed_in(
        self,
        role: Role = Role.reviewer,
        width: int = 1280,
        *,
        name: str | None = None,
        audited: bool = False,
    ) -> Page:
        """A page signed in with a new key of ``role`` (named ``name`` when given)."""
        page = await self.page(width, audited=audited)
        await page.goto(f"{self.base}/console/queue")
        await expect(page).to_have_url(f"{self.base}/console/sign-in?next=%2Fconsole%2Fqueue")
        await page.fill("#key", await self._key(role, name))
        await page.click("button[type=submit]")
        await ready(page, f"{self.base}/console/queue")
        return page

    async def _key(self, role: Role, name: str | None) -> str:
        if name is None:
            return await self.stack.key(role)
        async with self.stack.deps.engine.begin() as conn:
            return await create_key(conn, name, role, datetime.now(UTC))


async def ready(page: Page, url: str | re.Pattern[str]) -> None:
    """Wait until the page at `url` has console.js's handlers attached (it marks <html
    data-ready>): the script is deferred, so a key pressed or a form confirmed sooner is lost."""
    await expect(page).to_have_url(url)
    await expect(page.locator("html")).to_have_attribute("data-ready", "true")


async def enrolled(stack: Stack, *names: str) -> list[dict[str, Any]]:
    await stack.apply("reviewed", REVIEWED)
    for name in names:
        contact = {"first_name": name.title(), "company": "Initech"}
        await stack.enroll("reviewed", f"{name}@example.com", attributes=contact)
    return await pending(stack, len(names))


async def axe_violations(page: Page) -> list[str]:
    """Run axe-core over the page as it is; each serious or critical violation, with where."""
    if not await page.evaluate("typeof window.axe !== 'undefined'"):
        await page.add_script_tag(path=str(AXE))
    found: list[dict[str, Any]] = await page.evaluate(
        "async () => (await axe.run(document, {resultTypes: ['violations']})).violations"
    )
    return [
        f"{v['impact']} {v['id']}: {v['help']} at {[n['target'] for n in v['nodes'][:3]]}"
        for v in found
        if v["impact"] in BLOCKING
    ]
