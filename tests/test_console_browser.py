"""The console in a real browser: Debian's Chromium, headless, driven by Playwright against
the app served over HTTP, with the real worker, PostgreSQL and SMTP capture behind it."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from browser_cases import REFUSED, Console, axe_violations, counted_traffic, enrolled, ready
from console_cases import BAD_BODY, REVIEWED
from harness import Stack, eventually
from playwright.async_api import Dialog, async_playwright, expect
from review_cases import model_stack, pending

from agents.devserver import serving
from api.auth import Role
from sequences.mail.capture import CaptureServer, RejectRule

CHROMIUM = Path("/usr/bin/chromium")
WAIT_MS = 20_000


@pytest.fixture
def capture(tmp_path: Path) -> Iterator[CaptureServer]:
    """The SMTP capture, refusing one address for good (the counts test's bounce at sending)."""
    rule = RejectRule(f"^{re.escape(REFUSED)}$", 550, "5.1.1 No such user")
    server = CaptureServer(tmp_path / "inbox", rules=[rule])
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def console(
    postgres_url: str, redis_db: str, capture: CaptureServer, tmp_path: Path
) -> AsyncIterator[Console]:
    if not CHROMIUM.exists():  # noqa: ASYNC240  (one stat before the browser starts)
        pytest.fail("Chromium is missing: `make test` installs Debian's chromium package")
    async with (
        model_stack(postgres_url, redis_db, capture, tmp_path) as stack,
        serving(stack.app, started=True) as base,
        async_playwright() as playwright,
    ):
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=["--no-sandbox"]
        )
        try:
            yield Console(stack, base, browser)
        finally:
            await browser.close()


async def test_approve_with_the_keyboard_and_see_the_email_arrive(console: Console) -> None:
    first, second = await enrolled(console.stack, "ana", "bo")
    page = await console.signed_in()
    rows = page.locator("table.rows tbody tr")
    await expect(rows).to_have_count(2)
    await page.keyboard.press("j")
    await page.keyboard.press("Enter")
    await ready(page, f"{console.base}/console/drafts/{first['id']}?")
    frame = page.locator("iframe.email-frame")
    assert await frame.get_attribute("sandbox") == ""  # no allowances: no scripts, no origin
    email = page.frame_locator("iframe.email-frame")
    name = str(first["email"]).split("@")[0].title()
    await expect(email.locator("body")).to_contain_text(f"Hi {name},")
    await expect(page.locator(".checks li.failed")).to_have_count(0)

    await page.keyboard.press("a")
    await expect(page).to_have_url(f"{console.base}/console/drafts/{second['id']}?notice=approved")
    await expect(page.locator(".notice")).to_contain_text("Approved")

    await page.click("text=Dev inbox")
    for _ in range(100):  # the worker sends within a second or two
        if await page.locator(f"td.subject >> text={first['subject']}").count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await page.click(f"td.subject >> text={first['subject']}")
    await expect(page.locator("table.kv")).to_contain_text("signed d=acme.test")
    arrived = page.frame_locator("iframe.email-frame").locator("body")
    await expect(arrived).to_contain_text(f"Hi {name},", timeout=WAIT_MS)


async def test_an_edit_that_fails_a_guardrail_is_refused_on_the_page(console: Console) -> None:
    [draft] = await enrolled(console.stack, "cy")
    page = await console.signed_in()
    await page.click(f"text={draft['subject']}")
    await ready(page, re.compile(rf"/console/drafts/{draft['id']}\?"))
    await page.keyboard.press("e")
    await expect(page.locator("#subject")).to_be_focused()
    await page.fill("#body", BAD_BODY)
    await page.click("#save-approve")
    alert = page.locator("[role=alert]")
    await expect(alert).to_contain_text("Refused: the edit fails the guardrails")
    await expect(alert).to_contain_text("allowed_links")
    await expect(page.locator("#body")).to_have_value(BAD_BODY)  # the reviewer's text is kept
    [still] = await pending(console.stack)
    assert still["id"] == draft["id"] and still["status"] == "pending"
    assert console.stack.mail_to("cy@example.com") == []


