"""Request dependencies: the process's Deps, a connection per request, the caller's key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Annotated, Any

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncConnection

from api.auth import Principal, Role, authenticate
from sequences.deps import Deps


async def get_deps(request: Request) -> Deps:
    """Async on purpose: FastAPI runs a plain ``def`` dependency in its thread pool, a thread
    hop per request for an attribute read."""
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


# auto_error=False: a missing or malformed header gets our 401 (with WWW-Authenticate), not
# FastAPI's 403; the scheme is what puts "bearer" in the OpenAPI document.
bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dl_...`")
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]


def require(*roles: Role) -> Callable[..., Coroutine[Any, Any, Principal]]:
    allowed = {Role.admin, *roles}

    async def check(credentials: Credentials, deps: DepsDep) -> Principal:
        secret = credentials.credentials.strip() if credentials else ""
        if not secret:
            raise HTTPException(
                401, "missing bearer API key", headers={"WWW-Authenticate": "Bearer"}
            )
        async with deps.lookups.connect() as conn:
            principal = await authenticate(conn, secret)
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


_metrics_key = require(Role.metrics)


async def metrics_reader(credentials: Credentials, deps: DepsDep) -> Principal | None:
    """``/metrics``: a metrics (or admin) key, unless DRIPLINE_METRICS_PUBLIC opens it to all
    (for a scraper inside a private network that cannot send a header)."""
    if deps.settings.metrics_public:
        return None
    return await _metrics_key(credentials, deps)


MetricsReader = Annotated[Principal | None, Depends(metrics_reader)]
