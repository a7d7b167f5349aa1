"""Screenshots of every console page at a desktop and a phone width, to look at.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_screens [--out DIR] [--enrollments N] [--drafts N]

Seeds a database of its own (:mod:`benchmarks.console_harness`), serves the console over HTTP and
drives Debian's Chromium through Playwright: signs in as a reviewer, opens each page that
:func:`benchmarks.console_harness.pages` lists (plus the sign-in form and a 404), and saves a
full-page PNG per page and width, and the first screen at the phone width. It prints the pages
that scroll sideways and anything the browser logged as an error.
"""

from __future__ import annotations

import argparse
import asyncio
import re
from pathlib import Path

from playwright.async_api import Page, async_playwright

from benchmarks.console_harness import Served, add_data_set_arguments, served_console

CHROMIUM = "/usr/bin/chromium"
WIDTHS = {"desktop": 1440, "phone": 390}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    parser.add_argument("--out", type=Path, default=Path(".dripline-screens"))
    add_data_set_arguments(parser)
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


async def main_async(args: argparse.Namespace) -> None:
    async with served_console(args, inbox=40, key_name="dana (content ops)") as served:
        urls = dict(served.urls)
        urls.pop("sign-in form")  # shot signed out, below
        urls["not found"] = "/console/drafts/drf_missing"
        args.out.mkdir(parents=True, exist_ok=True)
        problems = await _shoot_all(served, urls, args.out)
    print(f"{len(list(args.out.glob('*.png')))} screenshots in {args.out}/")
    print("Looked wrong (the not-found page's own 404 is logged once per width):")
    for problem in problems or ["nothing"]:
        print(f"  {problem}")


async def _shoot_all(served: Served, urls: dict[str, str], out: Path) -> list[str]:
    problems: list[str] = []
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        for tag, width in WIDTHS.items():
            context = await browser.new_context(viewport={"width": width, "height": 900})
            page = await context.new_page()
            await page.goto(f"{served.base}/console/sign-in")
            await page.screenshot(path=str(out / f"sign-in-{tag}.png"))
            await page.fill("#key", served.key)
            await page.click("button[type=submit]")
            problems += await shoot(page, served.base, urls, out, tag)
            await context.close()
        await browser.close()
    return problems


def main(argv: list[str] | None = None) -> int:
    asyncio.run(main_async(parse_args(argv)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
