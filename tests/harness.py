"""A running Dripline for tests: the real app over ASGI, a real arq worker, real SMTP capture."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from arq.worker import Worker
from fastapi import FastAPI

from api.app import create_app
from api.auth import Role, create_key
from sequences.deps import Deps
from sequences.kit.clock import Clock
from sequences.mail.capture import CapturedMessage, CaptureServer
from sequences.settings import Settings
from sequences.worker import build_worker, stop_worker

BROWSER_UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/130.0 Safari/537.36"


@dataclass
class Stack:
    client: httpx.AsyncClient
    deps: Deps
    capture: CaptureServer
    admin_key: str
    app: FastAPI

    def auth(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.admin_key}"}

    async def key(self, role: Role) -> str:
        async with self.deps.engine.begin() as conn:
            return await create_key(conn, f"test-{role}", role, datetime.now(UTC))

    async def apply(self, key: str, yaml_text: str) -> httpx.Response:
        return await self.client.put(
            f"/v1/sequences/{key}",
            content=yaml_text,
            headers={**self.auth(), "Content-Type": "application/yaml"},
        )

    async def enroll(self, sequence: str, email: str, **contact: Any) -> httpx.Response:
        body = {"sequence": sequence, "contact": {"email": email, **contact}}
        return await self.client.post("/v1/enrollments", json=body, headers=self.auth())

    async def enrollment(self, enrollment_id: str) -> dict[str, Any]:
        response = await self.client.get(f"/v1/enrollments/{enrollment_id}", headers=self.auth())
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def mail_to(self, address: str) -> list[CapturedMessage]:
        return [m for m in self.capture.messages() if address in m.to]


async def eventually(
    check: Callable[[], Awaitable[Any]], *, within: float = 20.0, interval: float = 0.1
) -> Any:
    """Poll until ``check`` returns something truthy; fail with the last value after ``timeout``."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = await check()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {within}s; last value: {last!r}")


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    redis_url: str,
    capture: CaptureServer,
    *,
    worker: bool = True,
    clock: Clock | None = None,
) -> AsyncIterator[Stack]:
    """``clock`` is the API's (the worker keeps the system clock)."""
    app = create_app(settings, redis_url=redis_url, inbox=capture.directory, clock=clock)
    async with app.router.lifespan_context(app):
        deps: Deps = app.state.deps
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://dripline.test"
        ) as client:
            async with deps.engine.begin() as conn:
                admin = await create_key(conn, "test-admin", Role.admin, datetime.now(UTC))
            runner: Worker | None = None
            task: asyncio.Task[None] | None = None
            if worker:
                runner = build_worker(
                    settings, redis_url=redis_url, smtp=(capture.host, capture.port)
                )
                task = asyncio.create_task(runner.async_run())
            try:
                yield Stack(client, deps, capture, admin, app)
            finally:
                if runner is not None and task is not None:
                    await stop_worker(runner, task)


class WorkerProcess:
    """``dripline worker`` as a real subprocess, as it runs in production."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env = env
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        dripline = str(Path(sys.executable).parent / "dripline")
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen([dripline, "worker"], env=self.env, stdout=out, stderr=out)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=10)

    def terminate(self) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def make_settings(tmp_path: Path, database_url: str, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DRIPLINE_DATA_DIR": str(tmp_path / "data"),
        "DATABASE_URL": database_url,
        "DRIPLINE_DAY_SECONDS": 1.0,
        "DRIPLINE_PUBLIC_URL": "http://dripline.test",
        "DKIM_DOMAIN": "acme.test",
        "DRIPLINE_RETRY_BASE_SECONDS": 0.2,
        "DRIPLINE_BOT_CLICK_SECONDS": 0.0,
        # Most tests pin when copy is drafted to the due time; tests/test_ahead.py drafts ahead.
        "DRIPLINE_DRAFT_AHEAD": "0",
    }
    values.update(overrides)
    return Settings.model_validate(values)
