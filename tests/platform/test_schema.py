"""The schema is what the migrations make, and the committed OpenAPI document is what the app serves."""

from __future__ import annotations

import json
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from app.config import Settings
from app.db import sync_url
from app.main import create_app
from app.migrate import alembic_config, upgrade
from app.models import metadata

ROOT = Path(__file__).resolve().parents[2]


def _diff(url: str) -> list[object]:
    engine = sa.create_engine(sync_url(url))
    try:
        with engine.connect() as connection:
            context = MigrationContext.configure(connection, opts={"compare_type": True})
            return list(compare_metadata(context, metadata))
    finally:
        engine.dispose()


def test_migrations_produce_exactly_the_models_schema(database_url: str) -> None:
    assert _diff(database_url) == []


def test_migrations_downgrade_and_upgrade_cleanly(fresh_database_url: str) -> None:
    upgrade(fresh_database_url)
    assert _diff(fresh_database_url) == []
    command.downgrade(alembic_config(fresh_database_url), "base")
    engine = sa.create_engine(sync_url(fresh_database_url))
    try:
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
    finally:
        engine.dispose()
    upgrade(fresh_database_url)
    assert _diff(fresh_database_url) == []


def test_one_linear_history() -> None:
    script = ScriptDirectory.from_config(alembic_config())
    assert len(script.get_heads()) == 1


def test_committed_openapi_matches_the_app(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    committed = json.loads((ROOT / "openapi" / "openapi.json").read_text())
    assert committed == create_app(settings).openapi(), "openapi/openapi.json drifted: run `make openapi`"
