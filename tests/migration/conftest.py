"""A second ftgw plays the upstream OpenAI: a project there ("acme") holds fine-tuning jobs, files and ``ft:`` models
made there for real; the gateway under test reaches it through a proxy that can fail or stall requests.

Built once per backend for the package: training the upstream's jobs is the slow part.
"""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from openai.types.fine_tuning import FineTuningJob

from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.fine_tuning.test_training import _upload, qa_rows, wait_for
from tests.httpproxy import Proxy, proxies

MODEL = "tiny-smollm2"
FAST = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 30}
PROVIDER = "openai"  # what the gateway under test calls the upstream
PRICES = {MODEL: {"input": 0.3, "output": 1.2}}  # USD per million tokens there


def chat_rows(n: int, offset: int = 0) -> list[dict[str, object]]:
    return [
        {"messages": [{"role": "user", "content": f"Is {i} a number?"}, {"role": "assistant", "content": "yes"}]}
        for i in range(offset, offset + n)
    ]


def prompt_lines(n: int) -> bytes:
    return b"".join(json.dumps({"prompt": f"Is {i} a number?\n\n###\n\n"}).encode() + b"\n" for i in range(n))


@dataclass
class World:
    upstream: Gateway
    downstream: Gateway
    proxy: Proxy
    acme: Tenant  # the upstream's project
    support: FineTuningJob  # chat, training and validation files kept there
    triage: FineTuningJob  # prompt-completion, its training file deleted there since

    def admin(self) -> Tenant:
        """A new project of the gateway under test, with an admin key (migrations are admin-only)."""
        return make_tenant(self.downstream, role="admin")

    def http(self, tenant: Tenant) -> httpx.Client:
        return httpx.Client(
            base_url=self.downstream.base_url, headers={"Authorization": f"Bearer {tenant.key}"}, timeout=60
        )


@pytest.fixture(scope="package")
def world(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[World]:
    folder = tmp_path_factory.mktemp("migration")
    key_env = f"FTGW_TEST_MIGRATION_KEY_{secrets.token_hex(4).upper()}"
    with (
        new_database(database_url, folder / "up") as up_url,
        new_database(database_url, folder / "down") as down_url,
        proxies() as proxy_for,
    ):
        upgrade(up_url)
        upgrade(down_url)
        with serve(gateway_settings(up_url, folder / "up-data", model_cache, embedded_worker=True)) as upstream:
            acme = make_tenant(upstream)
            support = acme.client.fine_tuning.jobs.create(
                model=MODEL,
                training_file=_upload(acme.client, chat_rows(12), "support-train.jsonl"),
                validation_file=_upload(acme.client, chat_rows(10, offset=100), "support-valid.jsonl"),
                suffix="support",
                method={"type": "supervised", "supervised": {"hyperparameters": FAST}},
                metadata={"team": "support"},
            )
            triage_file = _upload(acme.client, qa_rows(12), "triage-train.jsonl")
            triage = acme.client.fine_tuning.jobs.create(
                model=MODEL,
                training_file=triage_file,
                suffix="triage",
                method={"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 3}}},
            )
            support = wait_for(acme.client, support.id, {"succeeded", "failed"})
            triage = wait_for(acme.client, triage.id, {"succeeded", "failed"})
            assert support.status == triage.status == "succeeded", (support.error, triage.error)
            acme.client.files.delete(triage_file)  # the data is gone; the model still answers
            os.environ[key_env] = acme.key
            proxy = proxy_for(upstream.base_url)
            providers = [
                {
                    "name": PROVIDER,
                    "base_url": f"{proxy.url}/v1",
                    "api_key_env": key_env,
                    "models": {"remote-tiny": MODEL},
                    "timeout_seconds": 2,
                    "max_retries": 2,
                    "poll_seconds": 0.3,
                    "prices": PRICES,
                }
            ]
            settings = gateway_settings(
                down_url, folder / "down-data", model_cache, embedded_worker=True, providers=providers
            )
            try:
                with serve(settings) as downstream:
                    yield World(upstream, downstream, proxy, acme, support, triage)
            finally:
                os.environ.pop(key_env, None)
