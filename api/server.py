"""Running the API and a worker in one process, on embedded services where none are set."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass

import uvicorn
from arq.worker import Worker

from agents.devserver import QuietServer
from api.app import create_app
from sequences.embedded import Embedded, Endpoints
from sequences.mail.capture import RejectRule
from sequences.runtime import settle_heap
from sequences.settings import Settings
from sequences.worker import build_worker, stop_worker


@dataclass
class Running:
    endpoints: Endpoints
    server: uvicorn.Server
    worker: Worker | None
    serving: asyncio.Task[None]


@contextlib.asynccontextmanager
async def running(
    settings: Settings,
    *,
    host: str,
    port: int,
    with_worker: bool = True,
    rules: tuple[RejectRule, ...] = (),
) -> AsyncIterator[Running]:
    """API (and worker) up until the block ends; everything started is stopped again."""
    with Embedded(settings, rules=rules) as endpoints:
        app = create_app(settings, redis_url=endpoints.redis_url, inbox=endpoints.inbox)
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", lifespan="on")
        server = QuietServer(config)
        worker = (
            build_worker(settings, redis_url=endpoints.redis_url, smtp=endpoints.smtp)
            if with_worker
            else None
        )
        tasks = [asyncio.create_task(server.serve())]
        if worker is not None:
            tasks.append(asyncio.create_task(worker.async_run()))
        try:
            while not server.started:
                if tasks[0].done():
                    tasks[0].result()
                await asyncio.sleep(0.02)
            yield Running(endpoints, server, worker, tasks[0])
        finally:
            server.should_exit = True  # uvicorn drains and runs the lifespan's shutdown
            if worker is not None:
                await stop_worker(worker, tasks[1])
            await asyncio.gather(*tasks, return_exceptions=True)


async def serve_forever(settings: Settings, *, host: str, port: int, with_worker: bool) -> None:
    async with running(settings, host=host, port=port, with_worker=with_worker) as run:
        settle_heap()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, setattr, run.server, "should_exit", True)
        if not settings.redis_url:
            print(f"embedded Valkey: {run.endpoints.redis_url}")
        if run.endpoints.inbox is not None:
            print(f"dev inbox (captured emails): {run.endpoints.inbox}")
        print(f"Console on http://{host}:{port}/console (sign in with a reviewer or admin key)")
        print(f"Dripline API on http://{host}:{port}  (OpenAPI at /docs)", flush=True)
        await run.serving  # until Ctrl-C: uvicorn handles the signal and returns
