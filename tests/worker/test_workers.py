"""Standalone workers (`ftgw worker` processes) sharing one database and data folder with an API-only gateway.

kill -9 of a worker mid-training, two workers and one job, cancel really stopping the training process, and
pause/resume keeping progress: all with real processes, real training of the tiny model, real HTTP.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from openai import OpenAI

from app.db import create_engine_from_url, create_sessionmaker
from app.fine_tuning.repository import JobRepository
from app.migrate import upgrade
from tests.conftest import Gateway, Tenant, gateway_settings, make_tenant, new_database, serve
from tests.fine_tuning.test_training import MODEL, _upload, wait_for


class Workers:
    def __init__(self, gateway: Gateway, tmp_path: Path) -> None:
        self.gateway = gateway
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, **extra_env: str) -> subprocess.Popen[bytes]:
        s = self.gateway.settings
        env = {
            **os.environ,
            "FTGW_DATABASE_URL": s.resolved_database_url,
            "FTGW_DATA_DIR": str(s.data_dir),
            "FTGW_MODEL_CACHE_DIR": str(s.models_cache),
            "FTGW_TEST_MODELS": "true",
            "FTGW_WORKER_LEASE_SECONDS": "3",
            "FTGW_WORKER_HEARTBEAT_SECONDS": "0.5",
            "FTGW_WORKER_POLL_SECONDS": "0.2",
            "FTGW_LOG_LEVEL": "warning",
            **extra_env,
        }
        log = (self.tmp_path / f"worker-{len(self.procs)}.log").open("wb")
        proc = subprocess.Popen([sys.executable, "-m", "app.cli", "worker"], env=env, stdout=log, stderr=log)
        self.procs.append(proc)
        return proc

    def stop_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def children(pid: int) -> set[int]:
    """The worker's training processes (multiprocessing's resource tracker, also a child, is not one)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        text = (task / "children").read_text().split() if (task / "children").exists() else []
        for child in map(int, text):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
            except FileNotFoundError:
                continue
            if b"spawn_main" in cmdline:
                found.add(child)
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


@pytest.fixture
def api_gateway(database_url: str, tmp_path: Path, model_cache: Path) -> Iterator[Gateway]:
    """A gateway without a worker, on a database of its own: only the test's workers train."""
    with new_database(database_url, tmp_path) as url:
        upgrade(url)
        with serve(gateway_settings(url, tmp_path / "data", model_cache)) as gw:
            yield gw


@pytest.fixture
def workers(api_gateway: Gateway, tmp_path: Path) -> Iterator[Workers]:
    pool = Workers(api_gateway, tmp_path)
    yield pool
    pool.stop_all()


def rows(n: int) -> list[dict[str, object]]:
    return [{"prompt": f"Item {i} is\n\n###\n\n", "completion": f" number {i} END"} for i in range(n)]


def _metric_steps(client: OpenAI, job_id: str) -> list[int]:
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    steps = [int(e.data["step"]) for e in reversed(events) if e.type == "metrics"]  # type: ignore[index]
    return steps


def _messages(client: OpenAI, job_id: str) -> list[str]:
    return [e.message for e in reversed(list(client.fine_tuning.jobs.list_events(job_id, limit=100)))]


def _create(tenant: Tenant, n: int, epochs: int) -> str:
    training = _upload(tenant.client, rows(n))
    return tenant.client.fine_tuning.jobs.create(
        model=MODEL,
        training_file=training,
        seed=11,
        method={
            "type": "supervised",
            "supervised": {"hyperparameters": {"n_epochs": epochs, "batch_size": 2, "learning_rate_multiplier": 30}},
        },
    ).id


