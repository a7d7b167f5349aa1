"""Request dependencies: the process's Deps, a connection per request, the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal, Role, authenticate
from sequences.deps import Deps


def get_deps(request: Request) -> Deps:
    deps: Deps = request.app.state.deps
    return deps


DepsDep = Annotated[Deps, Depends(get_deps)]


async def get_conn(deps: DepsDep) -> AsyncIterator[AsyncConnection]:
    """One transaction per request, committed in one place when the handler returns."""
    async with deps.engine.begin() as conn:
        yield conn


ConnDep = Annotated[AsyncConnection, Depends(get_conn)]


async def get_read_conn(deps: DepsDep) -> AsyncIterator[AsyncConnection]:
    """For GET handlers: reads never wait on (or block) the database's writers."""
    async with deps.reader.connect() as conn:
        yield conn


ReadConnDep = Annotated[AsyncConnection, Depends(get_read_conn)]


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    allowed = {Role.admin, *roles}

    async def check(request: Request, deps: DepsDep) -> Principal:
        header = request.headers.get("authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret:
            raise HTTPException(
                401, "missing bearer API key", headers={"WWW-Authenticate": "Bearer"}
            )
        async with deps.reader.connect() as conn:
            principal = await authenticate(conn, secret.strip())
        if principal is None:
            raise HTTPException(
                401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"}
            )
        if principal.role not in allowed:
            raise HTTPException(403, f"the '{principal.role}' role may not do this")
        return principal

    return check


Admin = Annotated[Principal, Depends(require())]
Enroller = Annotated[Principal, Depends(require(Role.enroll))]
Reader = Annotated[Principal, Depends(require(Role.enroll, Role.reviewer))]
Reviewer = Annotated[Principal, Depends(require(Role.reviewer))]
