"""Settings come from FTGW_* variables with embedded defaults."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from app.config import Settings
from app.db import async_url, sync_url


def test_defaults_are_the_embedded_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("FTGW_DATABASE_URL", "FTGW_DATA_DIR", "FTGW_HOST", "FTGW_PORT", "FTGW_MAX_UPLOAD_BYTES"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)
    assert settings.max_upload_bytes == 512 * 1024 * 1024
    assert settings.data_dir == Path("data")
    assert settings.resolved_database_url == f"sqlite:///{Path('data/ftgw.db').resolve()}"


def test_environment_overrides(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("FTGW_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("FTGW_PORT", "9001")
    monkeypatch.setenv("FTGW_MAX_UPLOAD_BYTES", "1024")
    monkeypatch.setenv("FTGW_BOOTSTRAP_KEY", "sk-ftgw-from-the-environment")
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.port == 9001
    assert settings.max_upload_bytes == 1024
    assert settings.bootstrap_key == "sk-ftgw-from-the-environment"
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'ftgw.db').resolve()}"


def test_invalid_values_are_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FTGW_PORT", "0")
    with pytest.raises(ValidationError):
        Settings(_env_file=None)  # type: ignore[call-arg]


def test_production_requires_an_explicit_database(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FTGW_DATABASE_URL", raising=False)
    with pytest.raises(ValidationError, match="FTGW_DATABASE_URL"):
        Settings(env="production", _env_file=None)  # type: ignore[call-arg]


def test_database_urls_get_ftgws_drivers() -> None:
    assert async_url("sqlite:///x.db").drivername == "sqlite+aiosqlite"
    assert sync_url("postgresql://u@h/db").drivername == "postgresql+psycopg"
    with pytest.raises(ValueError, match="unsupported database"):
        async_url("mysql://u@h/db")


def test_a_provider_needs_an_http_url(monkeypatch: pytest.MonkeyPatch) -> None:
    provider = {"name": "up", "api_key_env": "UP_KEY", "models": ["m"]}
    for bad in ("localhost:8080/v1", "ftp://example.com", "https:///v1", ""):
        monkeypatch.setenv("FTGW_PROVIDERS", json.dumps([provider | {"base_url": bad}]))
        with pytest.raises(ValidationError, match="http:// or https:// URL"):
            Settings(_env_file=None)  # type: ignore[call-arg]
    monkeypatch.setenv("FTGW_PROVIDERS", json.dumps([provider | {"base_url": "http://127.0.0.1:9/v1"}]))
    assert Settings(_env_file=None).providers[0].base_url == "http://127.0.0.1:9/v1"  # type: ignore[call-arg]
