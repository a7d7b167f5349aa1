"""Sequences: apply a YAML or JSON definition (a new version when it changed), list, read."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from api.deps import Admin, ConnDep, DepsDep, ReadConnDep, Reader
from sequences.definitions import registry
from sequences.definitions.loading import parse_definition
from sequences.definitions.refusals import DefinitionError, FieldError
from sequences.errors import Conflict, NotFound
from sequences.review import ahead
from sequences.review.costs import step_costs
from sequences.signals import counts, stepstats
from sequences.store.tables import ENROLLMENTS, SEQUENCES, VERSIONS

router = APIRouter(prefix="/v1/sequences", tags=["sequences"])


@router.put(
    "/{key}",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"application/yaml": {"schema": {"type": "string"}}, "application/json": {}},
        }
    },
)
async def apply_sequence(
    key: str, request: Request, response: Response, conn: ConnDep, deps: DepsDep, _: Admin
) -> dict[str, Any]:
    """Apply a sequence definition (YAML or JSON); 201 with a new version, 200 when unchanged."""
    defn = parse_definition(await request.body())
    if defn.key != key:
        raise DefinitionError(
            [FieldError("key", f"the body's key '{defn.key}' differs from the URL's '{key}'")]
        )
    registry.check_layouts(defn, deps.renderer.exists)
    try:
        async with conn.begin_nested():
            applied = await registry.apply(conn, defn, deps.clock.now())
    except IntegrityError:
        raise Conflict(
            "concurrent_apply", f"sequence '{key}' was changed by another request; apply again"
        ) from None
    if not applied.created:
        response.status_code = 200
    return {"key": applied.key, "version": applied.version, "created": applied.created}


@router.get("")
async def list_sequences(conn: ReadConnDep, _: Reader) -> dict[str, Any]:
    """All sequences with their current version and active enrollments."""
    active = (
        select(ENROLLMENTS.c.sequence_id, func.count().label("active"))
        .where(ENROLLMENTS.c.status == "active")
        .group_by(ENROLLMENTS.c.sequence_id)
        .subquery()
    )
    rows = await conn.execute(
        select(
            SEQUENCES.c.key,
            SEQUENCES.c.name,
            SEQUENCES.c.current_version,
            SEQUENCES.c.updated_at,
            active.c.active,
        )
        .outerjoin(active, active.c.sequence_id == SEQUENCES.c.id)
        .order_by(SEQUENCES.c.key)
    )
    return {
        "sequences": [
            {
                "key": r.key,
                "name": r.name,
                "version": r.current_version,
                "updated_at": r.updated_at.isoformat(),
                "active_enrollments": r.active or 0,
            }
            for r in rows
        ]
    }


@router.get("/{key}")
async def get_sequence(key: str, conn: ReadConnDep, deps: DepsDep, _: Reader) -> dict[str, Any]:
    """The current definition, its versions, per-step email counts (sent, delivered, bounced,
    clicked, replied, converted, unsubscribed; per variant too), enrollments by outcome (active,
    completed, exited, cancelled), copy costs, drafting ahead per email step, and what the
    bandit knows per step and variant."""
    pinned = await registry.current(conn, key)
    if pinned is None:
        raise NotFound("unknown_sequence", f"no sequence '{key}'")
    versions = await conn.execute(
        select(VERSIONS.c.version, VERSIONS.c.checksum, VERSIONS.c.created_at)
        .where(VERSIONS.c.sequence_id == pinned.sequence_id)
        .order_by(VERSIONS.c.version)
    )
    return {
        "key": key,
        "version": pinned.version,
        "definition": pinned.definition.model_dump(mode="json", by_alias=True, exclude_none=True),
        "versions": [
            {"version": v.version, "checksum": v.checksum, "created_at": v.created_at.isoformat()}
            for v in versions
        ],
        # Counted as the console counts them (sequences.signals.counts).
        "steps": {
            step: found.view()
            for step, found in (await counts.emails(conn, pinned.sequence_id))
            .get(pinned.sequence_id, {})
            .items()
        },
        "enrollments": (await counts.enrollments(conn, pinned.sequence_id))
        .get(pinned.sequence_id, counts.Enrollments())
        .view(),
        "costs": await step_costs(conn, key, pinned.sequence_id, deps.settings.agent_model),
        # When each email step is drafted, the policy if no draft is ready when it is due, and
        # what drafting ahead did so far (sequences.review.ahead).
        "drafting": await ahead.step_report(
            conn, pinned.sequence_id, pinned.definition, deps.settings.draft_ahead
        ),
        "performance": stepstats.performance(
            await stepstats.arm_stats(conn, key), pinned.definition.adapt.goal
        ),
    }