async def test_reject_and_regenerate_brings_a_new_revision(console: Console) -> None:
    [draft] = await enrolled(console.stack, "di")
    page = await console.signed_in()
    await page.click(f"text={draft['subject']}")
    await page.click("#reject summary")
    await page.fill("#reject-note", "Shorter, and name the quickstart.")
    await page.click("#reject-submit")
    await expect(page.locator(".notice")).to_contain_text("writing a new draft")
    for _ in range(100):
        if await page.locator("text=rev 2").count():
            break
        await asyncio.sleep(0.2)
        await page.reload()
    await expect(page.locator("table.rows tbody tr")).to_have_count(1)
    await expect(page.locator("table.rows")).to_contain_text("rev 2")
    await page.click("td.subject a")
    await expect(page.locator(".meta")).to_contain_text("revision 2")


async def test_roles_an_enroll_key_cannot_review_and_a_reviewer_key_cannot_enroll(
    console: Console,
) -> None:
    page = await console.page()
    await page.goto(f"{console.base}/console/sign-in")
    await page.fill("#key", await console.stack.key(Role.enroll))
    await page.click("button[type=submit]")
    await expect(page.locator("[role=alert]")).to_contain_text("'enroll' role")
    await page.goto(f"{console.base}/console/queue")
    await expect(page).to_have_url(f"{console.base}/console/sign-in?next=%2Fconsole%2Fqueue")

    await console.stack.apply("reviewed", REVIEWED)
    reviewer_key = await console.stack.key(Role.reviewer)
    answer = await page.request.post(
        f"{console.base}/v1/enrollments",
        headers={"Authorization": f"Bearer {reviewer_key}"},
        data={"sequence": "reviewed", "contact": {"email": "eve@example.com"}},
    )
    assert answer.status == 403
    assert "'reviewer' role may not do this" in (await answer.json())["error"]["message"]


async def test_on_a_phone_no_page_scrolls_sideways_and_approve_comes_first(
    console: Console,
) -> None:
    await console.stack.apply("reviewed", REVIEWED)
    address = "fay.featherstonehaugh-montgomery@consolidated-widgets-international.example.com"
    await console.stack.enroll("reviewed", address, attributes={"company": "Consolidated"})
    [draft] = await pending(console.stack)
    page = await console.signed_in(width=390)
    paths = [
        "/console/queue",
        f"/console/drafts/{draft['id']}",
        "/console/sequences",
        "/console/sequences/reviewed",
        f"/console/enrollments/{draft['enrollment_id']}",
        "/console/contacts",
        "/console/inbox",
    ]
    for path in paths:
        await page.goto(console.base + path)
        width = await page.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width} px wide on a 390 px screen"
    await page.goto(f"{console.base}/console/drafts/{draft['id']}")
    approve = await page.locator("#approve").bounding_box()
    email = await page.locator("iframe.email-frame").bounding_box()
    assert approve is not None and email is not None
    assert approve["y"] + approve["height"] < email["y"]  # decide without scrolling past it
    assert email["width"] > 300  # the email has the screen's width, not a squeezed column


async def test_bulk_approval_asks_first_and_a_refusal_changes_nothing(console: Console) -> None:
    await enrolled(console.stack, "gil", "hal")
    page = await console.signed_in()
    await page.click(".filters >> text=welcome")  # the step in the side list
    await ready(page, re.compile(r"/console/queue\?sequence=reviewed&step=welcome$"))
    answers: list[str] = []

    async def answer(dialog: Dialog) -> None:
        answers.append(dialog.message)
        await (dialog.dismiss() if len(answers) == 1 else dialog.accept())

    page.on("dialog", answer)
    await page.click("text=Approve all passing in this step")
    await expect(page.locator("table.rows tbody tr")).to_have_count(2)  # dismissed: still there
    assert len(await pending(console.stack, 2)) == 2
    await page.click("text=Approve all passing in this step")
    await expect(page.locator(".notice")).to_contain_text("Approved 2 drafts.")
    assert "whose checks all pass" in answers[0] and len(answers) == 2
    await expect(page.locator(".empty")).to_contain_text("Nothing to review")


