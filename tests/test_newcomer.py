"""A newcomer's path: README's "Running it" works at any hour on a fresh data directory, `serve
--port` keeps the links in emails on that port, every command says in one line when Redis or
PostgreSQL does not answer, and the addresses the README and the examples use are accepted."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from api.cli import app
from api.preflight import align_public_url
from sequences.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")
DOWN_DB = "postgresql+asyncpg://nobody:secret@127.0.0.1:1/x"
DOWN_REDIS = "redis://:secret@127.0.0.1:1/0"
WAIT = 60.0  # seconds a step may take on a loaded machine before the test fails


def _running_it() -> str:
    return README.split("## Running it", 1)[1].split("\n## ", 1)[0]


def test_the_readme_s_running_it_applies_hello_and_enrolls_into_it() -> None:
    section = _running_it()
    assert ".venv/bin/dripline apply sequences/examples/hello.yaml" in section
    assert '"sequence": "hello"' in section
    assert "weekdays, 09:00-17:00 in the contact's time zone" in section  # the example's window
    assert "../shared" not in README
    for doc in re.findall(r"\]\((docs/[a-z]+\.md)\)", README):
        assert (ROOT / doc).is_file(), doc


# One-line errors -------------------------------------------------------------------------------


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRIPLINE_DATA_DIR", str(tmp_path / "data"))
    for name in ("DATABASE_URL", "REDIS_URL", "SMTP_HOST", "DRIPLINE_PUBLIC_URL"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def _one_line_error(args: list[str]) -> str:
    result = CliRunner().invoke(app, args)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 2, result.output
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output and "secret" not in result.output
    return lines[0]


EXAMPLE = str(ROOT / "sequences" / "examples" / "hello.yaml")
COMMANDS = [
    ["serve", "--port", "1"],
    ["worker"],
    ["apply", EXAMPLE],
    ["keys", "create", "crm", "--role", "enroll"],
    ["keys", "list"],
    ["db", "upgrade"],
]


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_an_unreachable_database_is_one_line_in_every_command(
    args: list[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch, redis_server_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", DOWN_DB)
    if args == ["worker"]:  # a worker needs both; the database is the one that is down
        monkeypatch.setenv("REDIS_URL", redis_server_url)
        monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    line = _one_line_error(args)
    assert line.startswith("error: cannot use the database at postgresql+asyncpg://nobody:***@")


@pytest.mark.parametrize("args", [["serve", "--port", "1"], ["worker"]], ids=["serve", "worker"])
def test_an_unreachable_redis_is_one_line(
    args: list[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", DOWN_REDIS)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    line = _one_line_error(args)
    assert line.startswith("error: cannot reach Redis at redis://:***@127.0.0.1:1/0 (REDIS_URL)")


@pytest.mark.parametrize("args", COMMANDS, ids=lambda a: " ".join(a[:2]))
def test_a_database_url_sqlalchemy_cannot_use_is_one_line(
    args: list[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch, redis_server_url: str
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgres://nobody:secret@127.0.0.1/x")  # no such dialect
    monkeypatch.setenv("REDIS_URL", redis_server_url)
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    line = _one_line_error(args)
    assert "is not a URL SQLAlchemy can use" in line and "postgresql+asyncpg://" in line


@pytest.mark.parametrize("args", [["serve", "--port", "1"], ["worker"]], ids=["serve", "worker"])
def test_a_redis_url_without_a_scheme_is_one_line(
    args: list[str], cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", "localhost:6379")
    monkeypatch.setenv("SMTP_HOST", "127.0.0.1")
    assert _one_line_error(args).startswith("error: REDIS_URL localhost:6379 is not a Redis URL")


# serve --port and DRIPLINE_PUBLIC_URL ----------------------------------------------------------


def test_the_public_url_follows_the_port_unless_it_was_set(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings()
    assert align_public_url(settings, "127.0.0.1", 8123) is None
    assert settings.public_url == "http://127.0.0.1:8123"
    monkeypatch.setenv("DRIPLINE_PUBLIC_URL", "https://mail.example.com")
    behind_a_proxy = Settings()
    assert align_public_url(behind_a_proxy, "0.0.0.0", 8123) is None
    assert behind_a_proxy.public_url == "https://mail.example.com"
    monkeypatch.setenv("DRIPLINE_PUBLIC_URL", "http://127.0.0.1:8000")
    stale = Settings()
    warning = align_public_url(stale, "127.0.0.1", 8123)
    assert warning is not None and "listens on http://127.0.0.1:8123" in warning
    assert stale.public_url == "http://127.0.0.1:8000"  # what was set is kept, and said


def test_serve_warns_when_the_public_url_names_another_local_port(
    cli_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DRIPLINE_PUBLIC_URL", "http://localhost:8000")
    monkeypatch.setenv("REDIS_URL", DOWN_REDIS)  # so it stops after the checks
    result = CliRunner().invoke(app, ["serve", "--port", "8123"])
    assert result.exit_code == 2
    assert "warning: DRIPLINE_PUBLIC_URL is http://localhost:8000 but the API" in result.output


# README's "Running it", on a real `dripline serve` ---------------------------------------------


@dataclass
class Served:
    base: str
    data: Path
    env: dict[str, str]

    def cli(self, *args: str) -> str:
        dripline = str(Path(sys.executable).parent / "dripline")
        done = subprocess.run(
            [dripline, *args], env=self.env, capture_output=True, text=True, timeout=WAIT
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    """`dripline serve --port N` on embedded services, as README's "Running it" starts it."""
    port = _free_port()
    env = {**os.environ, "DRIPLINE_DATA_DIR": str(tmp_path / ".dripline")}
    for name in ("DATABASE_URL", "REDIS_URL", "SMTP_HOST", "DRIPLINE_PUBLIC_URL"):
        env.pop(name, None)
    dripline = str(Path(sys.executable).parent / "dripline")
    proc = subprocess.Popen(
        [dripline, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        _wait_for_line(proc, "Dripline API on")
        yield Served(f"http://127.0.0.1:{port}", tmp_path / ".dripline", env)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=WAIT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_for_line(proc: subprocess.Popen[str], text: str) -> None:
    lines: queue.Queue[str] = queue.Queue()
    stream = proc.stdout
    assert stream is not None

    def pump() -> None:  # keeps reading, so the server never blocks on a full pipe
        for line in stream:
            lines.put(line)

    threading.Thread(target=pump, daemon=True).start()
    while text not in (line := lines.get(timeout=WAIT)):
        assert proc.poll() is None, f"serve stopped: {line}"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _readme_enrollment() -> dict[str, object]:
    """The JSON body of README's curl command, as printed there."""
    body = re.search(r"-d '(\{.*?\})'", _running_it(), re.DOTALL)
    assert body is not None, "README's Running it has no curl -d '...' body"
    parsed: dict[str, object] = json.loads(body.group(1))
    return parsed


def test_running_it_shows_an_email_at_any_hour_with_links_to_the_served_port(
    served: Served,
) -> None:
    assert served.cli("apply", str(ROOT / "sequences/examples/hello.yaml")).startswith("hello:")
    served.cli("apply", str(ROOT / "sequences/examples/trial-onboarding.yaml"))
    key = served.cli("keys", "create", "crm", "--role", "enroll")
    auth = {"Authorization": f"Bearer {key}", "Idempotency-Key": "signup-42"}
    with httpx.Client(base_url=served.base, timeout=WAIT) as client:
        answer = client.post("/v1/enrollments", json=_readme_enrollment(), headers=auth)
        assert answer.status_code == 201, answer.text
        email = _first_email(served.data / "inbox")
        assert email["To"] == "ada@example.com"
        html = email.get_body(("html",))
        assert html is not None
        links = set(re.findall(r"http://127\.0\.0\.1:\d+/[tu]/", html.get_content()))
        assert links and all(link.startswith(served.base + "/") for link in links)
        # The examples' own domain is accepted for contacts too.
        tester = {"sequence": "trial-onboarding", "contact": {"email": "ada@acme.test"}}
        other = client.post(
            "/v1/enrollments", json=tester, headers={"Authorization": f"Bearer {key}"}
        )
        assert other.status_code == 201, other.text


def _first_email(inbox: Path) -> EmailMessage:
    """The first captured email, polled for (the worker sends within a second or two)."""
    deadline = time.monotonic() + WAIT
    while not (found := sorted(inbox.glob("*.eml"))):
        assert time.monotonic() < deadline, f"no email in {inbox} within {WAIT} s"
        time.sleep(0.1)
    email = message_from_bytes(found[0].read_bytes(), policy=policy.default)
    assert isinstance(email, EmailMessage)
    return email
