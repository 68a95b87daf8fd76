"""compose.yaml describes the topology tests/shared/test_replicas.py starts as processes: two API replicas (no
embedded worker) and one worker, on one PostgreSQL database, one Redis and one shared data folder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from app.config import Settings
from app.providers.local.base_models import SMOLLM2
from tests.vllm_server import VllmServer

REPO = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, Any]:
    loaded = yaml.safe_load((REPO / "compose.yaml").read_text())
    assert isinstance(loaded, dict)
    return loaded


def test_two_replicas_and_a_worker_share_one_database_redis_and_data() -> None:
    services = _compose()["services"]
    commands = {name: service.get("command") for name, service in services.items()}
    serving = [name for name, command in commands.items() if command == ["ftgw", "serve", "--no-migrate"]]
    assert "profiles" not in services["api-1"]
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


def test_the_vllm_profile_serves_the_base_model_with_runtime_lora_as_the_tests_start_it(tmp_path: Path) -> None:
    services = _compose()["services"]
    vllm = services["vllm"]
    assert vllm["profiles"] == ["vllm"] and services["prepare-model"]["profiles"] == ["vllm"]
    flags = dict(flag.removeprefix("--").partition("=")[::2] for flag in vllm["command"])
    server = VllmServer(Path("/data/models") / SMOLLM2, SMOLLM2, max_loras=4, log_path=tmp_path / "vllm.log")
    ours = server.command()
    # The LoRA flags the tests run vLLM with, and the environment that allows loading adapters at runtime.
    assert "enable-lora" in flags and "--enable-lora" in ours
    assert flags["max-lora-rank"] == ours[ours.index("--max-lora-rank") + 1]
    assert flags["model"] == f"/data/models/{SMOLLM2}" and flags["served-model-name"] == SMOLLM2
    assert (
        vllm["environment"]["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]
        == server.environment()["VLLM_ALLOW_RUNTIME_LORA_UPDATING"]
    )
    # It reads the base model and the adapters where the ftgw processes write them.
    assert vllm["volumes"] == ["ftgw-data:/data:ro"]
    assert services["api-1"]["environment"]["FTGW_VLLM"] == "${FTGW_VLLM:-[]}"
    assert services["prepare-model"]["command"] == ["python", "-m", "app.providers.local.prepare"]
