"""The embedded defaults start what is unset, and never leave a Valkey behind."""

from __future__ import annotations

from pathlib import Path

import redis

from sequences.embedded import Embedded, is_valkey
from sequences.settings import Settings


def _settings(tmp_path: Path) -> Settings:
    return Settings.model_validate(
        {"DRIPLINE_DATA_DIR": str(tmp_path), "REDIS_URL": None, "SMTP_HOST": None}
    )


def test_a_valkey_orphaned_by_a_killed_process_is_stopped(tmp_path: Path) -> None:
    first = Embedded(_settings(tmp_path))
    orphan_url = first.start().redis_url
    pid = int((tmp_path / "valkey" / "valkey.pid").read_text())
    assert redis.Redis.from_url(orphan_url).ping()
    first.valkey = None  # as if its process had been SIGKILLed: nothing stops it
    first.stop()
    second = Embedded(_settings(tmp_path))
    try:
        endpoints = second.start()
        assert redis.Redis.from_url(endpoints.redis_url).ping()
        assert not is_valkey(pid)
        assert endpoints.inbox == (tmp_path / "inbox").resolve()
    finally:
        second.stop()
