"""Settings: one object, read from the environment (prefix ``FTGW_``) and an optional ``.env`` file."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

MiB = 1024 * 1024


class ModelPrice(BaseModel):
    input: float = Field(ge=0, description="USD per million prompt tokens.")
    output: float = Field(ge=0, description="USD per million completion tokens.")


class UpstreamProviderConfig(BaseModel):
    """An OpenAI-compatible service that trains (and serves) some models for ftgw, through the openai SDK."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Our name for it, e.g. 'openai'.")
    base_url: str = Field(description="Its API root, e.g. https://api.openai.com/v1.")
    api_key_env: str = Field(description="The environment variable that holds its API key.")
    models: dict[str, str] = Field(description="Base models it trains: our id -> its id (a list means same ids).")
    timeout_seconds: float = Field(default=60, gt=0)
    max_retries: int = Field(default=3, ge=0)
    poll_seconds: float = Field(default=5, gt=0, description="How often a running upstream job is mirrored.")
    retry_backoff_seconds: float = Field(default=0.25, ge=0, description="First inference retry delay; doubles.")
    cooldown_after_failures: int = Field(default=3, ge=1, description="Failed calls in a row before a cooldown.")
    cooldown_seconds: float = Field(default=30, ge=0, description="How long a failing provider is skipped.")
    prices: dict[str, ModelPrice] = Field(
        default_factory=dict,
        description="USD per million tokens by model id there (a fine-tuned model's base id covers it): the "
        "migration plan's cost estimate.",
    )

    @field_validator("models", mode="before")
    @classmethod
    def _list_means_same_ids(cls, value: object) -> object:
        return {name: name for name in value} if isinstance(value, list) else value

    @field_validator("base_url")
    @classmethod
    def _an_http_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"must be an http:// or https:// URL with a host, not {value!r}")
        return value


