"""The load: batches of feedback events shaped like a real client's, posted concurrently.

Each batch holds ``BATCH`` events drawn with a seeded random generator from the messages the
set-up sent: mostly human clicks (``message_id``, the link's ``url`` and a browser
``user_agent``), some opens, replies and conversions named by email, every one with a new id,
plus about 2% re-posts of events from earlier batches (the same id and body), which the API
must count as duplicates. :class:`Expected` keeps what the database must hold afterwards.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

GOAL_EVENTS_PER_SECOND = 5000.0  # the goal, on this machine
BATCH = 100
# Each kind's share of a batch's new events (the re-posted duplicates come on top).
KINDS = ("clicked", "opened", "replied", "converted")
SHARES = (0.80, 0.13, 0.045, 0.025)
DUPLICATES = 0.02  # share of each batch that re-posts an earlier batch's event
DUPLICATE_LAG = 16  # re-posts come from batches at least this many places back
USER_AGENT = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/17.5 Safari/605.1.15"
)
LINKS = ("https://acme.test/tour", "https://acme.test/pricing", "https://acme.test/integrations")


@dataclass(frozen=True)
class Target:
    """A message the set-up sent, as a client knows it."""

    pk: str  # our message id
    header: str  # its Message-ID header, <...@...>
    contact_id: int
    email: str


@dataclass
class Expected:
    """What the posted events must leave in the database (warm-up and measured alike)."""

    events: int = 0  # new ids posted
    duplicates: int = 0  # re-posted ids
    by_type: Counter[str] = field(default_factory=Counter)
    contacts: set[int] = field(default_factory=set)
    clicked: set[str] = field(default_factory=set)  # message pks
    replied: set[int] = field(default_factory=set)  # contact ids
    converted: set[int] = field(default_factory=set)  # contact ids


@dataclass
class Load:
    """Builds batches; every id it hands out is new, every re-post is an earlier event."""

    targets: list[Target]
    seed: int = 7
    expected: Expected = field(default_factory=Expected)
    _posted: list[list[dict[str, Any]]] = field(default_factory=list)
    _next_id: int = 0

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def batches(self, count: int) -> list[bytes]:
        """``count`` request bodies, JSON-encoded up front so the timed loop only sends."""
        return [json.dumps({"events": self._batch()}).encode() for _ in range(count)]

    def _batch(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        new: list[dict[str, Any]] = []
        earlier = self._posted[:-DUPLICATE_LAG]
        for _ in range(BATCH):
            if earlier and self._random.random() < DUPLICATES:
                events.append(self._random.choice(self._random.choice(earlier)))
                self.expected.duplicates += 1
            else:
                new.append(self._new())
                events.append(new[-1])
        self._posted.append(new)
        return events

    def _new(self) -> dict[str, Any]:
        kind = self._random.choices(KINDS, SHARES)[0]
        target = self._random.choice(self.targets)
        self._next_id += 1
        event: dict[str, Any] = {"id": f"bench-{self._next_id}", "type": kind}
        if kind in ("clicked", "opened"):
            # Half name the message by our id, half by the Message-ID header an ESP reports.
            use_header = self._random.random() < 0.5
            event["message_id"] = target.header if use_header else target.pk
            event["properties"] = {"user_agent": USER_AGENT}
            if kind == "clicked":
                event["properties"]["url"] = self._random.choice(LINKS)
                self.expected.clicked.add(target.pk)
        else:
            event["email"] = target.email
            event["properties"] = {"source": "crm"}
            (self.expected.replied if kind == "replied" else self.expected.converted).add(
                target.contact_id
            )
        self.expected.events += 1
        self.expected.by_type[kind] += 1
        self.expected.contacts.add(target.contact_id)
        return event


@dataclass
class Posted:
    """What the server answered, batch by batch. A batch that fails with a 5xx or a dropped
    connection is posted again after a short random pause, as a client would (the ids make
    that safe), up to RETRIES times; its latency runs from the first attempt to the answer
    that counted."""

    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    statuses: Counter[int] = field(default_factory=Counter)  # per attempt; 0: no answer
    failures: Counter[str] = field(default_factory=Counter)  # failed attempts, by reason
    accepted: int = 0
    duplicates: int = 0
    retried: int = 0  # batches that needed more than one attempt
    given_up: int = 0  # batches refused (4xx) or still failing after RETRIES

    @property
    def batches(self) -> int:
        return len(self.latencies)

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


RETRIES = 20
RETRY_PAUSE = 0.1  # seconds, at most, times the attempt's number
_jitter = random.Random(11)


async def post(url: str, key: str, bodies: Iterable[bytes], clients: int) -> Posted:
    """Post every body to ``/v1/events`` from ``clients`` concurrent connections."""
    import httpx

    result = Posted()
    queue = list(bodies)
    queue.reverse()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)

    async def attempt(http: httpx.AsyncClient, body: bytes) -> str | None:
        """None once the batch is answered 202, else why this attempt failed."""
        try:
            response = await http.post("/v1/events", content=body)
        except httpx.TransportError as error:  # e.g. the server closed it after a 500
            result.statuses[0] += 1
            return f"no answer ({type(error).__name__})"
        result.statuses[response.status_code] += 1
        if response.status_code != 202:
            return f"{response.status_code}: {response.text[:200]}"
        answer = response.json()
        result.accepted += answer["accepted"]
        result.duplicates += answer["duplicates"]
        return None

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            body = queue.pop()
            start = time.perf_counter()
            for tries in range(1, RETRIES + 2):
                failure = await attempt(http, body)
                if failure is None:
                    result.latencies.append(time.perf_counter() - start)
                    if tries > 1:
                        result.retried += 1
                    break
                result.failures[failure] += 1
                if failure[0] == "4":
                    result.given_up += 1
                    break
                await asyncio.sleep(_jitter.uniform(0, RETRY_PAUSE) * tries)
            else:
                result.given_up += 1

    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=120.0
    ) as http:
        await http.get("/healthz")  # open one connection before the clock starts
        start = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        result.seconds = time.perf_counter() - start
    return result
