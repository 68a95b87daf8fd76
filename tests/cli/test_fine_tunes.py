"""`ftgw fine-tunes …` as a user runs it, against a live gateway that trains for real: create, follow (and Ctrl-C),
the "Try it" command pasted into a shell, a cancelled job's exit code and results."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time
from pathlib import Path

from tests.cli.runner import cli_env, ftgw, popen
from tests.conftest import Gateway, make_tenant
from tests.fine_tuning.test_training import MODEL, qa_rows, wait_for


def _data(tmp_path: Path, n: int) -> Path:
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(n)))
    return data


def test_create_uploads_trains_follows_and_downloads_results(training_gateway: Gateway, tmp_path: Path) -> None:
    tenant = make_tenant(training_gateway)
    run = {"gateway": training_gateway, "key": tenant.key, "timeout": 240.0}
    created = ftgw(
        "fine-tunes", "create", "-t", str(_data(tmp_path, 12)), "-m", MODEL, "--suffix", "cli run",
        "--n-epochs", "1", "--batch-size", "4", "--learning-rate-multiplier", "30", **run,  # type: ignore[arg-type]
    )  # fmt: skip

    assert created.returncode == 0, created.stdout + created.stderr
    assert "Uploaded file from" in created.stdout
    job_id = re.search(r"Created fine-tuning job: (ftjob-\w+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert "Step 3/3: training loss=" in created.stdout
    assert "None" not in created.stdout + created.stderr
    model = re.search(r"Job complete! Fine-tuned model: (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert model.startswith(f"ft:{MODEL}:") and ":cli-run:" in model

    # The "Try it" command works pasted into a shell: JSON body, the key, the endpoint the data was made for.
    try_it = created.stdout.split("Try it:\n", 1)[1].splitlines()[0]
    assert "/v1/completions" in try_it and "Content-Type: application/json" in try_it
    shell = cli_env(training_gateway, tenant.key)
    pasted = subprocess.run(["bash", "-c", try_it], env=shell, capture_output=True, text=True, timeout=60)
    answer = json.loads(pasted.stdout)
    assert answer["model"] == model and answer["object"] == "text_completion", pasted.stdout

    listed = ftgw("fine-tunes", "list", COLUMNS="80", **run)  # type: ignore[arg-type]
    assert job_id in listed.stdout and model in listed.stdout
    shown = json.loads(ftgw("fine-tunes", "get", "-i", job_id, "--json", **run).stdout)  # type: ignore[arg-type]
    assert (shown["status"], shown["fine_tuned_model"]) == ("succeeded", model)
    out = tmp_path / "results.csv"
    results = ftgw("fine-tunes", "results", "-i", job_id, "-o", str(out), **run)  # type: ignore[arg-type]
    assert results.returncode == 0
    assert "(3 steps)" in results.stdout
    assert out.read_text().splitlines()[0].startswith("step,elapsed_tokens,elapsed_examples,training_loss")
    checkpoints = json.loads(ftgw("fine-tunes", "checkpoints", "-i", job_id, "--json", **run).stdout)  # type: ignore[arg-type]
    assert checkpoints["data"] and checkpoints["data"][0]["fine_tuning_job_id"] == job_id

    # Following an ended job shows its last events and how it ended, not the whole history again.
    again = ftgw("fine-tunes", "follow", "-i", job_id, **run)  # type: ignore[arg-type]
    assert again.returncode == 0
    assert len([line for line in again.stdout.splitlines() if line.startswith("[")]) == 5
    assert "earlier events: ftgw fine-tunes events -i" in again.stderr
    assert f"Fine-tuned model: {model}" in again.stdout


def _read_until(process: subprocess.Popen[str], needle: str, timeout: float = 120) -> str:
    assert process.stdout is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = process.stdout.readline()
        seen += line
        if needle in line or (not line and process.poll() is not None):
            return seen
    raise AssertionError(f"no {needle!r} in {seen!r}")


def test_ctrl_c_stops_following_then_a_cancelled_job_exits_4_with_its_results(
    training_gateway: Gateway, tmp_path: Path
) -> None:
    tenant = make_tenant(training_gateway)
    run = {"gateway": training_gateway, "key": tenant.key}
    # 1000 steps: the tiny model trains a step in milliseconds, and the job must still run when SIGINT comes.
    created = ftgw(
        "fine-tunes", "create", "-t", str(_data(tmp_path, 40)), "-m", MODEL, "--n-epochs", "25", "--batch-size", "1",
        "--learning-rate-multiplier", "30", "--no-follow", **run,  # type: ignore[arg-type]
    )  # fmt: skip
    job_id = re.search(r"Created fine-tuning job: (ftjob-\w+)", created.stdout).group(1)  # type: ignore[union-attr]

    follow = popen("fine-tunes", "follow", "-i", job_id, **run)  # type: ignore[arg-type]
    _read_until(follow, "Step ")
    follow.send_signal(signal.SIGINT)
    rest = follow.communicate(timeout=30)[0]

    assert follow.returncode == 130
    assert f"ftgw fine-tunes follow -i {job_id}" in rest and "the job goes on" in rest
    assert "Traceback" not in rest
    assert tenant.client.fine_tuning.jobs.retrieve(job_id).status == "running"

    # Following again does not replay every event: the last few, then new ones.
    follow = popen("fine-tunes", "follow", "-i", job_id, **run)  # type: ignore[arg-type]
    backlog = _read_until(follow, "earlier events")
    assert "Fine-tuning job started" not in backlog
    cancelled = ftgw("fine-tunes", "cancel", "-i", job_id, **run)  # type: ignore[arg-type]
    assert cancelled.stdout.strip() == f"{job_id}: cancelled"
    rest = follow.communicate(timeout=60)[0]

    assert follow.returncode == 4
    assert f"Job {job_id} was cancelled" in rest and "Traceback" not in rest
    job = wait_for(tenant.client, job_id, {"cancelled"})
    deadline = time.monotonic() + 30
    while not job.result_files and time.monotonic() < deadline:
        time.sleep(0.2)
        job = tenant.client.fine_tuning.jobs.retrieve(job_id)
    out = tmp_path / "partial.csv"
    results = ftgw("fine-tunes", "results", "-i", job_id, "-o", str(out), **run)  # type: ignore[arg-type]
    assert results.returncode == 0, results.stderr
    steps = out.read_text().splitlines()[1:]
    assert 1 <= len(steps) < 1000  # the steps it ran, not a whole run
