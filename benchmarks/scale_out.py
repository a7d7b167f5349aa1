"""Scale-out for the send benchmark: the same drain in 1 and in K worker processes sharing one
database, Redis and relay (``engine_throughput --workers K``).

Each phase seeds N new enrollments, then starts the processes. Each process (this module run
as ``python -m benchmarks.scale_out``) builds the worker's dependencies, says ``ready`` and
waits for ``go`` on its standard input, so start-up is not timed; then it runs
``sequences.runner.run_due`` until a pass finds nothing due, and prints the rows it ran and
the CPU it used meanwhile. The
phase is timed from ``go`` to the last process's exit; the sink's count and the database's
states are checked after it, as for the single drain.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass
from typing import Any

import uvloop


@dataclass
class Phase:
    processes: int
    messages: int
    seconds: float
    cpu: float
    ran: list[int]

    @property
    def rate(self) -> float:
        return self.messages / self.seconds


async def run_phase(env: dict[str, str], processes: int) -> tuple[float, float, list[int]]:
    """``processes`` drain workers over ``env``'s settings; (seconds, their CPU, rows each ran)."""
    children = [
        await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "benchmarks.scale_out",
            env={**os.environ, **env},
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        for _ in range(processes)
    ]
    for child in children:
        assert child.stdout is not None
        line = await child.stdout.readline()
        if line.strip() != b"ready":
            raise RuntimeError(f"a drain worker did not start: {line!r}")
    start = time.perf_counter()
    for child in children:
        assert child.stdin is not None
        child.stdin.write(b"go\n")
        await child.stdin.drain()
    outputs = await asyncio.gather(*(c.communicate() for c in children))
    seconds = time.perf_counter() - start
    reports = [json.loads(out.strip().splitlines()[-1]) for out, _ in outputs]
    return seconds, sum(r["cpu"] for r in reports), [r["ran"] for r in reports]


async def _serve() -> None:
    """The child: a worker's dependencies, then run_due until nothing is due."""
    from sequences.runner import run_due
    from sequences.runtime import open_deps, settle_heap
    from sequences.settings import Settings

    settings = Settings()
    if settings.smtp_host is None or settings.redis_url is None:
        raise SystemExit("a drain worker needs SMTP_HOST and REDIS_URL")
    smtp = (settings.smtp_host, settings.smtp_port)
    async with open_deps(
        settings, redis_url=settings.redis_url, smtp=smtp, run_migrations=False
    ) as deps:
        settle_heap()  # as `dripline worker` does
        print("ready", flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
        total, cpu = 0, time.process_time()
        while ran := await run_due(deps):
            total += ran
        print(json.dumps({"ran": total, "cpu": time.process_time() - cpu}), flush=True)


def report(phases: list[Phase], ceiling: Any) -> None:
    print("3. Scale-out: the same drain in worker processes sharing the database and the relay")
    base = phases[0].rate
    for phase in phases:
        ratio = f", {phase.rate / base:.2f}x of one process" if phase is not phases[0] else ""
        vs = f", {phase.rate / ceiling.rate:.2f}x of the ceiling" if ceiling is not None else ""
        label = f"{phase.processes} process{'es' if phase.processes > 1 else ''}"
        print(
            f"   {label:<18} {phase.rate:,.0f} sends/s "
            f"({phase.messages} in {phase.seconds:.2f} s{ratio}{vs}); workers' CPU "
            f"{phase.cpu / phase.messages * 1000:.2f} ms per send; rows per process {phase.ran}"
        )


if __name__ == "__main__":
    uvloop.run(_serve())  # the loop `dripline worker` runs on
