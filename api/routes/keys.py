"""API keys for admins: list them and revoke one (its console sessions end with it)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query

from api import errors
from api.auth import KeyInfo, list_keys, revoke_key
from api.deps import Admin, ConnDep, DepsDep, ReadConnDep

router = APIRouter(prefix="/v1/keys", tags=["keys"])


def key_view(key: KeyInfo) -> dict[str, Any]:
    return {
        "name": key.name,
        "prefix": key.prefix,
        "role": key.role.value,
        "created_at": key.created_at,
        "revoked_at": key.revoked_at,
    }


@router.get("")
async def get_keys(
    conn: ReadConnDep,
    _: Admin,
    revoked: Annotated[bool, Query(description="Include revoked keys.")] = False,
) -> dict[str, Any]:
    """Every live key (name, prefix, role, created); never a secret."""
    return {"keys": [key_view(key) for key in await list_keys(conn, revoked=revoked)]}


@router.post("/{name_or_prefix}/revoke", responses=errors.documented(404, 409))
async def revoke(
    name_or_prefix: Annotated[str, Path(max_length=200)],
    conn: ConnDep,
    deps: DepsDep,
    _: Admin,
) -> dict[str, Any]:
    """Revoke the one live key with this name or prefix; 409 when several match."""
    return key_view(await revoke_key(conn, name_or_prefix, deps.clock.now()))
