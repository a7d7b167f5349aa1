"""`dripline simulate` as a user runs it: progress on stderr, and a clean stop on a signal.

A real subprocess on embedded services (Valkey, SMTP capture, SQLite). It is interrupted once
its progress says emails have gone out, and must then stop the engine and the services, print
the report so far, and exit 130 without a traceback.
"""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
from io import StringIO
from pathlib import Path

import pytest

from api.simprogress import ProgressLine
from sequences.embedded import is_valkey

SEQUENCE = """key: stoppable
name: Stoppable
sender: {from: "Dana <dana@acme.test>"}
steps:
  - id: hello
    email: {brief: hello, fallback: {subject: "Hello", body: "Nothing to click here."}}
  - id: pause
    wait: {for: 2d}
  - id: tour
    email:
      brief: tour
      cta: {text: Take the tour, url: "https://acme.test/tour"}
      fallback: {subject: "Tour", body: "B."}
  - id: rest
    wait: {for: 60d}
"""
PROGRESS = re.compile(r"day +([\d.]+)/\d+ .* (\d+) emails sent +(\d+) events")


def _pump(stream: object, into: queue.Queue[str]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        into.put(line)


def _progress_with_mail(lines: queue.Queue[str], seen: list[str], within: float) -> None:
    """Read progress lines until one says emails went out (fails, rather than hangs)."""
    while True:
        line = lines.get(timeout=within)
        seen.append(line)
        found = PROGRESS.search(line)
        if found and int(found.group(2)) > 0:
            return


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_an_interrupted_simulation_stops_cleanly_with_the_report_so_far(
    tmp_path: Path, signum: signal.Signals
) -> None:
    sequence = tmp_path / "stoppable.yaml"
    sequence.write_text(SEQUENCE)
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.pop("SMTP_HOST", None)
    dripline = str(Path(sys.executable).parent / "dripline")
    args = [str(sequence), "--contacts", "30", "--days", "60", "--day-seconds", "0.5"]
    proc = subprocess.Popen(
        [dripline, "simulate", *args],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    errors: queue.Queue[str] = queue.Queue()
    output: queue.Queue[str] = queue.Queue()
    pumps = [
        threading.Thread(target=_pump, args=(stream, into), daemon=True)
        for stream, into in ((proc.stderr, errors), (proc.stdout, output))
    ]
    for pump in pumps:
        pump.start()
    stderr: list[str] = []
    try:
        _progress_with_mail(errors, stderr, within=60)
        pidfile = tmp_path / ".dripline-sim" / "valkey" / "valkey.pid"
        valkey = int(pidfile.read_text().strip())
        proc.send_signal(signum)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    for pump in pumps:
        pump.join(timeout=10)  # each stream up to its end
    stderr += list(errors.queue)
    stdout = "".join(output.queue)
    everything = "".join(stderr) + stdout
    assert proc.returncode == 130, everything
    assert "Traceback" not in everything
    assert f"{signum.name}: stopping" in "".join(stderr)
    assert "Stopped at sequence day" in stdout and "the report so far" in stdout
    hello = next(line for line in stdout.splitlines() if line.startswith("hello "))
    assert hello.split()[1:3] != ["0", "0"] and " - " in hello  # sent, and nothing to click
    assert "no link to click" in stdout
    assert not is_valkey(valkey)  # the embedded services were stopped too


class Terminal(StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_redraws_one_line_on_a_terminal_and_writes_a_line_a_day_elsewhere() -> None:
    terminal, log = Terminal(), StringIO()
    for stream in (terminal, log):
        progress = ProgressLine(10, stream)
        for tenth in range(0, 31, 5):  # days 0.0 to 3.0 by half days
            progress.update(tenth / 10, sent=tenth, events=tenth // 5)
        progress.close()

    redrawn = terminal.getvalue()
    assert redrawn.count("\r") == 7 and redrawn.endswith("\n") and redrawn.count("\n") == 1
    assert "day   3.0/10 [#######-----------------]  30 emails sent  6 events" in redrawn
    lines = log.getvalue().splitlines()
    assert [line.split("/")[0] for line in lines] == [f"day   {d}.0" for d in range(4)]
    assert "\r" not in log.getvalue()
