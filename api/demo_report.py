"""The demo's closing table: per step, what was sent, clicked, converted and where people left."""

from __future__ import annotations

from collections import Counter, defaultdict

from sqlalchemy import select

from sequences.definitions import registry
from sequences.review.costs import step_costs
from sequences.settings import Settings
from sequences.store.db import make_engine
from sequences.store.tables import DRAFTS, ENROLLMENTS, EVENTS, MESSAGES, TIMELINE


async def step_table(
    settings: Settings, key: str
) -> tuple[list[str], dict[str, Counter[str]], Counter[str]]:
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            pinned = await registry.current(conn, key)
            assert pinned is not None
            table: dict[str, Counter[str]] = defaultdict(Counter)
            for row in await conn.execute(select(MESSAGES.c.step_id, MESSAGES.c.state)):
                table[row.step_id][row.state] += 1
            clicks = await conn.execute(
                select(MESSAGES.c.step_id, EVENTS.c.enrollment_id, EVENTS.c.is_bot)
                .join(MESSAGES, MESSAGES.c.id == EVENTS.c.message_pk)
                .where(EVENTS.c.type == "clicked")
                .distinct()
            )
            for click in clicks:
                table[click.step_id]["bot clicks" if click.is_bot else "clicked"] += 1
            outcomes: Counter[str] = Counter()
            ends = await conn.execute(
                select(
                    ENROLLMENTS.c.id,
                    ENROLLMENTS.c.status,
                    ENROLLMENTS.c.exit_reason,
                    ENROLLMENTS.c.position,
                )
            )
            for end in ends:
                table[end.position or "-"]["ended here"] += 1
                outcomes[f"{end.status}: {end.exit_reason}"] += 1
                if end.exit_reason == "exit_on: converted":
                    table[end.position or "-"]["converted"] += 1
        return [s.id for s in pinned.definition.steps], table, outcomes
    finally:
        await engine.dispose()


async def print_summary(settings: Settings, key: str) -> None:
    steps, table, outcomes = await step_table(settings, key)
    columns = ["sent", "bounced", "clicked", "bot clicks", "converted", "ended here"]
    print(f"\n{'step':<18}" + "".join(f"{c:>13}" for c in columns))
    print("-" * (18 + 13 * len(columns)))
    for step in steps:
        counts = table.get(step, Counter())
        print(f"{step:<18}" + "".join(f"{counts.get(c, 0):>13}" for c in columns))
    print("\nHow enrollments ended:")
    for outcome, n in outcomes.most_common():
        print(f"  {n:>3}  {outcome}")


async def print_agent_summary(settings: Settings, key: str) -> None:
    """Who wrote the copy, why (a sample of distinct rationales), reviews, and what it cost."""
    engine = make_engine(settings.resolved_database_url)
    try:
        async with engine.connect() as conn:
            pinned = await registry.current(conn, key)
            assert pinned is not None
            writers = Counter(
                r.copy_source for r in await conn.execute(select(MESSAGES.c.copy_source))
            )
            reviews = Counter(r.status for r in await conn.execute(select(DRAFTS.c.status)))
            drafted = await conn.execute(
                select(TIMELINE.c.step_id, TIMELINE.c.detail).where(TIMELINE.c.kind == "drafted")
            )
            rationales: dict[str, str] = {}
            for row in drafted:
                why = (row.detail or {}).get("rationale", "")
                rationales.setdefault(why, row.step_id)
            costs = await step_costs(conn, key, pinned.sequence_id, settings.agent_model)
    finally:
        await engine.dispose()
    print("\nWho wrote the emails:")
    for model, n in writers.most_common():
        print(f"  {n:>3}  {model}")
    print("Drafts through review: " + ", ".join(f"{n} {s}" for s, n in reviews.most_common()))
    print("Some of the agent's rationales:")
    for why, step in list(rationales.items())[:6]:
        print(f"  [{step}] {why}")
    print(f"\nCopy cost by step ({costs['model']}):")
    if costs["simulated"]:  # the stand-in's token counts are a formula of the text's length
        print(
            "  simulated: a stand-in model wrote this copy, so these tokens, prices and\n"
            "  latencies are its formula's, not a provider's meter; nothing was billed"
        )
    for step, c in costs["steps"].items():
        label = "  (simulated)" if c["simulated"] else ""
        print(
            f"  {step:<14} {c['emails']:>3} emails  {c['model_calls']:>3} calls  "
            f"{c['tokens_per_email'] or 0:>7} tokens/email  "
            f"${c['cost_per_email_usd'] or 0:.5f}/email{label}"
        )
