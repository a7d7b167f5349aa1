"""Health and Prometheus metrics, read from the database so every process reports the same."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CollectorRegistry, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from sqlalchemy import func, select, text

from api.deps import DepsDep, MetricsReader
from api.routes import webhooks
from sequences.store.tables import ENROLLMENTS, MESSAGES, RUNS

router = APIRouter(tags=["ops"])


@router.get("/healthz")
async def healthz(deps: DepsDep, response: Response) -> dict[str, Any]:
    """Database and Redis reachability."""
    checks: dict[str, str] = {}
    try:
        async with deps.reader.connect() as conn:
            await conn.execute(text("SELECT 1"))
        checks["database"] = "ok"
    except Exception as error:
        checks["database"] = f"error: {type(error).__name__}"
    try:
        await deps.redis.ping()
        checks["redis"] = "ok"
    except Exception as error:
        checks["redis"] = f"error: {type(error).__name__}"
    healthy = all(v == "ok" for v in checks.values())
    response.status_code = 200 if healthy else 503
    return {"status": "ok" if healthy else "degraded", **checks}


@router.get("/metrics", response_class=PlainTextResponse)
async def metrics(deps: DepsDep, _: MetricsReader) -> Response:
    """Messages by state, outbox rows by state and overdue, enrollments by status."""
    registry = CollectorRegistry()
    messages = Gauge("dripline_messages", "Messages by state", ["state"], registry=registry)
    runs = Gauge("dripline_outbox_rows", "Outbox rows by state", ["state"], registry=registry)
    overdue = Gauge("dripline_outbox_overdue", "Due rows whose time has passed", registry=registry)
    # Its own figure: each is a message that may or may not have reached its recipient (a
    # process died mid-send), at most one per open SMTP connection per crash; worth an alert.
    unknown = Gauge(
        "dripline_messages_unknown", "Messages whose delivery is unknown", registry=registry
    )
    enrollments = Gauge(
        "dripline_enrollments", "Enrollments by status", ["status"], registry=registry
    )
    async with deps.reader.connect() as conn:
        for state, n in await conn.execute(
            select(MESSAGES.c.state, func.count()).group_by(MESSAGES.c.state)
        ):
            messages.labels(state).set(n)
            if state == "unknown":
                unknown.set(n)
        for state, n in await conn.execute(
            select(RUNS.c.state, func.count()).group_by(RUNS.c.state)
        ):
            runs.labels(state).set(n)
        late = select(func.count()).where(RUNS.c.state == "due", RUNS.c.due_at <= deps.clock.now())
        overdue.set((await conn.execute(late)).scalar_one())
        for status, n in await conn.execute(
            select(ENROLLMENTS.c.status, func.count()).group_by(ENROLLMENTS.c.status)
        ):
            enrollments.labels(status).set(n)
    await webhooks.metrics(deps, registry)
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