async def test_an_edit_then_a_approves_the_edit_and_never_the_original(console: Console) -> None:
    draft, following = await enrolled(console.stack, "ed", "eli")  # oldest first
    # The step's own fallback subject for this contact: no guardrail can refuse it (a name
    # that is not the contact's would be an invented fact).
    edited = f"Welcome, {str(draft['email']).split('@')[0].title()}"
    assert draft["subject"] != edited
    page = await console.signed_in()
    await page.click(f"text={draft['subject']}")
    url = re.compile(rf"/console/drafts/{draft['id']}\?$")
    await ready(page, url)
    await page.keyboard.press("e")
    await page.fill("#subject", edited)
    await page.focus("#save-approve")
    await page.keyboard.press("a")  # a focused button owns the key: nothing is decided
    await page.locator("h1").click()  # the focus leaves the form; the edit is still unsaved
    await page.keyboard.press("j")  # moving on would lose the edit: refused, and said why
    await expect(page.locator(".key-hint")).to_contain_text("unsaved edits")
    await expect(page).to_have_url(url)
    await page.keyboard.press("a")  # with the edit form open, "a" approves the edit
    await ready(page, re.compile(rf"/console/drafts/{following['id']}\?notice=approved$"))
    answer = await console.stack.client.get(
        f"/v1/drafts/{draft['id']}", headers=console.stack.auth()
    )
    decided = answer.json()
    assert decided["status"] in ("approved", "resolved"), decided
    assert decided["decision"]["subject"] == edited


async def test_two_reviewers_on_one_draft_see_each_other_and_the_loser_moves_on(
    console: Console,
) -> None:
    first, second = await enrolled(console.stack, "fa", "gu")
    ana = await console.signed_in(name="ana")
    bo = await console.signed_in(name="bo")
    step = "sequence=reviewed&step=welcome"
    opened = f"{console.base}/console/drafts/{first['id']}?{step}"
    await ana.goto(opened)
    await ready(ana, opened)
    await bo.goto(f"{console.base}/console/queue?{step}")
    await expect(bo.locator(f"tr[data-id='{first['id']}']")).to_contain_text(
        "being reviewed by ana"
    )
    await expect(bo.locator(f"tr[data-id='{second['id']}']")).not_to_contain_text("reviewed by")
    await bo.goto(opened)
    await ready(bo, opened)
    await expect(bo.locator(".banner.claim")).to_contain_text("Being reviewed by ana")
    await expect(ana.locator(".banner.claim")).to_have_count(0)  # ana's own claim

    await ana.keyboard.press("a")
    await ready(ana, re.compile(rf"/console/drafts/{second['id']}\?{step}&notice=approved$"))
    await bo.keyboard.press("a")  # too late: ana decided it
    await ready(bo, re.compile(rf"/console/drafts/{first['id']}\?{step}&notice=lost$"))
    await expect(bo.locator(".notice")).to_contain_text("Someone else decided this draft first")
    await expect(bo.locator(".banner.decided")).to_contain_text("approved by ana")
    await bo.click("text=Next draft in this queue")
    await ready(bo, f"{console.base}/console/drafts/{second['id']}?{step}")
    await expect(bo.locator(".banner.claim")).to_contain_text("Being reviewed by ana")
    [left] = await pending(console.stack)
    assert left["id"] == second["id"]


