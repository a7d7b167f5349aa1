"""Settings: everything configurable, read from the environment (prefix-free names)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Dripline's configuration. Unset values fall back to the embedded defaults."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    data_dir: Path = Field(Path(".dripline"), alias="DRIPLINE_DATA_DIR")
    database_url: str | None = Field(None, alias="DATABASE_URL")
    redis_url: str | None = Field(None, alias="REDIS_URL")

    smtp_host: str | None = Field(None, alias="SMTP_HOST")
    smtp_port: int = Field(25, alias="SMTP_PORT")
    smtp_username: str | None = Field(None, alias="SMTP_USERNAME")
    smtp_password: str | None = Field(None, alias="SMTP_PASSWORD")
    smtp_starttls: bool = Field(False, alias="SMTP_STARTTLS")
    smtp_timeout: float = Field(30.0, alias="SMTP_TIMEOUT")
    smtp_local_hostname: str | None = Field(
        None, alias="SMTP_LOCAL_HOSTNAME", description="The name we greet the relay with (EHLO)."
    )
    smtp_pool_size: int = Field(8, alias="SMTP_POOL_SIZE")
    smtp_rate_per_second: float = Field(2000.0, alias="SMTP_RATE_PER_SECOND")

    dkim_selector: str = Field("dripline", alias="DKIM_SELECTOR")
    dkim_domain: str | None = Field(None, alias="DKIM_DOMAIN")
    dkim_private_key_path: Path | None = Field(None, alias="DKIM_PRIVATE_KEY")

    public_url: str = Field("http://127.0.0.1:8000", alias="DRIPLINE_PUBLIC_URL")
    day_seconds: float = Field(
        86400.0,
        alias="DRIPLINE_DAY_SECONDS",
        gt=0,
        description="Real seconds one sequence day lasts: 86400 is real time, 10 a demo.",
    )
    shutdown_grace_seconds: float = Field(30.0, alias="DRIPLINE_SHUTDOWN_GRACE_SECONDS", ge=0)
    sweep_interval_seconds: float = Field(1.0, alias="DRIPLINE_SWEEP_SECONDS", gt=0)
    claim_lease_seconds: float = Field(60.0, alias="DRIPLINE_CLAIM_LEASE_SECONDS", gt=0)
    claim_batch: int = Field(100, alias="DRIPLINE_CLAIM_BATCH", gt=0)
    parallel_batches: int = Field(
        4,
        alias="DRIPLINE_PARALLEL_BATCHES",
        gt=0,
        description="Batches one worker runs at once, so SMTP and the database overlap.",
    )
    retry_base_seconds: float = Field(30.0, alias="DRIPLINE_RETRY_BASE_SECONDS", gt=0)
    max_run_attempts: int = Field(
        5,
        alias="DRIPLINE_MAX_RUN_ATTEMPTS",
        gt=0,
        description="Claims of one outbox row that may lapse (crashes, errors) before it fails.",
    )
    max_send_attempts: int = Field(5, alias="DRIPLINE_MAX_SEND_ATTEMPTS", gt=0)
    max_body_bytes: int = Field(1_000_000, alias="DRIPLINE_MAX_BODY_BYTES", gt=0)
    bot_click_window_seconds: float = Field(2.0, alias="DRIPLINE_BOT_CLICK_SECONDS")

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'dripline.db').resolve()}"

    @property
    def dkim_key_path(self) -> Path:
        return self.dkim_private_key_path or self.data_dir / "dkim_private.pem"
