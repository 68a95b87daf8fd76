"""``GET /metrics`` over real HTTP on both backends: who may read it, and that what happens is counted exactly.

Counters are the test process's (every gateway in it shares prometheus-client's registry), so tests compare a
scrape before with one after; the database gauges are read from a gateway with its own database, so they are
compared with the exact jobs and runs the test made.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.db import create_engine_from_url
from app.fine_tuning.models import FineTuningJob
from app.kit.time import utcnow
from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.evals.test_api import _completions, _eval
from tests.fine_tuning.test_transitions import _queued_job
from tests.observability.scrape import scrape, value

MODEL = "tiny-smollm2"
METRICS_TOKEN = "metrics-" + secrets.token_hex(16)
DOWN_KEY_ENV = "FTGW_TEST_DOWN_KEY"
LATENCY = "ftgw_http_request_duration_seconds"
CHAT_ROUTE = {"route": "/v1/chat/completions", "method": "POST"}


@pytest.fixture(scope="module")
def own_gateway(database_url: str, tmp_path_factory: pytest.TempPathFactory, model_cache: Path) -> Iterator[Gateway]:
    """A gateway with its own database (so its job gauges are exactly what a test made), a metrics token, and an
    upstream provider nobody listens for (so an alias to it falls back)."""
    folder = tmp_path_factory.mktemp("observed")
    down = {
        "name": "down",
        "base_url": "http://127.0.0.1:9/v1",  # nothing listens: connection refused
        "models": ["down-model"],
        "api_key_env": DOWN_KEY_ENV,
        "max_retries": 0,
    }
    with new_database(database_url, folder) as url, pytest.MonkeyPatch.context() as env:
        env.setenv(DOWN_KEY_ENV, "sk-upstream-never-used")
        upgrade(url)
        settings = gateway_settings(url, folder / "data", model_cache, metrics_token=METRICS_TOKEN, providers=[down])
        with serve(settings) as gateway:
            yield gateway


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    return error


def test_metrics_need_an_admin_key_or_the_metrics_token(gateway: Gateway, tenant: Tenant, own_gateway: Gateway) -> None:
    for served in (gateway, own_gateway):
        with httpx.Client(base_url=served.base_url) as anonymous:
            assert _error(anonymous.get("/metrics"), 401)["type"] == "authentication_error"
        with served.http(make_tenant(served).key) as member:
            assert _error(member.get("/metrics"), 403)["type"] == "permission_error"
        with served.http("sk-ftgw-" + "x" * 40) as unknown:
            _error(unknown.get("/metrics"), 401)
        assert scrape(served)  # the admin key
    # Without a configured token, a made-up one is just an unknown key.
    with gateway.http(METRICS_TOKEN) as guessing:
        _error(guessing.get("/metrics"), 401)
    samples = scrape(own_gateway, METRICS_TOKEN)
    assert value(samples, "ftgw_fine_tuning_jobs", status="queued") == 0
    with own_gateway.http(METRICS_TOKEN + "x") as wrong:
        _error(wrong.get("/metrics"), 401)
    # Not part of the OpenAI-shaped API: absent from the OpenAPI document.
    with gateway.http() as http:
        assert "/metrics" not in http.get("/openapi.json").json()["paths"]


def test_a_chat_completion_is_timed_by_route_and_model_and_its_tokens_counted(gateway: Gateway, tenant: Tenant) -> None:
    before = scrape(gateway)
    started = time.monotonic()
    whole = tenant.client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "Say hi"}], max_tokens=4, temperature=0
    )
    chunks = list(
        tenant.client.chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "Say hello"}],
            max_tokens=3,
            temperature=0,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    elapsed = time.monotonic() - started
    after = scrape(gateway)
    streamed = chunks[-1].usage
    assert whole.usage is not None and streamed is not None

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta(f"{LATENCY}_count", **CHAT_ROUTE, status="2xx") == 2
    assert delta(f"{LATENCY}_bucket", **CHAT_ROUTE, status="2xx", le="+Inf") == 2
    assert delta("ftgw_inference_duration_seconds_count", model=MODEL) == 2
    # Seconds, each request timed inside what the client waited (a stream to its end).
    assert 0 < delta(f"{LATENCY}_sum", **CHAT_ROUTE, status="2xx") <= elapsed
    assert 0 < delta("ftgw_inference_duration_seconds_sum", model=MODEL) <= elapsed
    tokens_in = whole.usage.prompt_tokens + streamed.prompt_tokens
    tokens_out = whole.usage.completion_tokens + streamed.completion_tokens
    assert delta("ftgw_inference_tokens_total", model=MODEL, direction="in") == tokens_in
    assert delta("ftgw_inference_tokens_total", model=MODEL, direction="out") == tokens_out > 0
    # Routes are templates, never URLs: a file id is no label.
    with gateway.http(tenant.key) as http:
        assert http.get("/v1/files/file-doesnotexist").status_code == 404
    labels = {dict(key[1]).get("route") for key in scrape(gateway) if key[0] == f"{LATENCY}_count"}
    assert "/v1/files/{file_id}" in labels and not any("file-doesnotexist" in (r or "") for r in labels)


def test_the_engine_batch_is_read_at_scrape_time(gateway: Gateway, tenant: Tenant) -> None:
    body = {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Count"}],
        "max_tokens": 1500,
        "logit_bias": {"0": -100, "2": -100},  # no end-of-text: the sequence runs until it is cancelled
        "stream": True,
    }
    with gateway.http(tenant.key) as http, http.stream("POST", "/v1/chat/completions", json=body) as streamed:
        assert streamed.status_code == 200
        events = (line for line in streamed.iter_lines() if line.startswith("data:"))
        for _ in range(3):  # the role's chunk comes first, before generation starts; then tokens
            next(events)
        running = scrape(gateway)
    assert value(running, "ftgw_engine_batch_size") == 1
    assert value(running, "ftgw_engine_queue_depth") == 0
    # Closing the stream cancels the generation: the batch empties.
    deadline = time.monotonic() + 10
    while value(scrape(gateway), "ftgw_engine_batch_size") != 0:
        assert time.monotonic() < deadline, "the cancelled sequence stayed in the batch"
        time.sleep(0.05)


def test_rate_limit_rejections_are_counted(gateway: Gateway, tenant: Tenant) -> None:
    with gateway.http(gateway.admin_key) as admin:
        created = admin.post(
            f"/v1/projects/{tenant.project_id}/api_keys",
            json={"name": "limited", "role": "member", "max_requests_per_minute": 1},
        )
    assert created.status_code == 200, created.text
    before = scrape(gateway)
    statuses = []
    with gateway.http(created.json()["value"]) as limited:
        for _ in range(3):
            # An unknown model: the one request admitted is a cheap 404; the limit is checked before routing.
            body = {"model": "no-such-model", "messages": [{"role": "user", "content": "hi"}]}
            statuses.append(limited.post("/v1/chat/completions", json=body).status_code)
    after = scrape(gateway)
    assert statuses == [404, 429, 429]
    name = "ftgw_rate_limit_rejections_total"
    assert value(after, name, limit="requests") - value(before, name, limit="requests") == 2
    count = f"{LATENCY}_count"
    assert value(after, count, **CHAT_ROUTE, status="4xx") - value(before, count, **CHAT_ROUTE, status="4xx") == 3


def _alias(gateway: Gateway, tenant: Tenant, **version: Any) -> str:
    name = f"bot-{secrets.token_hex(4)}"
    with gateway.http(tenant.key) as http:
        assert http.post("/v1/registry/aliases", json={"name": name}).status_code == 200
        added = http.post(f"/v1/registry/aliases/{name}/versions", json=version)
        assert added.status_code == 200, added.text
    return name


def test_fallbacks_taken_and_guard_refusals_are_counted(own_gateway: Gateway) -> None:
    owner = make_tenant(own_gateway)
    falling = _alias(own_gateway, owner, targets=[{"model": "down-model"}], fallbacks=[MODEL])
    # A label the model never predicts: the guard finds no allowed probability and refuses.
    guarded = _alias(own_gateway, owner, targets=[{"model": MODEL}], guard={"model": MODEL, "allowed_labels": ["þþþþ"]})
    before = scrape(own_gateway)
    fell_back = owner.client.chat.completions.with_raw_response.create(
        model=falling, messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    refused = owner.client.chat.completions.with_raw_response.create(
        model=guarded, messages=[{"role": "user", "content": "hi"}], max_tokens=1
    )
    after = scrape(own_gateway)
    assert fell_back.headers["x-ftgw-fallbacks"] == "1" and refused.headers["x-ftgw-guard"] == "refused"

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ftgw_inference_fallbacks_total", model=MODEL) == 1
    assert delta("ftgw_guard_refusals_total", guard_model=MODEL) == 1
    # The fallback's answer is timed under the model that answered; the refused request answered with no model.
    assert delta("ftgw_inference_duration_seconds_count", model=MODEL) == 1
    assert delta("ftgw_inference_duration_seconds_count", model="down-model") == 0
    assert delta(f"{LATENCY}_count", **CHAT_ROUTE, status="2xx") == 2


async def _lease(url: str, job_id: str) -> None:
    engine = create_engine_from_url(url)
    try:
        async with engine.begin() as connection:
            await connection.execute(
                update(FineTuningJob)
                .where(FineTuningJob.id == job_id)
                .values(lease_owner="worker-1", lease_expires_at=utcnow() + timedelta(minutes=5))
            )
    finally:
        await engine.dispose()


def test_jobs_and_eval_runs_by_status_and_leases_held_match_the_database(own_gateway: Gateway) -> None:
    before = scrape(own_gateway, METRICS_TOKEN)
    owner, other = make_tenant(own_gateway), make_tenant(own_gateway)
    jobs = [_queued_job(owner), _queued_job(owner), _queued_job(other)]  # counted across projects
    cancelled = other.client.fine_tuning.jobs.cancel(jobs[2])
    assert cancelled.status == "cancelled"
    run = owner.client.evals.runs.create(_eval(owner), data_source=_completions())  # type: ignore[arg-type]
    assert run.status == "queued"
    asyncio.run(_lease(own_gateway.settings.resolved_database_url, jobs[0]))
    after = scrape(own_gateway, METRICS_TOKEN)

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert delta("ftgw_fine_tuning_jobs", status="queued") == 2
    assert delta("ftgw_fine_tuning_jobs", status="cancelled") == 1
    assert delta("ftgw_fine_tuning_jobs", status="running") == 0
    assert value(after, "ftgw_fine_tuning_jobs", status="succeeded") == 0  # every status is a series, 0 included
    assert delta("ftgw_eval_runs", status="queued") == 1
    assert delta("ftgw_worker_leases_held", kind="fine_tuning_job") == 1
    assert delta("ftgw_worker_leases_held", kind="eval_run") == 0
    # This gateway's own database holds only what its tests made.
    assert sum(v for (n, _), v in after.items() if n == "ftgw_fine_tuning_jobs") == len(jobs)