def _wait_until(predicate: object, timeout: float = 120, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def test_killed_worker_job_resumes_on_another_from_its_checkpoint(api_gateway: Gateway, workers: Workers) -> None:
    tenant = make_tenant(api_gateway)
    client = tenant.client
    job_id = _create(tenant, 40, 3)  # 20 steps an epoch, a checkpoint at 20 and 40
    first = workers.start()

    _wait_until(lambda: client.fine_tuning.jobs.checkpoints.list(job_id).data, what="the first checkpoint")
    trainers = children(first.pid)
    assert trainers, "the worker trains in a child process"
    first.send_signal(signal.SIGKILL)
    first.wait()
    _wait_until(lambda: not any(alive(pid) for pid in trainers), timeout=10, what="the orphaned trainer to die")

    workers.start()
    done = wait_for(client, job_id, {"succeeded", "failed"})

    assert done.status == "succeeded", done.error
    messages = _messages(client, job_id)
    assert messages.count("Fine-tuning job started") == 1
    assert messages.count("Fine-tuning job resumed") == 1
    steps = _metric_steps(client, job_id)
    resumed_at = messages.index("Fine-tuning job resumed")
    # After the resume, training picks up right after a checkpoint (20) or a later saved state: never from 1.
    restart = steps[len([m for m in messages[:resumed_at] if m.startswith("Step ")])]
    assert restart in range(21, 61)
    assert set(steps) == set(range(1, 61))
    assert [c.step_number for c in client.fine_tuning.jobs.checkpoints.list(job_id)] == [60, 40, 20]


def test_two_workers_never_run_one_job(api_gateway: Gateway, workers: Workers) -> None:
    tenant = make_tenant(api_gateway)
    client = tenant.client
    job_id = _create(tenant, 12, 2)
    workers.start()
    workers.start()

    done = wait_for(client, job_id, {"succeeded", "failed"})

    assert done.status == "succeeded", done.error
    messages = _messages(client, job_id)
    assert messages.count("Fine-tuning job started") == 1
    assert "Fine-tuning job resumed" not in messages
    steps = _metric_steps(client, job_id)
    assert steps == sorted(set(steps)) == list(range(1, 13))


async def test_concurrent_claims_have_one_winner(api_gateway: Gateway) -> None:
    tenant = make_tenant(api_gateway)
    job_id = _create(tenant, 10, 1)
    engine = create_engine_from_url(api_gateway.settings.resolved_database_url)
    sessionmaker = create_sessionmaker(engine)

    async def claim(worker: str) -> str | None:
        async with sessionmaker() as session:
            from datetime import timedelta

            job = await JobRepository(session).claim(worker, ["local"], timedelta(seconds=30))
            await session.commit()
            return job.id if job else None

    try:
        results = await asyncio.gather(*(claim(f"w{i}") for i in range(8)))
    finally:
        await engine.dispose()
    assert results.count(job_id) == 1
    assert results.count(None) == 7


def test_cancel_kills_the_training_process(api_gateway: Gateway, workers: Workers) -> None:
    tenant = make_tenant(api_gateway)
    client = tenant.client
    job_id = _create(tenant, 60, 5)
    worker = workers.start()
    _wait_until(lambda: _metric_steps(client, job_id), what="training to start")
    trainers = children(worker.pid)
    assert trainers

    assert client.fine_tuning.jobs.cancel(job_id).status == "cancelled"

    _wait_until(lambda: not any(alive(pid) for pid in trainers), timeout=10, what="the trainer to stop")
    assert worker.poll() is None, "the worker itself lives on"
    steps_then = len(_metric_steps(client, job_id))
    time.sleep(1.5)
    assert len(_metric_steps(client, job_id)) == steps_then, "no training after cancel"
    _wait_until(lambda: "Training process stopped" in _messages(client, job_id), timeout=10, what="the stop event")
    assert client.fine_tuning.jobs.retrieve(job_id).status == "cancelled"
    # The same worker takes the next job.
    assert wait_for(client, _create(tenant, 10, 1), {"succeeded", "failed"}).status == "succeeded"


def test_pause_and_resume_keep_progress(api_gateway: Gateway, workers: Workers) -> None:
    tenant = make_tenant(api_gateway)
    client = tenant.client
    job_id = _create(tenant, 40, 2)  # 40 steps
    worker = workers.start()
    _wait_until(lambda: len(_metric_steps(client, job_id)) >= 5, what="a few steps")
    running = client.fine_tuning.jobs.retrieve(job_id)
    assert running.status == "running"
    assert running.estimated_finish is not None and running.estimated_finish >= running.created_at
    assert running.trained_tokens and running.trained_tokens > 0

    assert client.fine_tuning.jobs.pause(job_id).status == "paused"
    _wait_until(
        lambda: "Training stopped; progress is saved and resumes from there" in _messages(client, job_id),
        timeout=60,
        what="the trainer to save and stop",
    )
    assert not children(worker.pid)
    paused_steps = _metric_steps(client, job_id)
    time.sleep(1.0)
    assert _metric_steps(client, job_id) == paused_steps
    assert client.fine_tuning.jobs.retrieve(job_id).status == "paused"

    assert client.fine_tuning.jobs.resume(job_id).status == "queued"
    done = wait_for(client, job_id, {"succeeded", "failed"})

    assert done.status == "succeeded", done.error
    steps = _metric_steps(client, job_id)
    assert steps == list(range(1, 41)), "each step trained exactly once across the pause"
    assert json.dumps(done.hyperparameters.model_dump()) == json.dumps(
        {"batch_size": 2, "learning_rate_multiplier": 30.0, "n_epochs": 2}
    )
