"""The API as the benchmarks serve it: ``uvicorn benchmarks.api_app:create --factory``.

The same application ``dripline serve`` runs (``api.app.create_app``), built from the settings
in the environment, so uvicorn can start it in several worker processes. With
``DRIPLINE_BENCH_PROFILE`` set to a file name, two more routes let the benchmark measure a
window of requests from inside the (single) server process:

- ``POST /_bench/profile/start?cprofile=true`` counts and times every statement (and, with
  ``cprofile``, runs cProfile) from now on;
- ``POST /_bench/profile/stop`` stops, saves the cProfile stats to that file and answers with
  the statement counts and times, the transactions, pool checkouts and the process's CPU.
"""

from __future__ import annotations

import cProfile
import os
import time
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request

from api.app import create_app
from benchmarks.profiling import QueryCounter
from sequences.runtime import settle_heap
from sequences.settings import Settings

PROFILE_ENV = "DRIPLINE_BENCH_PROFILE"


def create() -> FastAPI:
    settings = Settings()
    if not settings.redis_url:
        raise RuntimeError("REDIS_URL is not set: the benchmark's server needs its Redis")
    app = create_app(settings, redis_url=settings.redis_url)
    out = os.environ.get(PROFILE_ENV)
    if out:
        app.include_router(_profile_router(out))
    settle_heap()  # as `dripline serve` does
    return app


@dataclass
class _Window:
    queries: QueryCounter
    profiler: cProfile.Profile | None
    cpu: float
    wall: float


def _profile_router(out: str) -> APIRouter:
    router = APIRouter(prefix="/_bench/profile", include_in_schema=False)
    windows: list[_Window] = []

    @router.post("/start")
    async def start(request: Request, cprofile: bool = False) -> dict[str, Any]:
        if windows:
            return {"started": False}
        engine = request.app.state.deps.engine
        queries = QueryCounter(engine, time_statements=True)
        profiler = cProfile.Profile() if cprofile else None
        windows.append(_Window(queries, profiler, time.process_time(), time.perf_counter()))
        if profiler is not None:
            profiler.enable()
        return {"started": True}

    @router.post("/stop")
    async def stop() -> dict[str, Any]:
        window = windows.pop()
        if window.profiler is not None:
            window.profiler.disable()
            window.profiler.dump_stats(out)
        window.queries.close()
        q = window.queries
        return {
            "statements": dict(q.statements),
            "statement_seconds": dict(q.seconds),
            "begins": q.begins,
            "checkouts": q.checkouts,
            "connects": q.connects,
            "cpu_seconds": time.process_time() - window.cpu,
            "wall_seconds": time.perf_counter() - window.wall,
            "profile": out if window.profiler is not None else None,
        }

    return router
