"""Settings: one object, read from the environment (prefix ``FTGW_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class Settings(BaseSettings):
    """Everything ftgw can be told from outside. Defaults are the embedded, single-machine setup."""

    model_config = SettingsConfigDict(env_prefix="FTGW_", env_file=".env", extra="ignore")

    env: Literal["development", "production", "test"] = "development"
    data_dir: Path = Path("./data")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; defaults to a SQLite file under data_dir."
    )
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    max_upload_bytes: int = Field(default=512 * MiB, gt=0)
    bootstrap_key: str | None = Field(default=None, min_length=20)
    log_level: str = "info"
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without a database look-up. "
        "A revocation is seen at once by the process that made it, by the others within this time.",
    )

    purge_interval_seconds: float = Field(default=600, gt=0, description="How often expired files are purged.")

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Settings:
        if self.env == "production" and self.database_url is None:
            raise ValueError("FTGW_DATABASE_URL must be set explicitly when FTGW_ENV=production")
        return self

    @cached_property
    def resolved_database_url(self) -> str:
        """The configured URL, or the embedded SQLite file."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'ftgw.db').resolve()}"

    @property
    def files_dir(self) -> Path:
        return self.data_dir / "files"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    @property
    def tiktoken_dir(self) -> Path:
        return self.data_dir / "tiktoken"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.files_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
