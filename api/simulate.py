"""``dripline simulate``: a sequence over synthetic contacts, on the real engine and worker.

Contacts arrive over the first part of the run; each email they get is answered (or not) by a
seeded engagement model whose true rates the simulator knows, through the same endpoints real
recipients and CRMs use: the click redirect with a browser's user agent, and ``POST /v1/events``
for replies and conversions. The clock is accelerated, mail goes to the SMTP capture server, and
the bandit learns from nothing but what those requests produce.

Progress goes to stderr as the run goes. SIGINT or SIGTERM stops it cleanly: the recipients stop,
then the worker and the API, then the embedded services, and the report so far is printed.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import shutil
import signal
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import select

from api.demo import admin_key, free_port
from api.server import running
from api.simprogress import ProgressLine
from sequences.definitions.document import SequenceDefinition
from sequences.settings import Settings
from sequences.simulation import Person, Truth, people, react, sequence_topics
from sequences.store.db import make_engine
from sequences.store.tables import LINKS, MESSAGES, TIMELINE, MessageState

BROWSER = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/131.0 Safari/537.36"
PHASES = ("early", "middle", "late")
WARMED_UP = 20  # candidate sends before a choose step's affinity matches are counted


@dataclass(frozen=True)
class SimConfig:
    contacts: int
    days: float
    seed: int = 7
    day_seconds: float = 1.0
    arrive_within: float = 0.6  # contacts arrive over this share of the run
    data_dir: Path = Path(".dripline-sim")
    database_url: str | None = None  # None: an embedded SQLite file in data_dir


@dataclass
class Sent:
    pk: str
    email: str
    step: str
    variant: str | None
    sent_at: datetime
    link: str | None


@dataclass
class Report:
    """What happened, per step and variant, and how the split moved over the run."""

    arms: dict[str, Counter[str]] = field(default_factory=dict)  # arm -> sends/clicks/...
    phases: dict[str, dict[str, Counter[str]]] = field(default_factory=dict)  # step -> phase
    choices: dict[str, Counter[str]] = field(default_factory=dict)  # choose step -> target
    matched: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # (hit, boosted, k)
    enrolled: int = 0
    seconds: float = 0.0
    day: float = 0.0  # the sequence day the run reached
    interrupted: bool = False  # stopped by a signal before its last day

    def share(self, step: str, phase: str, variant: str) -> float:
        counts = self.phases.get(step, {}).get(phase, Counter())
        total = sum(counts.values())
        return counts[variant] / total if total else 0.0


async def run_until_stopped(
    defn: SequenceDefinition, truth: Truth, config: SimConfig, progress: ProgressLine
) -> Report:
    """The simulation, with SIGINT and SIGTERM asking it to stop (a second one is no different:
    stopping what was started takes a moment, and is not cut short)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def asked(signum: signal.Signals) -> None:
        if not stop.is_set():
            progress.note(f"{signum.name}: stopping the run, then the services it started")
        stop.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, asked, signum)
    try:
        return await simulate(defn, truth, config, stop=stop, progress=progress)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)
        progress.close()


async def simulate(
    defn: SequenceDefinition,
    truth: Truth,
    config: SimConfig,
    *,
    stop: asyncio.Event | None = None,
    progress: ProgressLine | None = None,
) -> Report:
    stop = stop or asyncio.Event()
    shutil.rmtree(config.data_dir, ignore_errors=True)
    port = free_port()
    settings = Settings.model_validate(
        {
            "DRIPLINE_DATA_DIR": str(config.data_dir),
            "DATABASE_URL": config.database_url,
            "REDIS_URL": None,
            "SMTP_HOST": None,
            "OPENAI_API_KEY": None,
            "OPENAI_BASE_URL": None,
            "DRIPLINE_DAY_SECONDS": config.day_seconds,
            "DRIPLINE_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "DRIPLINE_BOT_CLICK_SECONDS": 0.05,
            "DRIPLINE_SWEEP_SECONDS": 0.5,
            "DRIPLINE_BANDIT_SEED": config.seed,
        }
    )
    key = await admin_key(settings)
    crowd = people(config.contacts, sequence_topics(defn), config.seed)
    async with (
        running(settings, host="127.0.0.1", port=port) as _,
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}",
            headers={"Authorization": f"Bearer {key}"},
            timeout=60,
        ) as client,
    ):
        driver = Driver(client, settings, defn, truth, config, crowd, stop, progress)
        await driver.run()
        # A signal after the last day stops nothing that was still to come.
        interrupted, reached = stop.is_set(), driver.day()
    # Only now, with the worker stopped: the report reads what the run left in the database.
    report = await build_report(settings)
    report.enrolled, report.seconds = driver.enrolled, time.monotonic() - driver.clock_start
    report.day, report.interrupted = min(reached, config.days), interrupted
    return report


