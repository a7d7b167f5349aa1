"""What the console's browser tests share: a signed-in Chromium page, the wait for console.js,
drafts to review, and axe-core run inside a page."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from console_cases import REVIEWED
from harness import Stack, eventually
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


# A sequence whose every count differs: two variants, a branch to an exit step (a normal
# completion), a long wait (still active), and an exit on replies.
COUNTED = """
key: counted
name: Counted
sender: {from: "Dana at Acme <dana@acme.test>"}
approval: never
exit_on: [replied]
steps:
  - id: hello
    email:
      brief: Say hello and point to the quickstart.
      fallback: {subject: "Hello", body: "Hi there,\\n\\nThe quickstart is ready."}
      variants:
        - id: warm
          angle: a warm welcome
          fallback: {subject: "A warm hello", body: "Hi there,\\n\\nWelcome aboard."}
        - id: brief
          angle: one short line
          fallback: {subject: "Hello", body: "Hi there,\\n\\nThe quickstart is ready."}
  - id: route
    branch:
      - {if: "contact.plan == 'done'", goto: done}
      - {else: pause}
  - id: pause
    wait: {for: 30d}
  - id: done
    exit: {reason: finished}
"""
REFUSED = "gone@example.com"  # the capture server refuses it for good: a bounce at sending


async def counted_traffic(stack: Stack) -> None:
    """Nine emails sent and one refused; then a bounce reported later, an unsubscribe, a reply,
    a click and a cancellation. Expected: sent 9, delivered 8, bounced 2; enrollments 2 active,
    3 completed (at the exit step), 4 exited, 1 cancelled."""
    assert (await stack.apply("counted", COUNTED)).status_code == 201
    ids: dict[str, str] = {}
    people = [(f"a{n}@example.com", "done") for n in (1, 2, 3)]
    people += [(f"b{n}@example.com", "trial") for n in range(1, 7)] + [(REFUSED, "trial")]
    for address, plan in people:
        enrolled = await stack.enroll("counted", address, attributes={"plan": plan})
        ids[address] = enrolled.json()["id"]

    async def settled() -> bool:
        states = [(await stack.enrollment(ids[a]))["status"] for a, _ in people]
        sent = [a for a, _ in people if a != REFUSED and stack.mail_to(a)]
        # a1-a3 reach the exit step (completed); the refused one exits on its bounce
        return len(sent) == 9 and states.count("completed") == 3 and states.count("exited") == 1

    await eventually(settled)
    events = [
        ("b1@example.com", "bounced", {"bounce_type": "hard"}),
        ("b2@example.com", "unsubscribed", {}),
        ("b3@example.com", "replied", {}),
        ("b5@example.com", "clicked", {}),
    ]
    batch = [
        {"type": kind, "email": who, "message_id": stack.mail_to(who)[0].message_id, **extra}
        for who, kind, properties in events
        for extra in [{"properties": properties} if properties else {}]
    ]
    posted = await stack.client.post("/v1/events", json={"events": batch}, headers=stack.auth())
    assert posted.status_code in (200, 202), posted.text
    cancelled = await stack.client.post(
        f"/v1/enrollments/{ids['b4@example.com']}/cancel", headers=stack.auth()
    )
    assert cancelled.status_code == 200, cancelled.text
