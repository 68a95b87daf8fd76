"""The upstream provider against a second ftgw over real HTTP, through a proxy that can fail or stall requests."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from app.migrate import upgrade
from tests.conftest import Gateway, gateway_settings, make_tenant, new_database, serve
from tests.fine_tuning.test_training import _upload, qa_rows, wait_for
from tests.httpproxy import Proxy, proxies

UPSTREAM_KEY_ENV = "FTGW_TEST_UPSTREAM_KEY"
FAST = {"n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 30}


@pytest.fixture
def proxy_for() -> Iterator[Callable[[str], Proxy]]:
    with proxies() as start:
        yield start


@pytest.fixture
def pair(
    database_url: str, tmp_path: Path, model_cache: Path, monkeypatch: pytest.MonkeyPatch, proxy_for: object
) -> Iterator[tuple[Gateway, Gateway, Proxy]]:
    """(downstream, upstream, proxy): the downstream gateway trains 'remote-tiny' on the upstream one."""
    with new_database(database_url, tmp_path / "up") as up_url, new_database(database_url, tmp_path) as down_url:
        upgrade(up_url)
        upgrade(down_url)
        up_settings = gateway_settings(up_url, tmp_path / "up-data", model_cache, embedded_worker=True)
        with serve(up_settings) as upstream:
            upstream_tenant = make_tenant(upstream)
            monkeypatch.setenv(UPSTREAM_KEY_ENV, upstream_tenant.key)
            proxy = proxy_for(upstream.base_url)  # type: ignore[operator]
            providers = [
                {
                    "name": "remote",
                    "base_url": f"{proxy.url}/v1",
                    "api_key_env": UPSTREAM_KEY_ENV,
                    "models": {"remote-tiny": "tiny-smollm2", "remote-missing": "no-such-model"},
                    "timeout_seconds": 1.5,
                    "max_retries": 2,
                    "poll_seconds": 0.3,
                }
            ]
            down_settings = gateway_settings(
                down_url, tmp_path / "down-data", model_cache, embedded_worker=True, providers=providers
            )
            with serve(down_settings) as downstream:
                yield downstream, upstream, proxy


def test_upstream_job_is_mirrored_and_registers_the_model(pair: tuple[Gateway, Gateway, Proxy]) -> None:
    downstream, upstream, proxy = pair
    tenant = make_tenant(downstream)
    assert "remote-tiny" in [m.id for m in tenant.client.models.list()]
    training = _upload(tenant.client, qa_rows(12))
    proxy.fail = 2  # the first upload meets two 503s: the SDK retries them
    job = tenant.client.fine_tuning.jobs.create(
        model="remote-tiny",
        training_file=training,
        suffix="mirrored",
        method={"type": "supervised", "supervised": {"hyperparameters": FAST}},
    )

    done = wait_for(tenant.client, job.id, {"succeeded", "failed", "cancelled"})

    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model and done.fine_tuned_model.startswith("ft:remote-tiny:")
    messages = [e.message for e in tenant.client.fine_tuning.jobs.list_events(job.id, limit=100)]
    assert any(m.startswith("Created job ftjob-") and "on remote" in m for m in messages)
    assert any(m.startswith("[remote] ") for m in messages)
    metrics = [e for e in tenant.client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert len(metrics) == 3  # 12 examples, batch 4, 1 epoch: mirrored step by step
    assert [c.step_number for c in tenant.client.fine_tuning.jobs.checkpoints.list(job.id)] == [3]
    assert tenant.client.files.retrieve(done.result_files[0]).purpose == "fine-tune-results"
    # Upstream, the job exists once, with our job's id in its metadata.
    upstream_jobs = [
        j
        for j in _upstream_client(upstream).fine_tuning.jobs.list().data
        if (j.metadata or {}).get("ftgw_job") == job.id
    ]
    assert len(upstream_jobs) == 1
    assert upstream_jobs[0].status == "succeeded"
    assert sum(1 for s in proxy.seen if s == "POST /v1/files") == 3  # two refused, one accepted


def _upstream_client(upstream: Gateway):  # type: ignore[no-untyped-def]
    import os

    return upstream.openai(os.environ[UPSTREAM_KEY_ENV])


def test_stalled_upstream_requests_time_out_and_are_retried(pair: tuple[Gateway, Gateway, Proxy]) -> None:
    downstream, _, proxy = pair
    tenant = make_tenant(downstream)
    training = _upload(tenant.client, qa_rows(12))
    proxy.stall = 1  # longer than the provider's 1.5 s timeout
    job = tenant.client.fine_tuning.jobs.create(
        model="remote-tiny",
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": FAST}},
    )
    done = wait_for(tenant.client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error


def test_upstream_refusal_fails_the_job_with_its_reason(pair: tuple[Gateway, Gateway, Proxy]) -> None:
    downstream, _, _ = pair
    tenant = make_tenant(downstream)
    training = _upload(tenant.client, qa_rows(12))
    job = tenant.client.fine_tuning.jobs.create(model="remote-missing", training_file=training)
    done = wait_for(tenant.client, job.id, {"succeeded", "failed"})
    assert done.status == "failed"
    assert done.error is not None
    assert done.error.code == "upstream_error"
    assert "remote" in done.error.message and "no-such-model" in done.error.message


def test_cancel_is_passed_upstream(pair: tuple[Gateway, Gateway, Proxy]) -> None:
    downstream, upstream, _ = pair
    tenant = make_tenant(downstream)
    training = _upload(tenant.client, qa_rows(60))
    job = tenant.client.fine_tuning.jobs.create(
        model="remote-tiny",
        training_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 10, "batch_size": 1}}},
    )
    deadline = time.monotonic() + 60
    upstream_job = None
    while upstream_job is None or upstream_job.status != "running":
        assert time.monotonic() < deadline, "the upstream job never started"
        found = [
            j
            for j in _upstream_client(upstream).fine_tuning.jobs.list().data
            if (j.metadata or {}).get("ftgw_job") == job.id
        ]
        upstream_job = found[0] if found else None
        time.sleep(0.2)

    tenant.client.fine_tuning.jobs.cancel(job.id)

    deadline = time.monotonic() + 30
    while _upstream_client(upstream).fine_tuning.jobs.retrieve(upstream_job.id).status != "cancelled":
        assert time.monotonic() < deadline, "cancel did not reach the upstream job"
        time.sleep(0.2)
    assert json.loads(json.dumps(tenant.client.fine_tuning.jobs.retrieve(job.id).status)) == "cancelled"
