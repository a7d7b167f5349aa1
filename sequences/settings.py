"""Settings: everything configurable, read from the environment (prefix-free names)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.config import ModelConfig
from sequences.kit.durations import Duration, Lead


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
    smtp_pool_size: int = Field(16, alias="SMTP_POOL_SIZE", gt=0)
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
    claim_lease_seconds: float = Field(
        10.0,
        alias="DRIPLINE_CLAIM_LEASE_SECONDS",
        gt=0,
        description="A claim's lease, renewed every third of it while its batch runs: a dead "
        "worker's rows run again this long after its last heartbeat.",
    )
    claim_batch: int = Field(
        500,
        alias="DRIPLINE_CLAIM_BATCH",
        gt=0,
        description="Outbox rows one claim takes. Each batch costs about ten round trips, so "
        "100,000 waits due in a minute need claims this large to keep p99 lateness under 1 s "
        "(benchmarks/timers.py); the drafting lane claims less when a model is configured.",
    )
    event_transactions: int = Field(
        1,
        alias="DRIPLINE_EVENT_TRANSACTIONS",
        gt=0,
        description="Event batches (POST /v1/events, ESP webhooks) one API process runs at once; "
        "the rest wait their turn. A batch holds row locks from its first statements to its "
        "commit, so interleaving several in one process stretches each over the others' CPU "
        "time, and the locks with it: one at a time took 1,995 -> 2,631 events/s and p95 "
        "1.1 s -> 0.66 s (benchmarks/events_throughput.py, two processes).",
    )
    db_pool_size: int = Field(
        20,
        alias="DRIPLINE_DB_POOL_SIZE",
        gt=0,
        description="PostgreSQL connections a process keeps open (as many again may open for "
        "bursts, closed when returned). Below the requests a process has in flight, every "
        "checkout past it opened and closed a connection: 16 clients on 10 opened ~15 a second.",
    )
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
    metrics_public: bool = Field(
        False,
        alias="DRIPLINE_METRICS_PUBLIC",
        description="Serve /metrics without a key (else a metrics or admin key is needed).",
    )
    bot_click_window_seconds: float = Field(2.0, alias="DRIPLINE_BOT_CLICK_SECONDS")
    score_half_life: Duration = Field(
        "14d",
        alias="DRIPLINE_SCORE_HALF_LIFE",
        description="Sequence time after which an event counts half in a contact's score.",
    )
    attribution_window: Duration = Field(
        "7d",
        alias="DRIPLINE_ATTRIBUTION_WINDOW",
        description="How long after a send a reply or conversion that names no message is "
        "credited to the contact's latest email.",
    )
    bandit_seed: int = Field(
        0,
        alias="DRIPLINE_BANDIT_SEED",
        description="Mixed into every choice's seed; logged with it, so choices replay.",
    )

    openai_api_key: str | None = Field(None, alias="OPENAI_API_KEY")
    openai_base_url: str | None = Field(
        None, alias="OPENAI_BASE_URL", description="Any OpenAI-compatible server (vLLM, Ollama)."
    )
    model: str = Field("gpt-4o-mini", alias="DRIPLINE_MODEL")
    model_timeout_seconds: float = Field(20.0, alias="DRIPLINE_MODEL_TIMEOUT", gt=0)
    model_max_retries: int = Field(2, alias="DRIPLINE_MODEL_RETRIES", ge=0, le=5)
    model_temperature: float = Field(0.4, alias="DRIPLINE_MODEL_TEMPERATURE", ge=0, le=2)
    model_max_tokens: int = Field(900, alias="DRIPLINE_MODEL_MAX_TOKENS", gt=0)
    model_max_revisions: int = Field(1, alias="DRIPLINE_MODEL_REVISIONS", ge=0, le=3)
    model_requests_per_minute: float = Field(500.0, alias="DRIPLINE_MODEL_RPM", gt=0)
    model_tokens_per_minute: float = Field(200_000.0, alias="DRIPLINE_MODEL_TPM", gt=0)
    model_price_input: float = Field(0.15, alias="DRIPLINE_MODEL_PRICE_INPUT", ge=0)
    model_price_cached: float = Field(0.075, alias="DRIPLINE_MODEL_PRICE_CACHED", ge=0)
    model_price_output: float = Field(0.60, alias="DRIPLINE_MODEL_PRICE_OUTPUT", ge=0)
    draft_budget_seconds: float = Field(
        45.0,
        alias="DRIPLINE_DRAFT_BUDGET_SECONDS",
        gt=0,
        description="The longest one draft may take, retries included, before the fallback.",
    )
    prompt_version: str = Field("v1", alias="DRIPLINE_PROMPT_VERSION")
    draft_ahead: Lead = Field(
        "15m",
        alias="DRIPLINE_DRAFT_AHEAD",
        description="How long before an email is due its copy is drafted, for sequences that "
        "do not say (sequence time, like the waits); 0 drafts when the email is due.",
    )

    @property
    def agent_model(self) -> ModelConfig:
        """The agent's view of the model settings."""
        return ModelConfig(
            model=self.model,
            api_key=self.openai_api_key,
            base_url=self.openai_base_url,
            timeout_seconds=self.model_timeout_seconds,
            max_retries=self.model_max_retries,
            temperature=self.model_temperature,
            max_tokens=self.model_max_tokens,
            max_revisions=self.model_max_revisions,
            price_input=self.model_price_input,
            price_cached=self.model_price_cached,
            price_output=self.model_price_output,
        )

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'dripline.db').resolve()}"

    @property
    def dkim_key_path(self) -> Path:
        return self.dkim_private_key_path or self.data_dir / "dkim_private.pem"

    # ESP webhooks (POST /v1/webhooks/{provider}): a provider with no key here refuses every post.
    esp: Literal["sendgrid", "mailgun", "postmark", "ses", "resend"] | None = Field(
        None,
        alias="DRIPLINE_ESP",
        description="The ESP behind SMTP_HOST: outgoing mail then carries the header that makes "
        "its webhooks name our message.",
    )
    sendgrid_webhook_key: str | None = Field(
        None,
        alias="DRIPLINE_SENDGRID_WEBHOOK_KEY",
        description="SendGrid's Signed Event Webhook verification key (base64 DER, or PEM).",
    )
    mailgun_signing_key: str | None = Field(None, alias="DRIPLINE_MAILGUN_SIGNING_KEY")
    ses_topic_arns: str | None = Field(
        None,
        alias="DRIPLINE_SES_TOPIC_ARNS",
        description="Comma-separated SNS topic ARNs whose SES notifications are accepted.",
    )
    postmark_webhook_user: str | None = Field(None, alias="DRIPLINE_POSTMARK_WEBHOOK_USER")
    postmark_webhook_password: str | None = Field(None, alias="DRIPLINE_POSTMARK_WEBHOOK_PASSWORD")
    resend_webhook_secret: str | None = Field(
        None, alias="DRIPLINE_RESEND_WEBHOOK_SECRET", description="The Svix secret, whsec_..."
    )
    webhook_tolerance_seconds: float = Field(
        300.0,
        alias="DRIPLINE_WEBHOOK_TOLERANCE_SECONDS",
        gt=0,
        description="How far a signed timestamp may be from now before the request is refused.",
    )
    sns_tolerance_seconds: float = Field(
        3900.0,
        alias="DRIPLINE_SNS_TOLERANCE_SECONDS",
        gt=0,
        description="SNS retries keep the original Timestamp for up to 3,600 s, plus clock skew.",
    )
    webhook_max_body_bytes: int = Field(
        32_000_000,
        alias="DRIPLINE_WEBHOOK_MAX_BODY_BYTES",
        gt=0,
        description="The body limit on /v1/webhooks: a bounce may carry the whole message.",
    )
    group_unsubscribe_suppresses: bool = Field(
        False,
        alias="DRIPLINE_GROUP_UNSUBSCRIBE_SUPPRESSES",
        description="Treat an ESP's group (list) unsubscribe as an unsubscribe from everything.",
    )
