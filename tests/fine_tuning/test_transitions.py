"""A job's outcome is told once: one final event, one webhook, whoever races to end the job.

The state machine's compare-and-set (``JobRepository.transition``) on both backends, the service's fencing of a
worker whose lease another one took over, concurrent cancels over HTTP, and a real training run cancelled while it
trains, with the webhook received on a loopback receiver.
"""

from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from openai import OpenAI

from app.db import create_engine_from_url, create_sessionmaker
from app.fine_tuning.models import ACTIVE, FineTuningJob, JobStatus
from app.fine_tuning.repository import JobRepository
from app.fine_tuning.service import JobFailure, job_service
from tests.conftest import Gateway, Tenant, make_tenant
from tests.fine_tuning.test_training import MODEL, _upload, qa_rows, wait_for
from tests.loopback import Receiver

CANCELLED = "fine_tuning.job.cancelled"


def _subscribe(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> str:
    with gateway.http(tenant.key) as http:
        created = http.post("/v1/webhooks", json={"url": receiver.url})
    assert created.status_code == 200, created.text
    return str(created.json()["id"])


def _deliveries(gateway: Gateway, tenant: Tenant, webhook_id: str) -> list[dict[str, object]]:
    with gateway.http(tenant.key) as http:
        return list(http.get(f"/v1/webhooks/{webhook_id}/deliveries").json()["data"])


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in client.fine_tuning.jobs.list_events(job_id, limit=100)]


def _queued_job(tenant: Tenant) -> str:
    """A job of the tiny model; on a gateway without a worker it stays queued."""
    training = _upload(tenant.client, qa_rows(10))
    return tenant.client.fine_tuning.jobs.create(model=MODEL, training_file=training).id


# --- the compare-and-set itself, on each backend ------------------------------------------------------------------


async def _set_status(url: str, job_id: str, status: JobStatus, lease_owner: str | None = None) -> None:
    engine = create_engine_from_url(url)
    try:
        async with create_sessionmaker(engine)() as session:
            job = await session.get(FineTuningJob, job_id)
            assert job is not None
            moved = await JobRepository(session).transition(
                job, status, from_=list(JobStatus), values={"lease_owner": lease_owner}
            )
            assert moved
            await session.commit()
    finally:
        await engine.dispose()


async def _try_transition(
    url: str, job_id: str, to: JobStatus, from_: frozenset[JobStatus], lease_owner: str | None = None
) -> tuple[bool, JobStatus]:
    engine = create_engine_from_url(url)
    try:
        async with create_sessionmaker(engine)() as session:
            job = await session.get(FineTuningJob, job_id)
            assert job is not None
            moved = await JobRepository(session).transition(job, to, from_=from_, lease_owner=lease_owner)
            await session.commit()
            return moved, job.status
    finally:
        await engine.dispose()


@pytest.fixture(scope="module")
def cas_job(gateway: Gateway) -> str:
    return _queued_job(make_tenant(gateway))


statuses = st.sampled_from(list(JobStatus))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(start=statuses, to=statuses, from_=st.frozensets(statuses), lease_matches=st.booleans())
def test_a_transition_moves_the_job_only_from_an_allowed_status_under_its_lease(
    gateway: Gateway, cas_job: str, start: JobStatus, to: JobStatus, from_: frozenset[JobStatus], lease_matches: bool
) -> None:
    url = gateway.settings.resolved_database_url
    asyncio.run(_set_status(url, cas_job, start, lease_owner="worker-a"))

    owner = "worker-a" if lease_matches else "worker-b"
    moved, status = asyncio.run(_try_transition(url, cas_job, to, from_, lease_owner=owner))

    expected = start in from_ and lease_matches
    assert moved is expected
    assert status is (to if expected else start)


async def test_of_racing_transitions_exactly_one_moves_the_job(gateway: Gateway, cas_job: str) -> None:
    url = gateway.settings.resolved_database_url
    await _set_status(url, cas_job, JobStatus.running)

    results = await asyncio.gather(
        *(_try_transition(url, cas_job, JobStatus.cancelled, ACTIVE) for _ in range(8)),
    )

    assert [moved for moved, _ in results].count(True) == 1
    assert {status for _, status in results} == {JobStatus.cancelled}