async def _every_page(console: Console) -> list[str]:
    """One of each console page, with data in it: a draft pending and one decided (its email
    delivered to the dev inbox), its enrollment, contact and sequence."""
    decided, waiting = await enrolled(console.stack, "ivy", "jo")
    stack = console.stack
    await stack.client.post(f"/v1/drafts/{decided['id']}/approve", headers=stack.auth())
    await eventually(lambda: _arrived(stack, str(decided["email"])))
    body = await stack.enrollment(str(decided["enrollment_id"]))
    contact = await stack.client.get(f"/v1/contacts/{decided['email']}", headers=stack.auth())
    inbox = sorted(p.stem for p in stack.capture.directory.glob("*.eml"))
    message = next(e["message"] for e in body["timeline"] if e.get("message"))
    return [
        "/console/queue",
        "/console/queue?sequence=reviewed&step=welcome&sort=deadline",
        f"/console/drafts/{waiting['id']}",
        f"/console/drafts/{decided['id']}",
        f"/console/drafts/{waiting['id']}/preview",
        "/console/sequences",
        "/console/sequences/reviewed",
        "/console/contacts",
        f"/console/contacts/{contact.json()['id']}",
        f"/console/enrollments/{decided['enrollment_id']}",
        f"/console/messages/{message}/html",
        "/console/inbox",
        f"/console/inbox/{inbox[-1]}",
        f"/console/inbox/{inbox[-1]}/html",
        "/console/drafts/drf_missing",
    ]


async def _arrived(stack: Stack, address: str) -> bool:
    return bool(stack.mail_to(address))


@pytest.mark.parametrize("width", [1440, 390])
async def test_axe_finds_nothing_serious_on_any_page(console: Console, width: int) -> None:
    paths = await _every_page(console)
    signed_out = await console.page(width, audited=True)
    await signed_out.goto(f"{console.base}/console/sign-in")
    found = {"/console/sign-in": await axe_violations(signed_out)}
    page = await console.signed_in(width=width, audited=True)
    for path in paths:
        await page.goto(console.base + path)
        found[path] = await axe_violations(page)
    bad = [f"{path}: {v}" for path, found_here in found.items() for v in found_here]
    assert not bad, "\n".join(bad)


async def test_every_page_and_the_api_count_the_same_emails_and_enrollments(
    console: Console,
) -> None:
    await counted_traffic(console.stack)
    api = await console.stack.client.get("/v1/sequences/counted", headers=console.stack.auth())
    hello, outcomes = api.json()["steps"]["hello"], api.json()["enrollments"]
    assert {k: hello[k] for k in ("sent", "delivered", "bounced", "clicked", "replied")} == {
        "sent": 9,
        "delivered": 8,
        "bounced": 2,
        "clicked": 1,
        "replied": 1,
    }
    assert hello["unsubscribed"] == 1 and sum(v["sent"] for v in hello["variants"].values()) == 9
    assert outcomes == {"active": 2, "completed": 3, "exited": 4, "cancelled": 1}

    page = await console.signed_in()
    await page.goto(f"{console.base}/console/sequences")
    row = page.locator("tr", has=page.locator("a[href='/console/sequences/counted']"))
    for label, value in [*(("Sent", 9), ("Delivered", 8), ("Bounced", 2)), *outcomes.items()]:
        await expect(row.locator(f"td[data-label='{label.title()}']")).to_have_text(str(value))

    await page.goto(f"{console.base}/console/sequences/counted")
    await expect(page.locator(".enrollment-counts")).to_have_text(
        "2 active, 3 completed, 4 exited, 1 cancelled"
    )
    funnel = page.locator(".funnel", has=page.locator("h3", has_text="hello"))
    columns = await funnel.locator("thead th").all_text_contents()
    for stage in ("sent", "delivered", "bounced"):
        cells = await funnel.locator(f"tr.stage-{stage} td .figures").all_inner_texts()
        shown = dict(zip(columns[1:], (int(c.split()[0]) for c in cells), strict=True))
        by_variant = {v: counts[stage] for v, counts in hello["variants"].items()}
        assert shown == {"All": hello[stage], **by_variant}, stage
    for variant, counts in hello["variants"].items():  # the bandit's split says the same
        arm = page.locator(f"tr.arm[data-arm='{variant}'] .arm-sent")
        await expect(arm).to_have_text(str(counts["sent"]))
