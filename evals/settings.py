"""Settings only evaluations read. The drafting model's come from sequences.settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class EvalSettings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    judge_model: str | None = Field(
        None,
        alias="DRIPLINE_JUDGE_MODEL",
        description="A pinned model snapshot (e.g. gpt-4o-2024-08-06); unset: judge skipped.",
    )
    judge_base_url: str | None = Field(None, alias="DRIPLINE_JUDGE_BASE_URL")
    judge_api_key: str | None = Field(None, alias="DRIPLINE_JUDGE_API_KEY")
    cache_dir: Path = Field(Path(".dripline/eval-cache"), alias="DRIPLINE_EVAL_CACHE")
