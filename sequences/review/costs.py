"""What the copy costs: tokens and an estimated price per email, per step, from the ledger.

A step whose calls a stand-in model answered (agents.standin) is marked ``simulated``: its
tokens and latency come from the stand-in's formula, so its price is not a measurement.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncConnection

from agents.config import ModelConfig
from agents.standin import is_stand_in
from sequences.store.tables import ENROLLMENTS, MESSAGES, MODEL_CALLS, MessageState


async def step_costs(
    conn: AsyncConnection, sequence_key: str, sequence_id: int, prices: ModelConfig
) -> dict[str, Any]:
    calls = await conn.execute(
        select(
            MODEL_CALLS.c.step_id,
            func.count().label("calls"),
            func.sum(MODEL_CALLS.c.prompt_tokens).label("prompt"),
            func.sum(MODEL_CALLS.c.completion_tokens).label("completion"),
            func.sum(MODEL_CALLS.c.cached_tokens).label("cached"),
            func.avg(MODEL_CALLS.c.latency_ms).label("latency"),
        )
        .where(MODEL_CALLS.c.sequence_key == sequence_key)
        .group_by(MODEL_CALLS.c.step_id)
    )
    counted = (
        await conn.execute(
            select(MESSAGES.c.step_id, func.count())
            .join(ENROLLMENTS, ENROLLMENTS.c.id == MESSAGES.c.enrollment_id)
            .where(
                ENROLLMENTS.c.sequence_id == sequence_id,
                MESSAGES.c.state != MessageState.failed,
            )
            .group_by(MESSAGES.c.step_id)
        )
    ).all()
    emails: dict[str, int] = {step: n for step, n in counted}
    stand_ins = await _stand_in_steps(conn, sequence_key)
    steps: dict[str, Any] = {}
    for row in calls:
        prompt, completion, cached = (
            int(row.prompt or 0),
            int(row.completion or 0),
            int(row.cached or 0),
        )
        sent = emails.get(row.step_id, 0)
        cost = prices.cost(prompt, cached, completion)
        steps[row.step_id] = {
            "emails": sent,
            "model_calls": row.calls,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cached_tokens": cached,
            "mean_latency_ms": round(float(row.latency or 0)),
            "tokens_per_email": round((prompt + completion) / sent, 1) if sent else None,
            "cost_usd": round(cost, 6),
            "cost_per_email_usd": round(cost / sent, 6) if sent else None,
            "simulated": row.step_id in stand_ins,
        }
    return {
        "model": prices.model if prices.configured else "offline-composer",
        "prices_usd_per_million_tokens": {
            "input": prices.price_input,
            "cached_input": prices.price_cached,
            "output": prices.price_output,
        },
        "simulated": bool(stand_ins),  # some figures below come from a stand-in model
        "steps": steps,
    }


async def _stand_in_steps(conn: AsyncConnection, sequence_key: str) -> set[str]:
    """The steps with at least one model call answered by a stand-in model."""
    rows = await conn.execute(
        select(MODEL_CALLS.c.step_id, MODEL_CALLS.c.model)
        .where(MODEL_CALLS.c.sequence_key == sequence_key)
        .distinct()
    )
    return {row.step_id for row in rows if is_stand_in(row.model)}
