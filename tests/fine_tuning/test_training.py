"""Real training end to end: the openai SDK creates a job, the embedded worker trains the tiny model for real."""

from __future__ import annotations

import asyncio
import csv
import fcntl
import io
import json
import math
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob

from app.db import create_engine_from_url, create_sessionmaker, sync_url
from app.migrate import upgrade
from app.registry.repository import ModelRepository
from tests.conftest import (
    Gateway,
    Tenant,
    gateway_settings,
    make_tenant,
    new_database,
    serve,
    wait_until_validated,
)
from tests.openai_schema import assert_matches

MODEL = "tiny-smollm2"
FAST = {"n_epochs": 2, "batch_size": 4, "learning_rate_multiplier": 30}


def _upload(client: OpenAI, rows: list[dict[str, object]], name: str = "train.jsonl") -> str:
    data = b"".join(json.dumps(r).encode() + b"\n" for r in rows)
    file = client.files.create(file=(name, data), purpose="fine-tune")
    assert wait_until_validated(client, file.id).status == "processed"
    return file.id


def wait_for(client: OpenAI, job_id: str, statuses: set[str], timeout: float = 240) -> FineTuningJob:
    deadline = time.monotonic() + timeout
    while True:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in statuses:
            return job
        assert time.monotonic() < deadline, f"{job_id} still {job.status}"
        time.sleep(0.2)


def qa_rows(n: int) -> list[dict[str, object]]:
    return [{"prompt": f"Is {i} a number?\n\n###\n\n", "completion": " yes END"} for i in range(n)]


def test_prompt_completion_job_trains_and_produces_a_model(training_gateway: Gateway) -> None:
    tenant: Tenant = make_tenant(training_gateway)
    client = tenant.client
    training = _upload(client, qa_rows(24))
    validation = _upload(client, qa_rows(10), "valid.jsonl")

    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        validation_file=validation,
        suffix="qa bot",
        seed=3,
        method={"type": "supervised", "supervised": {"hyperparameters": FAST}},
    )
    done = wait_for(client, job.id, {"succeeded", "failed", "cancelled"})

    assert done.status == "succeeded", done.error
    assert done.fine_tuned_model == f"ft:{MODEL}:{_project_slug(training_gateway, tenant)}:qa-bot:{job.id[6:]}"
    assert done.trained_tokens and done.trained_tokens > 0
    assert done.finished_at is not None and done.finished_at >= done.created_at
    assert (done.hyperparameters.n_epochs, done.hyperparameters.batch_size) == (2, 4)
    with training_gateway.http(tenant.key) as http:
        assert_matches(http.get(f"/v1/fine_tuning/jobs/{job.id}").json(), "FineTuningJob")
        checkpoints_raw = http.get(f"/v1/fine_tuning/jobs/{job.id}/checkpoints").json()
    assert_matches(checkpoints_raw, "ListFineTuningJobCheckpointsResponse")

    events = list(client.fine_tuning.jobs.list_events(job.id, limit=100))
    metrics = [e for e in events if e.type == "metrics"]
    assert len(metrics) == 12  # 24 examples / batch 4 = 6 steps per epoch, 2 epochs
    assert {int(e.data["step"]) for e in metrics} == set(range(1, 13))  # type: ignore[index]
    assert any("valid_loss" in (e.data or {}) for e in metrics)
    # The job's last event says it completed; only the eval of its model on the validation file comes after.
    messages = [e.message for e in events]
    completed = messages.index("The job has successfully completed")
    assert all(m.startswith(("Evaluating ", "Eval on the validation file: ")) for m in messages[:completed])
    assert messages[completed - 1].startswith(f"Evaluating {done.fine_tuned_model} against its base {MODEL}")

    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert [c.step_number for c in checkpoints] == [12, 6]
    assert checkpoints[0].fine_tuned_model_checkpoint == f"{done.fine_tuned_model}:ckpt-step-12"
    assert checkpoints[0].metrics.train_loss is not None

    # The embedded worker warmed the gateway's engine with the new model (base weights as the job started, the
    # adapter once it succeeded): its first answer waits for no load. Nothing has asked for it yet.
    engine = training_gateway.app.state.inference.backends.get("local").engine()
    deadline = time.monotonic() + 60
    while not any(job.id in str(path) for path in engine.loaded_adapters(MODEL)):
        assert time.monotonic() < deadline, engine.loaded_adapters(MODEL)
        time.sleep(0.1)

    model_ids = [m.id for m in client.models.list()]
    assert done.fine_tuned_model in model_ids
    assert checkpoints[1].fine_tuned_model_checkpoint in model_ids
    # The prompt format of qa_rows travels with the model and with every checkpoint.
    qa_format = {"separator": "\n\n###\n\n", "stop": " END", "leading_space": True, "labels": None}
    models = [done.fine_tuned_model, *(c.fine_tuned_model_checkpoint for c in checkpoints)]
    assert _prompt_formats(training_gateway, tenant.project_id) == dict.fromkeys(models, qa_format)

    results = client.files.retrieve(done.result_files[0])
    assert (results.purpose, results.filename) == ("fine-tune-results", "results.csv")
    rows = list(csv.DictReader(io.StringIO(client.files.content(results.id).text)))
    assert len(rows) == 12
    assert {
        "step",
        "elapsed_tokens",
        "elapsed_examples",
        "training_loss",
        "training_sequence_accuracy",
        "training_token_accuracy",
        "validation_loss",
    } <= set(rows[0])
    assert float(rows[-1]["training_loss"]) < float(rows[0]["training_loss"])


