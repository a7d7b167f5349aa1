"""py-spy on another process: record while a benchmark runs, then the frames that took the time.

``py-spy record --format raw`` writes one line per distinct stack (``frame;frame;... count``).
:func:`report` prints the busiest leaf frames (self time) and, inclusively, the frames from our
own packages, so a figure that misses its goal comes with where the process spent its samples.
Sampling does not slow the target the way cProfile does, so the shares are fair.
"""

from __future__ import annotations

import asyncio
import shutil
import signal
import sys
from collections import Counter
from pathlib import Path

OURS = ("sequences/", "api/", "agents/")


def available() -> str | None:
    """The py-spy executable (the venv's, then PATH), or None."""
    local = Path(sys.executable).parent / "py-spy"
    return str(local) if local.exists() else shutil.which("py-spy")


async def start(pid: int, out: Path) -> asyncio.subprocess.Process:
    exe = available()
    if exe is None:
        raise RuntimeError("py-spy is not installed (pip install -c constraints.txt py-spy)")
    return await asyncio.create_subprocess_exec(
        *(exe, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"),
        *("--nonblocking", "--output", str(out)),
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def stop(process: asyncio.subprocess.Process) -> None:
    """Ctrl-C, as at a terminal: py-spy writes its file, then exits."""
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            process.kill()
            await process.wait()


def report(out: Path, top: int = 15) -> None:
    leaves: Counter[str] = Counter()
    ours: Counter[str] = Counter()
    total = 0
    for line in out.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = stack.split(";")
        leaves[_short(frames[-1])] += samples
        for frame in {_short(f) for f in frames if any(o in f for o in OURS)}:
            ours[frame] += samples
    print(f"   py-spy: {total} samples (100/s); self time by leaf frame:")
    for frame, samples in leaves.most_common(top):
        print(f"   {samples / total:6.1%}  {frame}")
    print("   inclusive, our own frames:")
    for frame, samples in ours.most_common(top):
        print(f"   {samples / total:6.1%}  {frame}")


def _short(frame: str) -> str:
    """``func (path/to/module.py:12)`` with the path cut after site-packages or the repo."""
    for marker in ("site-packages/", "/work/main/", "python3.11/"):
        if marker in frame:
            head, _, tail = frame.partition("(")
            return f"{head}({tail.split(marker, 1)[-1]}"
    return frame