class VllmConfig(BaseModel):
    """A fleet of vLLM replicas serving one local base model: ftgw loads its fine-tunes' LoRA adapters onto them
    at runtime and routes each request to a replica that holds its adapter."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$", description="Our name for the fleet, e.g. 'vllm'.")
    base_model: str = Field(description="Our id of the local base model the replicas serve.")
    urls: list[str] = Field(min_length=1, description="Each replica's API root, e.g. http://vllm-1:8000/v1.")
    served_model_name: str | None = Field(
        default=None, description="The base model's name there (vLLM's --served-model-name); default base_model."
    )
    max_loras: int = Field(
        default=4, ge=1, description="Adapters kept loaded per replica (at most vLLM's --max-cpu-loras).", le=1024
    )
    adapter_root: str | None = Field(
        default=None,
        description="Where the replicas read ftgw's data folder (a path on a shared volume); default: ours.",
    )
    api_key_env: str | None = Field(default=None, description="The environment variable holding their API key.")
    timeout_seconds: float = Field(default=60, gt=0)
    max_retries: int = Field(default=1, ge=0, description="Retries on the same replica before trying another.")
    retry_backoff_seconds: float = Field(default=0.1, ge=0)
    cooldown_seconds: float = Field(default=5, ge=0, description="How long an unreachable replica is skipped.")


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
    log_format: Literal["json", "console"] = Field(
        default="json", description="Log lines as JSON objects, or readable text for development."
    )
    metrics_token: str | None = Field(
        default=None,
        min_length=16,
        description="A bearer token that may read GET /metrics (a Prometheus scraper's); admin keys always may.",
    )
    auth_cache_seconds: float = Field(
        default=5.0,
        ge=0,
        description="How long a verified API key is trusted without a database look-up. "
        "A revocation is seen at once by the process that made it, by the others within this time.",
    )

    # Web console
    console_session_hours: float = Field(
        default=12, gt=0, le=24 * 30, description="How long a console sign-in lasts before it asks for the key again."
    )
    console_secure_cookies: bool = Field(
        default=False,
        description="Mark the console's cookies Secure (set it when the gateway is reached over HTTPS; they are "
        "always HttpOnly and SameSite=Strict).",
    )
    console_assets_dir: Path = Field(
        default=Path(__file__).resolve().parents[1] / "node_modules",
        description="The console's front-end packages, installed from npm by `make install` (package.json).",
    )

    # Workers
    embedded_worker: bool = Field(default=True, description="`ftgw serve` also runs a worker in-process.")
    worker_lease_seconds: float = Field(default=30, gt=0, description="A silent worker loses its job after this.")
    worker_heartbeat_seconds: float = Field(default=3, gt=0)
    worker_poll_seconds: float = Field(default=1, gt=0)
    worker_max_attempts: int = Field(default=3, ge=1, description="Claims of one job before it is failed.")
    eval_runs_at_once: int = Field(
        default=2,
        ge=1,
        le=32,
        description="Eval runs one worker executes side by side (a release gate's runs need not wait for a long one).",
    )
    eval_concurrency: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Rows of one eval run sampled and graded at a time: the local engine's batch "
        "(FTGW_ENGINE_MAX_BATCH_SIZE), which it fills.",
    )
    batch_concurrency: int = Field(
        default=32,
        ge=1,
        le=256,
        description="Requests of one batch (/v1/batches) run at a time: the local engine batches them as it does an "
        "eval run's rows.",
    )
    eval_after_fine_tuning: bool = Field(
        default=True,
        description="A supervised job with a validation file ends with an eval of its model against its base on that "
        'file (a job\'s metadata "ftgw_eval": "off" skips it).',
    )
    # Local models
    model_cache_dir: Path | None = Field(default=None, description="Converted base models; default data_dir/models.")
    local_models_dir: Path | None = Field(default=None, description="Extra local base models, one per subfolder.")
    test_models: bool = Field(default=False, description="Offer the tiny test model (tiny-smollm2).")
    engine_max_adapters: int = Field(
        default=8, ge=1, description="LoRA adapters kept loaded per local base model; the least recently used go."
    )
    engine_max_batch_size: int = Field(
        default=32, ge=1, description="Sequences decoded together per local base model; later requests wait."
    )
    engine_int8_models: list[str] = Field(
        default_factory=list,
        description="Local base models (ids, e.g. smollm2-135m-instruct) whose decode steps read int8 copies of "
        "their weights: up to 2.9x faster on one stream on a CPU, logits within ~0.001 KL of float32; Llama-family "
        "models on CPU in float32 only (any other is served as loaded, with a warning); the float32 weights stay for "
        "prefill. A JSON list.",
    )
    default_max_tokens: int = Field(
        default=1024,
        ge=1,
        description="Tokens a local chat completion may generate when the caller sets no max_tokens (the model's "
        "context bounds every completion).",
    )
    shutdown_grace_seconds: int = Field(
        default=10,
        ge=0,
        description="On SIGTERM, how long `ftgw serve` lets requests in flight finish before cancelling them.",
    )

    providers: list[UpstreamProviderConfig] = Field(
        default_factory=list, description="Upstream providers, as JSON in FTGW_PROVIDERS."
    )
    vllm: list[VllmConfig] = Field(
        default_factory=list, description="vLLM fleets serving local base models' fine-tunes, as JSON in FTGW_VLLM."
    )
    # Webhooks
    webhook_backoff_seconds: float = Field(default=5, gt=0, description="First retry delay; doubles each time.")
    webhook_max_attempts: int = Field(default=8, ge=1)
    webhook_timeout_seconds: float = Field(default=10, gt=0)
    webhook_allow_private_networks: bool = Field(
        default=False,
        description="Let webhooks reach loopback, private and unique-local addresses (tests, private installs); "
        "otherwise only public addresses. Link-local and cloud metadata addresses are refused either way.",
    )

    route_cache_seconds: float = Field(
        default=5, ge=0, description="How long aliases and fine-tuned models are routed from memory."
    )
    usage_flush_seconds: float = Field(default=2, gt=0, description="How often counted usage is written.")
    purge_interval_seconds: float = Field(default=600, gt=0, description="How often expired files are purged.")
    # Several replicas
    redis_url: str | None = Field(
        default=None,
        description="Redis shared by every API replica and worker (redis://host:port/db): rate limits, usage reads "
        "and cache invalidations then span all of them. Unset: each process keeps them to itself.",
    )
    redis_prefix: str = Field(
        default="ftgw:",
        min_length=1,
        description="Prefix of every Redis key and channel ftgw uses, so several installs can share one Redis.",
    )

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
    def jobs_dir(self) -> Path:
        return self.data_dir / "jobs"

    @property
    def models_cache(self) -> Path:
        return self.model_cache_dir or self.data_dir / "models"

    @property
    def tiktoken_dir(self) -> Path:
        return self.data_dir / "tiktoken"

    def ensure_dirs(self) -> None:
        for path in (self.data_dir, self.files_dir, self.tmp_dir):
            path.mkdir(parents=True, exist_ok=True)


def get_settings() -> Settings:
    return Settings()
