"""``make demo``: the example sequence end to end on embedded services and an accelerated clock.

Everything runs in this process (API over real HTTP on loopback, an arq worker, Valkey, the SMTP
capture inbox) and stops when the demo ends; the captured emails stay on disk to look at.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.resources import files
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from agents.devserver import HEURISTIC_MODEL, HeuristicResponder, serve_openai
from api.auth import Role, create_key
from api.demo_report import print_agent_summary, print_summary
from api.server import running
from sequences.mail.capture import RejectRule
from sequences.settings import Settings
from sequences.store import migrate
from sequences.store.db import make_engine
from sequences.store.tables import ENROLLMENTS, LINKS, MESSAGES

DEMO_DIR = Path(".dripline-demo")
BROWSER = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 Version/17.5 Safari/605.1.15"
)
PEOPLE = [
    ("Ada", "Lovelace", "Analytical Engines", "Europe/London"),
    ("Grace", "Hopper", "Cobol Works", "America/New_York"),
    ("Katherine", "Johnson", "Orbital", "America/Chicago"),
    ("Linus", "Björk", "Nordlys AB", "Europe/Stockholm"),
    ("Yuki", "Tanaka", "Sakura KK", "Asia/Tokyo"),
    ("Amara", "Okafor", "Lagos Labs", "Africa/Lagos"),
    ("Mateo", "García", "Andes SA", "America/Bogota"),
    ("Priya", "Raman", "Chennai Data", "Asia/Kolkata"),
    ("Noah", "Schmidt", "Rhein GmbH", "Europe/Berlin"),
    ("Zoë", "Martin", "Lumière", "Europe/Paris"),
]


@dataclass
class Plan:
    """Who does what: decided up front so a run reads like a story."""

    clickers: set[str] = field(default_factory=set)
    scanned: str = ""  # a mail security gateway fetches this contact's links first
    converter: str = ""
    unsubscriber: str = ""
    bouncer: str = ""
    done: set[tuple[str, str]] = field(default_factory=set)
    reviewed: set[str] = field(default_factory=set)  # steps whose first draft was shown
    approved: int = 0


def _contacts(n: int) -> list[dict[str, Any]]:
    people = []
    for i in range(n):
        first, last, company, zone = PEOPLE[i % len(PEOPLE)]
        domain = "bounce.example.net" if i == n - 1 else "example.com"
        people.append(
            {
                "email": f"{first.lower()}.{last.lower()}{i}@{domain}".replace("ö", "o")
                .replace("ë", "e")
                .replace("í", "i"),
                "timezone": zone,
                "attributes": {
                    "first_name": first,
                    "last_name": last,
                    "company": company,
                    "plan": "enterprise" if i % 5 == 4 else "team",
                },
            }
        )
    return people


def _plan(people: list[dict[str, Any]]) -> Plan:
    emails = [p["email"] for p in people]
    return Plan(
        clickers={e for i, e in enumerate(emails[:-1]) if i % 5 in (0, 2)},
        converter=emails[0],
        scanned=emails[2],
        unsubscriber=emails[1],
        bouncer=emails[-1],
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def run_demo(*, contacts: int, day_seconds: float) -> int:
    shutil.rmtree(DEMO_DIR, ignore_errors=True)
    port = free_port()
    settings = Settings.model_validate(
        {
            "DRIPLINE_DATA_DIR": str(DEMO_DIR),
            "DATABASE_URL": None,
            "REDIS_URL": None,
            "SMTP_HOST": None,
            "DRIPLINE_DAY_SECONDS": day_seconds,
            "DRIPLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DRIPLINE_BOT_CLICK_SECONDS": 1.0,
            "DRIPLINE_SWEEP_SECONDS": 1.0,
        }
    )
    key = await admin_key(settings)
    async with serve_openai(HeuristicResponder()) as model_url:
        settings.openai_base_url, settings.model = model_url, HEURISTIC_MODEL
        print(
            f"Copy model: {HEURISTIC_MODEL}, a stand-in (rules, not an LLM), reached through the\n"
            f"  openai client at {model_url}: it writes each step from its brief and call to\n"
            "  action; its tokens and cost are simulated. Set OPENAI_API_KEY and\n"
            "  OPENAI_BASE_URL / DRIPLINE_MODEL to have a real model write the copy."
        )
        return await _run(settings, key, port, contacts, day_seconds)


async def _run(settings: Settings, key: str, port: int, contacts: int, day_seconds: float) -> int:
    bounce = RejectRule(r"@bounce\.example\.net>?$", 550, "5.1.1 No such mailbox")
    print(
        f"Dripline demo: {contacts} contacts, one sequence day = {day_seconds:g} s, "
        "embedded services"
    )
    async with running(settings, host="127.0.0.1", port=port, rules=(bounce,)) as run:
        base = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient(
            base_url=base, headers={"Authorization": f"Bearer {key}"}, timeout=30
        ) as client:
            started = time.monotonic()
            people = await _setup(client, contacts)
            plan = _plan(people)
            finished = await _drive(client, settings, plan, started)
        inbox = run.endpoints.inbox
    await print_summary(settings, "trial-onboarding")
    await print_agent_summary(settings, "trial-onboarding")
    count = len(list(inbox.glob("*.eml"))) if inbox else 0
    print(
        f"\nCaptured emails: {count} in {inbox.resolve() if inbox else '-'} "
        "(open any .eml in a mail client)"
    )
    print(f"Drafts approved by the demo's reviewer: {plan.approved}")
    print(f"Finished in {time.monotonic() - started:.1f} s; no process is left running.")
    return 0 if finished else 1


async def admin_key(settings: Settings) -> str:
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(settings.resolved_database_url)
    try:
        await migrate.upgrade(engine)
        async with engine.begin() as conn:
            return await create_key(conn, "demo", Role.admin, datetime.now(UTC))
    finally:
        await engine.dispose()


async def _setup(client: httpx.AsyncClient, n: int) -> list[dict[str, Any]]:
    document = (files("sequences") / "examples" / "trial-onboarding.yaml").read_text()
    applied = await client.put(
        "/v1/sequences/trial-onboarding",
        content=document,
        headers={"Content-Type": "application/yaml"},
    )
    applied.raise_for_status()
    print(f"Applied sequence trial-onboarding, version {applied.json()['version']}")
    people = _contacts(n)
    response = await client.post(
        "/v1/enrollments/bulk", json={"sequence": "trial-onboarding", "contacts": people}
    )
    response.raise_for_status()
    print(
        f"Enrolled {response.json()['created']} contacts "
        "(one at bounce.example.net, whose server answers 550)"
    )
    return people


async def _drive(client: httpx.AsyncClient, settings: Settings, plan: Plan, started: float) -> bool:
    """Act like the recipients until every enrollment has finished (or three minutes pass)."""
    engine = make_engine(settings.resolved_database_url)
    last_report = 0.0
    try:
        while time.monotonic() - started < 180:
            async with engine.connect() as conn:
                sent = (
                    await conn.execute(
                        select(
                            MESSAGES.c.to_addr,
                            MESSAGES.c.step_id,
                            MESSAGES.c.token,
                            MESSAGES.c.sent_at,
                            LINKS.c.token.label("link"),
                        )
                        .outerjoin(LINKS, LINKS.c.message_pk == MESSAGES.c.id)
                        .where(MESSAGES.c.state == "sent")
                    )
                ).all()
                statuses = [r.status for r in await conn.execute(select(ENROLLMENTS.c.status))]
            for row in sent:
                await _react(client, plan, row)
            await _review(client, plan)
            active = statuses.count("active")
            if time.monotonic() - last_report > 5:
                last_report = time.monotonic()
                print(
                    f"  {time.monotonic() - started:5.1f} s: {len(sent)} emails sent, "
                    f"{active} enrollments active"
                )
            if active == 0:
                return True
            await asyncio.sleep(0.5)
        print("Timed out waiting for enrollments to finish")
        return False
    finally:
        await engine.dispose()


async def _review(client: httpx.AsyncClient, plan: Plan) -> None:
    """Play the content-ops reviewer: read each pending draft, approve it (the first of each
    step is shown with the agent's rationale)."""
    response = await client.get("/v1/drafts", params={"status": "pending", "limit": 200})
    response.raise_for_status()
    for item in response.json()["drafts"]:
        if item["step"] not in plan.reviewed:
            plan.reviewed.add(item["step"])
            print(
                f"  review {item['step']!r} for {item['email']} (drafted by {item['model']}):\n"
                f"      subject:   {item['subject']}\n"
                f"      rationale: {item['rationale']}"
            )
        decided = await client.post(f"/v1/drafts/{item['id']}/approve")
        if decided.status_code == 200:
            plan.approved += 1


async def _react(client: httpx.AsyncClient, plan: Plan, row: Any) -> None:
    email, step = row.to_addr, row.step_id
    if (email, step) in plan.done or (datetime.now(UTC) - row.sent_at).total_seconds() < 1.5:
        return  # people read mail a moment after it arrives (instant clicks are scanners)
    plan.done.add((email, step))
    if email == plan.unsubscriber:
        await client.post(
            f"/u/{row.token}",
            content="List-Unsubscribe=One-Click",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
    elif email in plan.clickers and row.link:
        if email == plan.scanned:
            await client.head(f"/t/c/{row.link}", headers={"User-Agent": "Mimecast URL Protect"})
        await client.get(f"/t/c/{row.link}", headers={"User-Agent": BROWSER})
        if email == plan.converter:
            await client.post(
                "/v1/events",
                json={
                    "events": [
                        {
                            "id": f"demo-conversion-{email}",
                            "type": "converted",
                            "email": email,
                            "properties": {"plan": "team", "source": "demo"},
                        }
                    ]
                },
            )
