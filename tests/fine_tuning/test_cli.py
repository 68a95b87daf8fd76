"""`ftgw fine-tunes …` as a user runs it, against a live gateway that trains for real."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.conftest import Gateway, make_tenant
from tests.fine_tuning.test_training import MODEL, qa_rows, wait_for


def _ftgw(gateway: Gateway, key: str, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "FTGW_BASE_URL": gateway.base_url, "FTGW_API_KEY": key, "COLUMNS": "200"}
    return subprocess.run(
        [sys.executable, "-m", "app.cli", "fine-tunes", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_create_uploads_trains_follows_and_downloads_results(training_gateway: Gateway, tmp_path: Path) -> None:
    tenant = make_tenant(training_gateway)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(12)))

    created = _ftgw(
        training_gateway,
        tenant.key,
        "create",
        "-t",
        str(data),
        "-m",
        MODEL,
        "--suffix",
        "cli run",
        "--n-epochs",
        "1",
        "--batch-size",
        "4",
        "--learning-rate-multiplier",
        "30",
    )

    assert created.returncode == 0, created.stdout + created.stderr
    assert "Uploaded file from" in created.stdout
    job_id = re.search(r"Created fine-tuning job: (ftjob-\w+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert "Step 3/3: training loss=" in created.stdout
    model = re.search(r"Job complete! Fine-tuned model: (\S+)", created.stdout).group(1)  # type: ignore[union-attr]
    assert model.startswith(f"ft:{MODEL}:") and ":cli-run:" in model

    listed = _ftgw(training_gateway, tenant.key, "list")
    assert job_id in listed.stdout
    shown = json.loads(_ftgw(training_gateway, tenant.key, "get", "-i", job_id).stdout)
    assert (shown["status"], shown["fine_tuned_model"]) == ("succeeded", model)
    out = tmp_path / "results.csv"
    results = _ftgw(training_gateway, tenant.key, "results", "-i", job_id, "-o", str(out))
    assert results.returncode == 0
    assert out.read_text().splitlines()[0].startswith("step,elapsed_tokens,elapsed_examples,training_loss")


def test_ctrl_c_stops_following_not_the_job(training_gateway: Gateway, tmp_path: Path) -> None:
    tenant = make_tenant(training_gateway)
    data = tmp_path / "qa.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in qa_rows(40)))
    env = {**os.environ, "FTGW_BASE_URL": training_gateway.base_url, "FTGW_API_KEY": tenant.key}
    follow = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "app.cli",
            "fine-tunes",
            "create",
            "-t",
            str(data),
            "-m",
            MODEL,
            "--n-epochs",
            "3",
            "--batch-size",
            "1",
            "--learning-rate-multiplier",
            "30",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert follow.stdout is not None
    job_id = None
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = follow.stdout.readline()
        found = re.search(r"Created fine-tuning job: (ftjob-\w+)", line)
        job_id = job_id or (found.group(1) if found else None)
        if "Step " in line:
            break
    assert job_id is not None

    follow.send_signal(signal.SIGINT)
    rest = follow.communicate(timeout=30)[0]

    assert follow.returncode == 130
    assert f"ftgw fine-tunes follow -i {job_id}" in rest
    assert tenant.client.fine_tuning.jobs.retrieve(job_id).status in ("running", "succeeded")
    assert wait_for(tenant.client, job_id, {"succeeded", "failed"}).status == "succeeded"