async def test_a_worker_whose_lease_was_taken_over_cannot_finish_the_job(
    gateway: Gateway, tenant: Tenant, receiver: Receiver
) -> None:
    webhook_id = _subscribe(gateway, tenant, receiver)
    job_id = _queued_job(tenant)
    url = gateway.settings.resolved_database_url
    # Worker A claimed the job, stalled past its lease; worker B took it over.
    await _set_status(url, job_id, JobStatus.running, lease_owner="worker-b")

    async def finish(worker: str, succeed: bool) -> bool:
        engine = create_engine_from_url(url)
        try:
            async with create_sessionmaker(engine)() as session:
                job = await session.get(FineTuningJob, job_id)
                assert job is not None
                if succeed:
                    done = await job_service.succeed(
                        session, job, worker_id=worker, fine_tuned_model=f"ft:{worker}", trained_tokens=10
                    )
                else:
                    done = await job_service.fail(session, job, JobFailure("training_failed", "boom"), worker_id=worker)
                await session.commit()
                return done
        finally:
            await engine.dispose()

    assert not await finish("worker-a", succeed=True)
    assert not await finish("worker-a", succeed=False)
    assert await finish("worker-b", succeed=True)
    assert not await finish("worker-b", succeed=True)  # told twice by the same worker: once
    assert not await finish("worker-b", succeed=False)

    job = tenant.client.fine_tuning.jobs.retrieve(job_id)
    assert (job.status, job.fine_tuned_model, job.error) == ("succeeded", "ft:worker-b", None)
    messages = _messages(tenant.client, job_id)
    assert messages.count("The job has successfully completed") == 1
    assert not any(m.startswith("Fine-tuning job failed") for m in messages)
    assert [d["event_type"] for d in _deliveries(gateway, tenant, webhook_id)] == ["fine_tuning.job.succeeded"]
    with gateway.http(tenant.key) as http:
        late_cancel = http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel")
    assert late_cancel.status_code == 400
    assert late_cancel.json()["error"]["code"] == "invalid_job_state"


# --- over HTTP -------------------------------------------------------------------------------------------------------


def test_concurrent_cancels_tell_the_outcome_once(gateway: Gateway, tenant: Tenant, receiver: Receiver) -> None:
    webhook_id = _subscribe(gateway, tenant, receiver)
    job_id = _queued_job(tenant)
    start = threading.Barrier(6)
    answers: list[httpx.Response] = []

    def cancel() -> None:
        with gateway.http(tenant.key) as http:
            start.wait()
            answers.append(http.post(f"/v1/fine_tuning/jobs/{job_id}/cancel"))

    threads = [threading.Thread(target=cancel) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(a.status_code for a in answers) == [200, 400, 400, 400, 400, 400]
    assert {a.json()["error"]["code"] for a in answers if a.status_code == 400} == {"invalid_job_state"}
    assert _messages(tenant.client, job_id).count("Fine-tuning job cancelled") == 1
    receiver.wait(1)
    time.sleep(1.0)  # several dispatcher rounds: a second delivery would have arrived
    assert [p["type"] for p in receiver.payloads()] == [CANCELLED]
    assert len(_deliveries(gateway, tenant, webhook_id)) == 1


def test_cancelling_a_running_job_sends_one_event_and_one_webhook(
    training_gateway: Gateway, receiver: Receiver
) -> None:
    tenant = make_tenant(training_gateway)
    client = tenant.client
    webhook_id = _subscribe(training_gateway, tenant, receiver)
    training = _upload(client, qa_rows(60))
    hyper = {"n_epochs": 5, "batch_size": 2, "learning_rate_multiplier": 30}
    job_id = client.fine_tuning.jobs.create(
        model=MODEL, training_file=training, method={"type": "supervised", "supervised": {"hyperparameters": hyper}}
    ).id
    deadline = time.monotonic() + 240
    while not any(m.startswith("Step ") for m in _messages(client, job_id)):
        assert time.monotonic() < deadline, "training did not start"
        time.sleep(0.2)

    assert client.fine_tuning.jobs.cancel(job_id).status == "cancelled"

    # The worker notices at its next heartbeat, stops the trainer and records that it stopped.
    deadline = time.monotonic() + 30
    while "Training process stopped" not in _messages(client, job_id):
        assert time.monotonic() < deadline, "the worker never recorded the stop"
        time.sleep(0.1)
    receiver.wait(1)
    time.sleep(1.5)  # a second delivery, if one were queued, would arrive within a few dispatcher rounds
    assert [p["type"] for p in receiver.payloads()] == [CANCELLED]
    assert receiver.payloads()[0]["data"] == {"id": job_id, "status": "cancelled", "fine_tuned_model": None}
    assert len(_deliveries(training_gateway, tenant, webhook_id)) == 1
    messages = _messages(client, job_id)
    assert messages.count("Fine-tuning job cancelled") == 1
    assert messages.index("Training process stopped") < messages.index("Fine-tuning job cancelled")  # newest first
    assert wait_for(client, job_id, {"cancelled"}).status == "cancelled"
