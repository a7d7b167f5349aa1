"""Health, metrics, OpenAPI, and the dripline command's own error messages."""

from __future__ import annotations

import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import pytest
import redis
from harness import make_settings, running_stack
from typer.testing import CliRunner

from api.cli import app
from sequences.mail.capture import CaptureServer


async def test_health_metrics_and_docs(
    tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with running_stack(settings, redis_db, capture, worker=False) as stack:
        health = await stack.client.get("/healthz")
        assert health.json() == {"status": "ok", "database": "ok", "redis": "ok"}
        metrics = await stack.client.get("/metrics", headers=stack.auth())
        assert metrics.status_code == 200
        assert "dripline_outbox_overdue 0.0" in metrics.text
        schema = (await stack.client.get("/openapi.json")).json()
        assert "/v1/enrollments" in schema["paths"] and "/v1/events" in schema["paths"]
        assert (await stack.client.get("/docs")).status_code == 200


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRIPLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def test_apply_reports_the_field_and_writes_nothing(cli_env: Path) -> None:
    bad = cli_env / "bad.yaml"
    bad.write_text(
        'key: cli\nname: C\nsender: {from: "a@acme.test"}\nsteps:\n  - id: w\n    wait: {for: 2x}\n'
    )
    result = CliRunner().invoke(app, ["apply", str(bad)])
    assert result.exit_code == 2
    assert "steps.0.wait.for" in result.output
    assert not (cli_env / "data" / "dripline.db").exists()
    missing = CliRunner().invoke(app, ["apply", str(cli_env / "nope.yaml")])
    assert missing.exit_code == 2 and "No such file" in missing.output


def test_apply_keys_and_dkim(cli_env: Path) -> None:
    example = Path(__file__).resolve().parent.parent / "sequences/examples/trial-onboarding.yaml"
    runner = CliRunner()
    assert "version 1 (new version)" in runner.invoke(app, ["apply", str(example)]).output
    assert "version 1 (unchanged)" in runner.invoke(app, ["apply", str(example)]).output
    key = runner.invoke(app, ["keys", "create", "crm", "--role", "enroll"])
    assert key.exit_code == 0 and re.fullmatch(r"dl_[\w-]{40,}\n", key.stdout)
    wrong = runner.invoke(app, ["keys", "create", "crm", "--role", "root"])
    assert wrong.exit_code == 2 and "root" in wrong.output
    dkim = runner.invoke(app, ["dkim", "keygen", "--domain", "acme.test"])
    assert dkim.exit_code == 0
    assert dkim.stdout.startswith('dripline._domainkey.acme.test. IN TXT "v=DKIM1; k=rsa; p=')
    assert (cli_env / "data" / "dkim_private.pem").exists()


def test_serve_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    """`dripline serve` on embedded services: after SIGTERM nothing it started is left."""
    port = _free_port()
    env = {**os.environ, "DRIPLINE_DATA_DIR": str(tmp_path / "data")}
    for name in ("DATABASE_URL", "REDIS_URL", "SMTP_HOST"):
        env.pop(name, None)
    dripline = str(Path(sys.executable).parent / "dripline")
    proc = subprocess.Popen(
        [dripline, "serve", "--port", str(port)], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        lines = _lines(proc, 3, within=30)
        valkey = next(line.split(": ", 1)[1].strip() for line in lines if "Valkey" in line)
        health = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
        assert health.json()["status"] == "ok"
        assert redis.Redis.from_url(valkey).ping()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        with pytest.raises(redis.ConnectionError):
            redis.Redis.from_url(valkey, socket_connect_timeout=1).ping()
    finally:
        if proc.poll() is None:  # a failed assertion: still let it stop what it started
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _lines(proc: subprocess.Popen[str], count: int, within: float) -> list[str]:
    """The first lines the process prints, failing (not hanging) if they do not come in time."""
    found: queue.Queue[str] = queue.Queue()
    stream = proc.stdout
    assert stream is not None

    def pump() -> None:
        for line in stream:
            found.put(line)

    threading.Thread(target=pump, daemon=True).start()
    return [found.get(timeout=within) for _ in range(count)]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def test_cli_errors_are_messages(cli_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runner = CliRunner()
    bad_domain = runner.invoke(app, ["dkim", "keygen", "--domain", "bad domain;"])
    assert bad_domain.exit_code == 2 and "invalid DKIM domain" in bad_domain.output
    assert not (cli_env / "data" / "dkim_private.pem").exists()  # nothing made for a bad call
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://nobody:secret@127.0.0.1:1/x")
    down = runner.invoke(app, ["db", "upgrade"])
    assert down.exit_code == 2
    assert "cannot use the database at postgresql+asyncpg://nobody:***@127.0.0.1:1/x" in down.output
    assert "secret" not in down.output


def test_a_settled_process_collects_less_often_and_keeps_what_it_frees() -> None:
    """settle_heap, as `dripline serve` and `dripline worker` call it once set up: the
    collector's thresholds change and the objects alive then are frozen out of its scans;
    cyclic garbage made afterwards is still collected. Run in a child, so this test process
    keeps the default collector."""
    script = """
import gc, weakref
from sequences.runtime import GC_THRESHOLDS, settle_heap
settle_heap()
assert gc.get_threshold() == GC_THRESHOLDS, gc.get_threshold()
assert gc.get_freeze_count() > 10_000, gc.get_freeze_count()
class Node: pass
a, b = Node(), Node()
a.other, b.other = b, a
gone = weakref.ref(a)
del a, b
gc.collect()
assert gone() is None
print("settled")
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "settled"
