"""compose.yaml describes the topology tests/shared/test_replicas.py starts as processes: two API replicas (no
embedded worker) and one worker, on one PostgreSQL database, one Redis and one shared data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.config import Settings

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_two_replicas_and_a_worker_share_one_database_redis_and_data() -> None:
    services = _compose()["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    serving = [name for name, command in commands.items() if command == ["ftgw", "serve", "--no-migrate"]]
    working = [name for name, command in commands.items() if command == ["ftgw", "worker"]]
    assert len(serving) == 2 and len(working) == 1
    assert commands["migrate"] == ["ftgw", "migrate"]
    ftgw = [services[name] for name in [*serving, *working, "migrate"]]
    environments = [service["environment"] for service in ftgw]
    for environment in environments:
        assert environment == environments[0]  # one database, one Redis, one data folder for all of them
        assert environment["FTGW_EMBEDDED_WORKER"] == "false"
        assert environment["FTGW_DATABASE_URL"].startswith("postgresql://")
        assert environment["FTGW_REDIS_URL"].startswith("redis://")
    for service in ftgw:
        assert service["volumes"] == ["ftgw-data:/data"]
        assert service["environment"]["FTGW_DATA_DIR"] == "/data"
    assert {"postgres", "redis"} <= set(services)


def test_every_variable_is_a_setting() -> None:
    known = {f"FTGW_{name.upper()}" for name in Settings.model_fields}
    environment = _compose()["services"]["api-1"]["environment"]
    assert set(environment) <= known, set(environment) - known