class Driver:
    """Plays the recipients (and a reviewer who approves every draft) until the run ends."""

    def __init__(
        self,
        client: httpx.AsyncClient,
        settings: Settings,
        defn: SequenceDefinition,
        truth: Truth,
        config: SimConfig,
        crowd: list[Person],
        stop: asyncio.Event,
        progress: ProgressLine | None = None,
    ) -> None:
        self.client, self.settings, self.defn = client, settings, defn
        self.stop, self.progress = stop, progress
        self.events = 0  # clicks and events answered
        self.truth, self.config = truth, config
        self.by_email = {p.email: p for p in crowd}
        rng = random.Random(config.seed)
        run = config.days * config.day_seconds
        self.arrivals = sorted(
            (rng.uniform(0, run * config.arrive_within), p) for p in crowd
        )  # (seconds after the start, person)
        self.seen: set[str] = set()
        self.actions: list[tuple[float, str, Sent]] = []  # (monotonic due, kind, message)
        self.enrolled = 0
        self._last_arrival = 0.0
        self.clock_start = time.monotonic()

    async def run(self) -> None:
        applied = await self.client.put(
            f"/v1/sequences/{self.defn.key}",
            json=self.defn.model_dump(mode="json", by_alias=True, exclude_none=True),
        )
        applied.raise_for_status()
        self.clock_start = time.monotonic()
        # Arrivals and reactions run side by side: a slow enrollment call must not keep
        # recipients from reading their mail.
        try:
            await asyncio.gather(self._arrive(), self._react())
        except httpx.HTTPError:
            if not self.stop.is_set():
                raise
            # Stopping: a request cut short by the services going away is no failure.

    def _elapsed(self) -> float:
        return time.monotonic() - self.clock_start

    def day(self) -> float:
        return self._elapsed() / self.config.day_seconds

    async def _pause(self, seconds: float) -> None:
        """Sleep, or less when the run is asked to stop."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stop.wait(), seconds)

    def _end(self) -> float:
        """The configured run, stretched when enrolments fell behind their schedule (a busy
        machine): the last arrivals still get the tail of the run to respond."""
        horizon = self.config.days * self.config.day_seconds
        return max(horizon, self._last_arrival + horizon * (1 - self.config.arrive_within))

    async def _arrive(self) -> None:
        while self.arrivals and not self.stop.is_set():
            due = [p for at, p in self.arrivals if at <= self._elapsed()][:200]
            self.arrivals = self.arrivals[len(due) :]
            if due:
                response = await self.client.post(
                    "/v1/enrollments/bulk",
                    json={
                        "sequence": self.defn.key,
                        "contacts": [{"email": p.email, "attributes": p.attributes} for p in due],
                    },
                )
                response.raise_for_status()
                self.enrolled += response.json()["created"]
                self._last_arrival = self._elapsed()
            await self._pause(0.05)

    async def _react(self) -> None:
        engine = make_engine(self.settings.resolved_database_url)
        try:
            while (self.arrivals or self._elapsed() < self._end()) and not self.stop.is_set():
                async with engine.connect() as conn:
                    await self._read_mail(conn)
                await self._act()
                await self._approve()
                self._show()
                await self._pause(0.1)
            if not self.stop.is_set():
                # Mail read before the horizon is still answered: the last emails are not
                # counted as ignored just because the run stopped.
                await self._pause(0.15)
                await self._act()
        finally:
            await engine.dispose()

    def _show(self) -> None:
        if self.progress is not None:
            self.progress.update(self.day(), len(self.seen), self.events)

    async def _read_mail(self, conn: Any) -> None:
        rows = await conn.execute(
            select(
                MESSAGES.c.id,
                MESSAGES.c.to_addr,
                MESSAGES.c.step_id,
                MESSAGES.c.variant,
                MESSAGES.c.sent_at,
                LINKS.c.token.label("link"),
            )
            .outerjoin(LINKS, LINKS.c.message_pk == MESSAGES.c.id)
            .where(MESSAGES.c.state == MessageState.sent)
        )
        for row in rows:
            if row.id in self.seen:
                continue
            self.seen.add(row.id)
            sent = Sent(row.id, row.to_addr, row.step_id, row.variant, row.sent_at, row.link)
            self._plan(sent)

    def _plan(self, sent: Sent) -> None:
        person = self.by_email.get(sent.email)
        if person is None:
            return
        topics = self.defn.topics(sent.step, sent.variant)
        reaction = react(self.truth, person, sent.step, sent.variant, topics, self.config.seed)
        # People read a moment after delivery; the redirect's bot window is shorter than that.
        soon = time.monotonic() + 0.1
        if reaction.click and sent.link:
            self.actions.append((soon, "click", sent))
        if reaction.reply:
            self.actions.append((soon + 0.05, "replied", sent))
        if reaction.convert:
            self.actions.append((soon + 0.1, "converted", sent))

    async def _act(self) -> None:
        now = time.monotonic()
        due = [a for a in self.actions if a[0] <= now]
        self.actions = [a for a in self.actions if a[0] > now]
        clicks = [sent for _, kind, sent in due if kind == "click"]
        self.events += len(due)
        await asyncio.gather(
            *(self.client.get(f"/t/c/{s.link}", headers={"User-Agent": BROWSER}) for s in clicks)
        )
        events = []
        for _, kind, sent in due:
            if kind != "click":
                events.append({"id": f"sim-{kind}-{sent.pk}", "type": kind, "message_id": sent.pk})
        if events:
            response = await self.client.post("/v1/events", json={"events": events})
            response.raise_for_status()

    async def _approve(self) -> None:
        pending = await self.client.get("/v1/drafts", params={"status": "pending", "limit": 200})
        for item in pending.json().get("drafts", []):
            await self.client.post(f"/v1/drafts/{item['id']}/approve")


async def build_report(settings: Settings) -> Report:
    engine = make_engine(settings.resolved_database_url)
    report = Report()
    try:
        async with engine.connect() as conn:
            messages = (await conn.execute(select(MESSAGES))).all()
            linked = set((await conn.execute(select(LINKS.c.message_pk).distinct())).scalars())
            decisions = (
                await conn.execute(
                    select(TIMELINE.c.step_id, TIMELINE.c.detail).where(
                        TIMELINE.c.kind == "decision"
                    )
                )
            ).all()
    finally:
        await engine.dispose()
    by_step: dict[str, list[Any]] = {}
    for m in messages:
        arm = f"{m.step_id}/{m.variant}" if m.variant else m.step_id
        counts = report.arms.setdefault(arm, Counter())
        counts["sends"] += m.state == MessageState.sent
        counts["clicks"] += m.clicked_at is not None
        counts["replies"] += m.replied_at is not None
        counts["conversions"] += m.converted_at is not None
        counts["linked"] += m.id in linked
        if m.variant:
            by_step.setdefault(m.step_id, []).append(m)
    for step_id, sent in by_step.items():
        # Thirds of the step's own sends in time order: early, middle and late choices.
        sent.sort(key=lambda m: m.created_at)
        phases = report.phases[step_id] = {p: Counter() for p in PHASES}
        for rank, m in enumerate(sent):
            phases[PHASES[3 * rank // len(sent)]][m.variant] += 1
    for step_id, detail in decisions:
        choice = (detail or {}).get("choice")
        if not choice:
            continue
        report.choices.setdefault(step_id, Counter())[detail["goto"]] += 1
        boosted = [c for c, b in choice.get("boosts", {}).items() if b > 1.0]
        hit, seen, k = report.matched.get(step_id, (0, 0, len(choice.get("samples", {}))))
        sends = sum(arm.get("sends", 0) for arm in choice.get("stats", {}).values())
        # Until the candidates have some sends, the draws explore widely and a contact's
        # affinity is one influence among several; the match rate is counted after that.
        if len(boosted) == 1 and sends >= WARMED_UP:
            report.matched[step_id] = (hit + (detail["goto"] == boosted[0]), seen + 1, k)
    return report
