"""API keys are listed and revoked (CLI and admin API); revoking ends console sessions at once.
/metrics needs a metrics or admin key unless DRIPLINE_METRICS_PUBLIC is set."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from console_cases import sign_in
from harness import Stack, make_settings, running_stack
from sqlalchemy import func, select
from typer.testing import CliRunner

from api.auth import Role
from api.cli import app
from sequences.mail.capture import CaptureServer
from sequences.store.tables import CONSOLE_SESSIONS


@pytest.fixture
async def stack(tmp_path: Path, capture: CaptureServer, redis_db: str) -> AsyncIterator[Stack]:
    settings = make_settings(tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    async with running_stack(settings, redis_db, capture, worker=False) as running:
        yield running


async def test_admin_lists_keys_without_secrets(stack: Stack) -> None:
    reviewer = await stack.key(Role.reviewer)
    listed = await stack.client.get("/v1/keys", headers=stack.auth())
    assert listed.status_code == 200
    keys = {key["name"]: key for key in listed.json()["keys"]}
    assert keys["test-reviewer"]["prefix"] == reviewer[:10]
    assert keys["test-reviewer"]["role"] == "reviewer" and keys["test-admin"]["role"] == "admin"
    assert reviewer not in listed.text and stack.admin_key not in listed.text
    denied = await stack.client.get("/v1/keys", headers=stack.auth(reviewer))
    assert denied.status_code == 403


async def test_revoking_a_key_refuses_it_and_ends_its_console_session(stack: Stack) -> None:
    await sign_in(stack)  # the client's cookie jar now holds a reviewer's session
    assert (await stack.client.get("/console/queue")).status_code == 200
    revoked = await stack.client.post("/v1/keys/test-reviewer/revoke", headers=stack.auth())
    assert revoked.status_code == 200 and revoked.json()["revoked_at"] is not None
    page = await stack.client.get("/console/queue")
    assert page.status_code == 303 and page.headers["location"].startswith("/console/sign-in")
    async with stack.deps.reader.connect() as conn:
        assert await conn.scalar(select(func.count()).select_from(CONSOLE_SESSIONS)) == 0
    again = await stack.client.post("/v1/keys/test-reviewer/revoke", headers=stack.auth())
    assert again.status_code == 404 and again.json()["error"]["code"] == "unknown_key"
    listed = (await stack.client.get("/v1/keys", headers=stack.auth())).json()["keys"]
    assert [key["name"] for key in listed] == ["test-admin"]
    with_revoked = await stack.client.get("/v1/keys?revoked=true", headers=stack.auth())
    assert [key["name"] for key in with_revoked.json()["keys"]] == ["test-admin", "test-reviewer"]


async def test_revoking_by_prefix_and_refusing_an_ambiguous_name(stack: Stack) -> None:
    first, second = await stack.key(Role.enroll), await stack.key(Role.enroll)
    ambiguous = await stack.client.post("/v1/keys/test-enroll/revoke", headers=stack.auth())
    assert ambiguous.status_code == 409
    assert ambiguous.json()["error"]["details"]["prefixes"] == [first[:10], second[:10]]
    assert await _status_with(stack, first) == 200  # both still work: nothing was revoked
    by_prefix = await stack.client.post(f"/v1/keys/{first[:10]}/revoke", headers=stack.auth())
    assert by_prefix.status_code == 200 and by_prefix.json()["prefix"] == first[:10]
    assert await _status_with(stack, first) == 401
    assert await _status_with(stack, second) == 200


async def _status_with(stack: Stack, key: str) -> int:
    return (await stack.client.get("/v1/sequences", headers=stack.auth(key))).status_code


async def test_metrics_needs_a_metrics_or_admin_key(stack: Stack) -> None:
    missing = await stack.client.get("/metrics")
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert "dripline_" not in missing.text
    enroll = await stack.client.get("/metrics", headers=stack.auth(await stack.key(Role.enroll)))
    assert enroll.status_code == 403
    for key in (await stack.key(Role.metrics), stack.admin_key):
        scraped = await stack.client.get("/metrics", headers=stack.auth(key))
        assert scraped.status_code == 200 and "dripline_outbox_overdue" in scraped.text
    # A metrics key reads nothing else.
    metrics_only = await stack.key(Role.metrics)
    refused = await stack.client.get("/v1/sequences", headers=stack.auth(metrics_only))
    assert refused.status_code == 403


async def test_metrics_public_when_configured(
    tmp_path: Path, capture: CaptureServer, redis_db: str
) -> None:
    settings = make_settings(
        tmp_path, f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}", DRIPLINE_METRICS_PUBLIC="true"
    )
    async with running_stack(settings, redis_db, capture, worker=False) as stack:
        scraped = await stack.client.get("/metrics")
        assert scraped.status_code == 200 and "dripline_outbox_overdue" in scraped.text


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("DRIPLINE_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return tmp_path


def test_cli_lists_and_revokes_keys(cli_env: Path) -> None:
    runner = CliRunner()
    crm = runner.invoke(app, ["keys", "create", "crm", "--role", "enroll"]).stdout.strip()
    runner.invoke(app, ["keys", "create", "prom", "--role", "metrics"])
    listed = runner.invoke(app, ["keys", "list"])
    assert listed.exit_code == 0 and crm not in listed.stdout
    lines = listed.stdout.splitlines()
    assert [line.split()[-1] for line in lines] == ["crm", "prom"]
    assert lines[0].startswith(f"{crm[:10]}  enroll")
    revoked = runner.invoke(app, ["keys", "revoke", crm[:10]])
    assert revoked.exit_code == 0 and revoked.stdout == f"revoked {crm[:10]} (crm, enroll)\n"
    left = runner.invoke(app, ["keys", "list"]).stdout.splitlines()
    assert [line.split()[-1] for line in left] == ["prom"]
    assert "revoked" in runner.invoke(app, ["keys", "list", "--revoked"]).stdout
    unknown = runner.invoke(app, ["keys", "revoke", "crm"])
    assert unknown.exit_code == 2 and "no live API key named or prefixed 'crm'" in unknown.output