def _prompt_formats(gateway: Gateway, project_id: str) -> dict[str, dict[str, Any] | None]:
    """Each fine-tuned model of the project (checkpoints included) and its stored prompt format."""

    async def read() -> dict[str, dict[str, Any] | None]:
        engine = create_engine_from_url(gateway.settings.resolved_database_url)
        try:
            async with create_sessionmaker(engine)() as session:
                return {m.id: m.prompt_format for m in await ModelRepository(session).list(project_id)}
        finally:
            await engine.dispose()

    return asyncio.run(read())


def _project_slug(gateway: Gateway, tenant: Tenant) -> str:
    with gateway.http(gateway.admin_key) as http:
        return str(http.get(f"/v1/projects/{tenant.project_id}").json()["name"])


def test_fine_tuning_an_ft_model_continues_from_its_adapter(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    training = _upload(client, qa_rows(12))
    hyper = {"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 3}}}
    jobs = client.fine_tuning.jobs
    parent = wait_for(
        client, jobs.create(model=MODEL, training_file=training, method=hyper, seed=1).id, {"succeeded", "failed"}
    )
    assert parent.status == "succeeded", parent.error
    assert parent.fine_tuned_model is not None

    child = jobs.create(model=parent.fine_tuned_model, training_file=training, method=hyper, seed=2)
    done = wait_for(client, child.id, {"succeeded", "failed"})

    assert done.status == "succeeded", done.error
    assert done.model == parent.fine_tuned_model
    assert done.fine_tuned_model and done.fine_tuned_model.startswith(f"ft:{MODEL}:")
    parent_losses = [e.data["train_loss"] for e in jobs.list_events(parent.id, limit=100) if e.type == "metrics"]  # type: ignore[index]
    child_losses = [e.data["train_loss"] for e in jobs.list_events(child.id, limit=100) if e.type == "metrics"]  # type: ignore[index]
    # Starting from the parent's adapter, the child's first loss is near where the parent ended, not where it
    # began (events are newest first: [-1] is step 1, [0] the last step).
    parent_first, parent_last, child_first = parent_losses[-1], parent_losses[0], child_losses[-1]
    assert parent_last < parent_first * 0.8, parent_losses
    assert abs(child_first - parent_last) < abs(child_first - parent_first) / 3, (parent_losses, child_losses)


def test_dpo_job_on_preference_data(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    rows = [
        {
            "input": {"messages": [{"role": "user", "content": f"Greet person {i}"}]},
            "preferred_output": [{"role": "assistant", "content": f"Hello, person {i}!"}],
            "non_preferred_output": [{"role": "assistant", "content": "Go away."}],
        }
        for i in range(12)
    ]
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=_upload(client, rows),
        method={"type": "dpo", "dpo": {"hyperparameters": {**FAST, "n_epochs": 1, "beta": 0.2}}},
    )
    done = wait_for(client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    assert done.method is not None and done.method.type == "dpo"
    metrics = [e for e in client.fine_tuning.jobs.list_events(job.id, limit=100) if e.type == "metrics"]
    assert len(metrics) == 3


def test_classification_metrics_land_in_results_csv(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    rows = [
        {
            "prompt": f"Review {i}: {'great' if i % 2 else 'awful'} ->",
            "completion": " positive" if i % 2 else " negative",
        }
        for i in range(16)
    ]
    training = _upload(client, rows)
    job = client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        validation_file=training,
        method={"type": "supervised", "supervised": {"hyperparameters": FAST}},
        extra_body={"compute_classification_metrics": True, "classification_positive_class": " positive"},
    )
    done = wait_for(client, job.id, {"succeeded", "failed"})
    assert done.status == "succeeded", done.error
    rows_out = list(csv.DictReader(io.StringIO(client.files.content(done.result_files[0]).text)))
    final = rows_out[-1]
    for column in (
        "classification/accuracy",
        "classification/precision",
        "classification/recall",
        "classification/f1.0",
        "classification/auroc",
        "classification/auprc",
    ):
        assert column in final, column
    assert 0.0 <= float(final["classification/accuracy"]) <= 1.0


def _set_status(gateway: Gateway, file_id: str, status: str) -> None:
    engine = sa.create_engine(sync_url(gateway.settings.resolved_database_url))
    try:
        with engine.begin() as connection:
            connection.execute(sa.text("UPDATE files SET status = :s WHERE id = :id"), {"s": status, "id": file_id})
    finally:
        engine.dispose()


def test_jobs_wait_for_validation_then_queue_or_fail(training_gateway: Gateway) -> None:
    client = make_tenant(training_gateway).client
    hyper = {"type": "supervised", "supervised": {"hyperparameters": {**FAST, "n_epochs": 1}}}
    good = _upload(client, qa_rows(12))
    bad_rows = [json.dumps(r).encode() + b"\n" for r in qa_rows(11)] + [b"{broken\n"]
    bad = client.files.create(file=("bad.jsonl", b"".join(bad_rows)), purpose="fine-tune")
    assert wait_until_validated(client, bad.id).status == "error"
    # As if both files were still being validated when the jobs are created (the validator is not re-run).
    _set_status(training_gateway, good, "uploaded")
    _set_status(training_gateway, bad.id, "uploaded")
    ok_job = client.fine_tuning.jobs.create(model=MODEL, training_file=good, method=hyper)
    bad_job = client.fine_tuning.jobs.create(model=MODEL, training_file=good, validation_file=bad.id, method=hyper)
    assert (ok_job.status, bad_job.status) == ("validating_files", "validating_files")
    _set_status(training_gateway, good, "processed")
    _set_status(training_gateway, bad.id, "error")

    failed = wait_for(client, bad_job.id, {"succeeded", "failed"})
    assert failed.error is not None
    assert (failed.status, failed.error.param, failed.error.code) == ("failed", "validation_file", "invalid_file")
    assert "line 12" in failed.error.message
    assert wait_for(client, ok_job.id, {"succeeded", "failed"}).status == "succeeded"


def test_first_use_of_a_base_model_reports_its_preparation_and_auto_values_reach_the_job(
    database_url: str, tmp_path: Path
) -> None:
    # A fresh model cache: the tiny model is built on the job's first use, which the job's events must say.
    with new_database(database_url, tmp_path) as url:
        upgrade(url)
        settings = gateway_settings(url, tmp_path / "data", tmp_path / "models", embedded_worker=True)
        with serve(settings) as gateway:
            client = make_tenant(gateway).client
            training = _upload(client, qa_rows(30))
            # Batch left to auto: the job must report the number it trained with.
            hyper = {"n_epochs": 2, "learning_rate_multiplier": 30}
            job = client.fine_tuning.jobs.create(
                model=MODEL,
                training_file=training,
                method={"type": "supervised", "supervised": {"hyperparameters": hyper}},
            )
            done = wait_for(client, job.id, {"succeeded", "failed", "cancelled"})
            assert done.status == "succeeded", done.error
            events = list(reversed(list(client.fine_tuning.jobs.list_events(job.id, limit=100))))

    messages = [e.message for e in events]
    preparing = messages.index(f"Preparing base model {MODEL} (converting weights, first use only)")
    ready = next(i for i, m in enumerate(messages) if m.startswith(f"Base model {MODEL} ready in "))
    first_step = next(i for i, e in enumerate(events) if e.type == "metrics")
    assert preparing < ready < first_step
    batch = done.hyperparameters.batch_size
    assert isinstance(batch, int) and batch >= 1
    assert done.hyperparameters.n_epochs == 2
    assert done.method is not None and done.method.supervised is not None
    assert done.method.supervised.hyperparameters is not None
    assert done.method.supervised.hyperparameters.batch_size == batch
    # 30 examples x 2 epochs over at least 30 steps: the rule's floor caps the batch at 2.
    assert batch <= 2
    steps = sum(1 for e in events if e.type == "metrics")
    assert steps == 2 * math.ceil(30 / batch)


def test_a_job_cancelled_while_its_base_model_is_prepared_stops_at_once(database_url: str, tmp_path: Path) -> None:
    # Another process converting the same base model holds the cache's lock: the job waits in "Preparing". A cancel
    # must end it now, not after the (here endless) conversion; the conversion goes on for the next job.
    models = tmp_path / "models"
    models.mkdir()
    with new_database(database_url, tmp_path) as url, (models / f".{MODEL}.lock").open("a") as lock:
        upgrade(url)
        fcntl.flock(lock, fcntl.LOCK_EX)
        settings = gateway_settings(url, tmp_path / "data", models, embedded_worker=True)
        with serve(settings) as gateway:
            client = make_tenant(gateway).client
            training = _upload(client, qa_rows(12))
            job = client.fine_tuning.jobs.create(model=MODEL, training_file=training)
            _wait_for_event(client, job.id, "Preparing base model", 60)
            cancelled_at = time.monotonic()
            assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"
            _wait_for_event(client, job.id, "Stopped waiting", 30)
            stopped_after = time.monotonic() - cancelled_at
            # The worker is free again while the lock is still held: a second job gets as far as preparing.
            second = client.fine_tuning.jobs.create(model=MODEL, training_file=training)
            _wait_for_event(client, second.id, "Preparing base model", 60)
            fcntl.flock(lock, fcntl.LOCK_UN)  # the other "process" is done: the model builds, the second job trains
            done = wait_for(client, second.id, {"succeeded", "failed", "cancelled"})
            assert done.status == "succeeded", done.error
            assert client.fine_tuning.jobs.retrieve(job.id).status == "cancelled"
            assert not any(e.type == "metrics" for e in client.fine_tuning.jobs.list_events(job.id, limit=100))
    assert stopped_after < 10


def _wait_for_event(client: OpenAI, job_id: str, prefix: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not any(e.message.startswith(prefix) for e in client.fine_tuning.jobs.list_events(job_id)):
        assert time.monotonic() < deadline, f"no event of {job_id} starts with {prefix!r} after {timeout} s"
        time.sleep(0.1)
