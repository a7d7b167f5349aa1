"""Sequence definitions in the database: apply makes a version when the content changed."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Engine, bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from sequences.definitions.document import EmailStep, SequenceDefinition
from sequences.definitions.loading import definition_checksum, parse_definition
from sequences.definitions.refusals import DefinitionError, FieldError
from sequences.store.tables import SEQUENCES, VERSIONS


@dataclass(frozen=True)
class Applied:
    key: str
    version: int
    version_id: int
    created: bool  # a new version was made (False: identical to the current one)


@dataclass(frozen=True)
class Pinned:
    sequence_id: int
    version_id: int
    version: int
    definition: SequenceDefinition


async def apply(conn: AsyncConnection, defn: SequenceDefinition, now: datetime) -> Applied:
    checksum = definition_checksum(defn)
    document = defn.model_dump(mode="json", by_alias=True, exclude_none=True)
    current = (
        await conn.execute(
            select(
                SEQUENCES.c.id, VERSIONS.c.id.label("vid"), VERSIONS.c.version, VERSIONS.c.checksum
            )
            .join(VERSIONS, VERSIONS.c.sequence_id == SEQUENCES.c.id)
            .where(SEQUENCES.c.key == defn.key, VERSIONS.c.version == SEQUENCES.c.current_version)
        )
    ).first()
    if current is not None and current.checksum == checksum:
        return Applied(defn.key, current.version, current.vid, created=False)
    if current is None:
        seq_id = (
            await conn.execute(
                insert(SEQUENCES)
                .values(
                    key=defn.key, name=defn.name, current_version=1, created_at=now, updated_at=now
                )
                .returning(SEQUENCES.c.id)
            )
        ).scalar_one()
        version = 1
    else:
        seq_id, version = current.id, current.version + 1
        await conn.execute(
            update(SEQUENCES)
            .where(SEQUENCES.c.id == seq_id)
            .values(name=defn.name, current_version=version, updated_at=now)
        )
    vid = (
        await conn.execute(
            insert(VERSIONS)
            .values(
                sequence_id=seq_id,
                version=version,
                checksum=checksum,
                definition=document,
                created_at=now,
            )
            .returning(VERSIONS.c.id)
        )
    ).scalar_one()
    return Applied(defn.key, version, vid, created=True)


# Built once (every enrollment and event batch asks): building the expression and its cache
# key per call cost more than running the cached statement.
_CURRENT = (
    select(SEQUENCES.c.id, VERSIONS.c.id.label("vid"), VERSIONS.c.version)
    .join(VERSIONS, VERSIONS.c.sequence_id == SEQUENCES.c.id)
    .where(SEQUENCES.c.key == bindparam("key"), VERSIONS.c.version == SEQUENCES.c.current_version)
)


async def current(conn: AsyncConnection, key: str) -> Pinned | None:
    row = (await conn.execute(_CURRENT, {"key": key})).first()
    if row is None:
        return None
    return Pinned(row.id, row.vid, row.version, await load_version(conn, row.vid))


async def load_version(conn: AsyncConnection, version_id: int) -> SequenceDefinition:
    """Versions never change once written, so their parsed form is cached per process."""
    key = (_database(conn), version_id)
    cached = _CACHE.get(key)
    if cached is not None:
        return cached
    document = (
        await conn.execute(select(VERSIONS.c.definition).where(VERSIONS.c.id == version_id))
    ).scalar_one()
    defn = parse_definition(document)
    _CACHE[key] = defn
    return defn


# Keyed by database too: one process may talk to several (tests, a migration tool).
_CACHE: dict[tuple[str, int], SequenceDefinition] = {}
_NAMES: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()


def _database(conn: AsyncConnection) -> str:
    """The engine's URL as text, rendered once per engine (hot: every event batch asks)."""
    engine = conn.sync_engine
    name = _NAMES.get(engine)
    if name is None:
        name = _NAMES[engine] = engine.url.render_as_string()
    return name


async def all_current(conn: AsyncConnection) -> list[Pinned]:
    rows = await conn.execute(
        select(SEQUENCES.c.id, VERSIONS.c.id.label("vid"), VERSIONS.c.version)
        .join(VERSIONS, VERSIONS.c.sequence_id == SEQUENCES.c.id)
        .where(VERSIONS.c.version == SEQUENCES.c.current_version)
    )
    return [Pinned(r.id, r.vid, r.version, await load_version(conn, r.vid)) for r in rows.all()]


def check_layouts(defn: SequenceDefinition, exists: Callable[[str], bool]) -> None:
    """Refuse a definition naming a layout that is not there, before any contact reaches it."""
    errors = [] if exists(defn.layout) else [FieldError("layout", f"no layout '{defn.layout}'")]
    for number, step in enumerate(defn.steps):
        if isinstance(step, EmailStep) and step.email.layout and not exists(step.email.layout):
            path = f"steps.{number}.email.layout"
            errors.append(FieldError(path, f"no layout '{step.email.layout}'"))
    if errors:
        raise DefinitionError(errors)
