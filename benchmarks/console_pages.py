"""How fast does the console answer with a production-sized database? Every page, timed.

Run from the repository root::

    .venv/bin/python -m benchmarks.console_pages [--enrollments N] [--drafts N]
        [--requests N] [--inbox N] [--database-url URL] [--redis-url URL]

1. Set-up (not measured): a PostgreSQL database of its own seeded by
   :mod:`benchmarks.console_harness` (10,000 enrollments and 1,000 drafts pending review by
   default), and a dev inbox directory holding ``--inbox`` captured emails.
2. The app (``api.app.create_app``, as ``dripline serve`` builds it) in uvicorn, this process
   as a signed-in reviewer's browser: for each page, warm-up requests and then ``--requests``
   sequential GETs over HTTP with the session cookie. Printed per page: the median, the 95th
   percentile and the slowest answer, and the 95th percentile against the 200 ms budget.

Client and server share this process and its event loop, so the times include the client's
own work: they are what a browser next to the server would wait, slightly pessimistic.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from dataclasses import dataclass

import httpx

from benchmarks.console_harness import add_data_set_arguments, served_console

BUDGET_MS = 200.0
WARM_UP = 3


@dataclass(frozen=True)
class Timing:
    page: str
    path: str
    status: int
    times_ms: list[float]

    def percentile(self, p: float) -> float:
        ordered = sorted(self.times_ms)
        return ordered[min(len(ordered) - 1, round(p * (len(ordered) - 1)))]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0] if __doc__ else "")
    add_data_set_arguments(parser)
    parser.add_argument("--requests", type=int, default=30, help="timed requests per page")
    parser.add_argument("--inbox", type=int, default=2_000, help="captured emails in the inbox")
    return parser.parse_args(argv)


async def time_pages(base: str, key: str, urls: dict[str, str], requests: int) -> list[Timing]:
    async with httpx.AsyncClient(base_url=base, timeout=30) as client:
        signed = await client.post("/console/sign-in", data={"key": key})
        if signed.status_code != 303:
            raise RuntimeError(f"sign-in failed: {signed.status_code}")
        found = []
        for page, path in urls.items():
            for _ in range(WARM_UP):
                await client.get(path)
            times, status = [], 0
            for _ in range(requests):
                started = time.perf_counter()
                response = await client.get(path)
                times.append((time.perf_counter() - started) * 1000)
                status = response.status_code
            found.append(Timing(page, path, status, times))
    return found


def report(timings: list[Timing]) -> bool:
    print(f"{'page':<34} {'status':>6} {'median':>8} {'p95':>8} {'max':>8} {'p95/200ms':>10}")
    ok = True
    for t in timings:
        p95 = t.percentile(0.95)
        fine = t.status == 200 and p95 < BUDGET_MS
        ok &= fine
        print(
            f"{t.page:<34} {t.status:>6} {statistics.median(t.times_ms):>6.1f}ms "
            f"{p95:>6.1f}ms {max(t.times_ms):>6.1f}ms {p95 / BUDGET_MS:>9.2f}x"
            f"{'' if fine else '  OVER'}"
        )
    worst = max(timings, key=lambda t: t.percentile(0.95))
    print(
        f"\nSlowest page at p95: {worst.page}, {worst.percentile(0.95):.1f} ms "
        f"({worst.percentile(0.95) / BUDGET_MS:.2f} of the 200 ms budget). "
        f"All pages under budget: {'yes' if ok else 'NO'}"
    )
    return ok


async def main_async(args: argparse.Namespace) -> bool:
    async with served_console(args, inbox=args.inbox, key_name="bench-reviewer") as served:
        print(
            f"Dev inbox: {served.inbox:,} captured emails. {args.requests} timed GETs per page.\n"
        )
        return report(await time_pages(served.base, served.key, served.urls, args.requests))


def main(argv: list[str] | None = None) -> int:
    return 0 if asyncio.run(main_async(parse_args(argv))) else 1


if __name__ == "__main__":
    raise SystemExit(main())
