"""Screenshots of every console page at a desktop and a phone width, to look at.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_screens [--out DIR] [--enrollments N] [--drafts N]

Seeds a database of its own (:mod:`benchmarks.console_seed`), serves the console over HTTP and
drives Debian's Chromium through Playwright: signs in as a reviewer, opens each page that
:func:`benchmarks.console_pages.pages` lists (plus the sign-in form and a 404), and saves a
full-page PNG per page and width, and the first screen at the phone width. It prints the pages
that scroll sideways and anything the browser logged as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from playwright.async_api import Page, async_playwright
from sqlalchemy import select

from api.app import create_app
from api.auth import Role, create_key
from api.server import serving
from benchmarks.console_pages import analyze, fill_inbox, pages
from benchmarks.console_seed import DEFAULT_ADMIN_URL, DEFAULT_REDIS_URL, Seeded, seed
from benchmarks.services import create_database, drop_database
from sequences.models import MESSAGES
from sequences.runtime import open_deps
from sequences.settings import Settings

CHROMIUM = "/usr/bin/chromium"
WIDTHS = {"desktop": 1440, "phone": 390}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--out", type=Path, default=Path(".dripline-screens"))
    parser.add_argument("--enrollments", type=int, default=10_000)
    parser.add_argument("--drafts", type=int, default=1_000)
    parser.add_argument(
        "--database-url", default=os.environ.get("TEST_PG_ADMIN_URL", DEFAULT_ADMIN_URL)
    )
    parser.add_argument("--redis-url", default=DEFAULT_REDIS_URL)
    return parser.parse_args(argv)


async def shoot(page: Page, base: str, urls: dict[str, str], out: Path, tag: str) -> list[str]:
    """Screenshots of each page; returns what looked wrong (sideways scrolling, errors)."""
    problems: list[str] = []
    page.on("console", lambda m: problems.append(f"{tag}: {m.text}") if m.type == "error" else None)
    width = WIDTHS[tag]
    for name, path in urls.items():
        await page.goto(base + path)
        await page.wait_for_load_state("networkidle")
        slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
        await page.screenshot(path=str(out / f"{slug}-{tag}.png"), full_page=True)
        if tag == "phone":
            await page.screenshot(path=str(out / f"{slug}-{tag}-top.png"))
        scrolled = await page.evaluate("document.documentElement.scrollWidth")
        if scrolled > width:
            problems.append(f"{tag}: {name} scrolls sideways ({scrolled} px wide)")
    return problems


async def screens(args: argparse.Namespace, url: str, found: Seeded, data_dir: Path) -> None:
    settings = Settings.model_validate(
        {"DATABASE_URL": url, "DRIPLINE_DATA_DIR": str(data_dir), "DKIM_DOMAIN": "acme.test"}
    )
    async with (
        open_deps(settings, redis_url=args.redis_url) as deps,
        deps.engine.begin() as conn,
    ):
        key = await create_key(conn, "dana (content ops)", Role.reviewer, datetime.now(UTC))
        row = (await conn.execute(select(MESSAGES.c.html_body, MESSAGES.c.text_body))).first()
    assert row is not None
    inbox = fill_inbox(data_dir / "inbox", 40, row.html_body, row.text_body)
    urls = await pages(settings, args.redis_url, found, inbox)
    urls.pop("sign-in form")  # shot signed out, below
    urls["not found"] = "/console/drafts/drf_missing"
    args.out.mkdir(parents=True, exist_ok=True)
    app = create_app(settings, redis_url=args.redis_url, inbox=data_dir / "inbox")
    problems: list[str] = []
    async with serving(app) as base, async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for tag, width in WIDTHS.items():
            context = await browser.new_context(viewport={"width": width, "height": 900})
            page = await context.new_page()
            await page.goto(f"{base}/console/sign-in")
            await page.screenshot(path=str(args.out / f"sign-in-{tag}.png"))
            await page.fill("#key", key)
            await page.click("button[type=submit]")
            problems += await shoot(page, base, urls, args.out, tag)
            await context.close()
        await browser.close()
    print(f"{len(list(args.out.glob('*.png')))} screenshots in {args.out}/")
    print("Looked wrong (the not-found page's own 404 is logged once per width):")
    for problem in problems or ["nothing"]:
        print(f"  {problem}")


async def main_async(args: argparse.Namespace) -> None:
    db = await create_database(args.database_url)
    try:
        found = await seed(
            db.url, enrollments=args.enrollments, drafts=args.drafts, redis_url=args.redis_url
        )
        await analyze(db.url)
        with tempfile.TemporaryDirectory(prefix="dripline-screens-") as data_dir:
            await screens(args, db.url, found, Path(data_dir))
    finally:
        await drop_database(db)


def main(argv: list[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
