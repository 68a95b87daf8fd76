"""``ftgw fine-tunes``: create (uploading files), follow, list, get, events, checkpoints, pause, resume, cancel,
results: the seed's ``openai api fine_tunes.*`` on a running gateway."""

from __future__ import annotations

import json as jsonlib
import shlex
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli import _client
from app.cli._api._common import Json, Limit, group
from app.cli._api.files import file_id
from app.cli._errors import CANCELLED, FAILED, INTERRUPTED, CliError
from app.cli._output import echo, note, plural, print_json, table

if TYPE_CHECKING:
    from app.cli._client import Gateway

NAME = "fine-tunes"
HELP = "Create, follow and control fine-tuning jobs."
app = group(HELP)

JobId = Annotated[str, typer.Option("-i", "--id", metavar="JOB_ID", help="The job's id (ftjob-…).")]
JOBS = "/v1/fine_tuning/jobs"
COLUMNS = ("id", "model", "status", "fine_tuned_model", "created_at")


def _first_record(gw: Gateway, file_id: str) -> dict[str, Any]:
    """The training file's first example (read from the start of its content, not downloaded whole)."""
    try:
        with gw.stream("GET", f"/v1/files/{file_id}/content") as response:
            for line in response.iter_lines():
                if line.strip():
                    record = jsonlib.loads(line)
                    return record if isinstance(record, dict) else {}
    except (CliError, ValueError):
        pass
    return {}


def try_it(gw: Gateway, job: dict[str, Any]) -> str:
    """A curl command that calls the new model and works when pasted: the endpoint its data was trained for
    (chat for chat and preference data, completions for prompt-completion), JSON content type, the key."""
    model = job["fine_tuned_model"]
    record = {} if job.get("method", {}).get("type") == "dpo" else _first_record(gw, job["training_file"])
    if "prompt" in record and "messages" not in record:
        endpoint, body = "completions", {"model": model, "prompt": "Hello", "max_tokens": 32}
    else:
        messages = [{"role": "user", "content": "Hello"}]
        endpoint, body = "chat/completions", {"model": model, "messages": messages, "max_tokens": 32}
    variable = gw.connection.key_variable
    return (
        f'curl {gw.connection.base_url}/v1/{endpoint} -H "Authorization: Bearer ${variable}" '
        f"-H 'Content-Type: application/json' -d {shlex.quote(jsonlib.dumps(body))}"
    )


def _finish(gw: Gateway, job_id: str) -> None:
    from app.cli._api._follow import follow

    try:
        job = follow(gw, job_id)
    except KeyboardInterrupt:
        note(f"\nStopped following; the job goes on. Follow it again with: ftgw fine-tunes follow -i {job_id}")
        raise typer.Exit(INTERRUPTED) from None
    status = job["status"]
    if status == "succeeded":
        echo(f"Job complete! Fine-tuned model: {job['fine_tuned_model']}")
        echo("Try it:")
        echo(try_it(gw, job))
        return
    if status == "cancelled":
        results = f"; results of the steps it ran: ftgw fine-tunes results -i {job_id}" if job["result_files"] else ""
        echo(f"Job {job_id} was cancelled{results}")
        raise typer.Exit(CANCELLED)
    message = (job.get("error") or {}).get("message") or "no reason given"
    raise CliError(f"Job {job_id} failed: {message}", f"Its events: ftgw fine-tunes events -i {job_id}", FAILED)


@app.command("create")
def create(
    training_file: Annotated[str, typer.Option("-t", "--training-file", help="A JSONL path or a file id.")],
    model: Annotated[str, typer.Option("-m", "--model", help="A base model, or a ft: model to continue.")],
    validation_file: Annotated[
        str | None, typer.Option("-v", "--validation-file", help="A JSONL path or a file id.")
    ] = None,
    suffix: Annotated[str | None, typer.Option(help="Up to 64 characters in the model's name.")] = None,
    n_epochs: Annotated[int | None, typer.Option("--n-epochs", min=1, max=50, help="Default: auto.")] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=256, help="Default: auto.")] = None,
    learning_rate_multiplier: Annotated[
        float | None, typer.Option("--learning-rate-multiplier", min=0, help="Default: auto.")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of the run, for a repeatable result.")] = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Return once the job is created.")] = False,
) -> None:
    """Upload files if needed, create a fine-tuning job, and follow it until it ends."""
    gw = _client.gateway()
    hyper: dict[str, int | float] = {}
    if n_epochs is not None:
        hyper["n_epochs"] = n_epochs
    if batch_size is not None:
        hyper["batch_size"] = batch_size
    if learning_rate_multiplier is not None:
        hyper["learning_rate_multiplier"] = learning_rate_multiplier
    body = {
        "model": model,
        "training_file": file_id(gw, training_file),
        "validation_file": file_id(gw, validation_file) if validation_file else None,
        "suffix": suffix,
        "seed": seed,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    }
    job = gw.post(JOBS, body)
    echo(f"Created fine-tuning job: {job['id']}")
    if no_follow:
        note(f"Follow it with: ftgw fine-tunes follow -i {job['id']}")
        return
    _finish(gw, job["id"])


@app.command("follow")
def follow(job_id: JobId) -> None:
    """Follow a job live until it ends (Ctrl-C stops following, not the job)."""
    _finish(_client.gateway(), job_id)


@app.command("list")
def list_jobs(limit: Limit = 20, json: Json = False) -> None:
    """List recent jobs, newest first."""
    page = _client.gateway().get(JOBS, limit=limit)
    if json:
        print_json(page)
        return
    table(page["data"], COLUMNS, times=("created_at",))


def _show(job: dict[str, Any]) -> None:
    hyper = job.get("hyperparameters") or {}
    rows = [
        ("id", job["id"]),
        ("status", job["status"]),
        ("model", job["model"]),
        ("fine_tuned_model", job.get("fine_tuned_model") or ""),
        ("training_file", job["training_file"]),
        ("validation_file", job.get("validation_file") or ""),
        ("hyperparameters", ", ".join(f"{k}={v}" for k, v in hyper.items())),
        ("trained_tokens", job.get("trained_tokens") or ""),
        ("result_files", ", ".join(job.get("result_files") or [])),
        ("error", (job.get("error") or {}).get("message", "")),
    ]
    width = max(len(k) for k, _ in rows)
    for key, value in rows:
        echo(f"{key.ljust(width)}  {value}")


@app.command("get")
def get(job_id: JobId, json: Json = False) -> None:
    """Show a job."""
    job = _client.gateway().get(f"{JOBS}/{job_id}")
    if json:
        print_json(job)
        return
    _show(job)


def _control(job_id: str, action: str, json: bool) -> None:
    job = _client.gateway().post(f"{JOBS}/{job_id}/{action}")
    if json:
        print_json(job)
        return
    echo(f"{job['id']}: {job['status']}")


@app.command("cancel")
def cancel(job_id: JobId, json: Json = False) -> None:
    """Cancel a job (its results so far are kept)."""
    _control(job_id, "cancel", json)


@app.command("pause")
def pause(job_id: JobId, json: Json = False) -> None:
    """Pause a running job: it saves its state and waits for resume."""
    _control(job_id, "pause", json)


@app.command("resume")
def resume(job_id: JobId, json: Json = False) -> None:
    """Resume a paused job from where it stopped."""
    _control(job_id, "resume", json)


@app.command("events")
def events(job_id: JobId, limit: Limit = 50, json: Json = False) -> None:
    """List a job's events, oldest of the latest LIMIT first."""
    page = _client.gateway().get(f"{JOBS}/{job_id}/events", limit=limit)
    if json:
        print_json(page)
        return
    from app.cli._api._follow import _print_event

    for event in reversed(page["data"]):
        _print_event(event)


@app.command("checkpoints")
def checkpoints(job_id: JobId, limit: Limit = 10, json: Json = False) -> None:
    """List a job's checkpoints (each is a model you can call)."""
    page = _client.gateway().get(f"{JOBS}/{job_id}/checkpoints", limit=limit)
    if json:
        print_json(page)
        return
    rows = [
        {
            "model": c["fine_tuned_model_checkpoint"],
            "step": c["step_number"],
            "metrics": ", ".join(f"{k}={v:.4g}" for k, v in c["metrics"].items()),
        }
        for c in page["data"]
    ]
    table(rows, ("model", "step", "metrics"))


@app.command("results")
def results(
    job_id: JobId,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Default: <job id>_results.csv")] = None,
) -> None:
    """Download a job's results.csv (a cancelled job's holds the steps it ran)."""
    gw = _client.gateway()
    job = gw.get(f"{JOBS}/{job_id}")
    if not job["result_files"]:
        why = {
            "cancelled": "it was cancelled before its first step",
            "failed": "it failed before writing any",
        }.get(job["status"], f"it is {job['status']}; results are written when it ends")
        raise CliError(f"{job_id} has no results: {why}.", None, FAILED)
    target = out or Path(f"{job_id}_results.csv")
    data = gw.request("GET", f"/v1/files/{job['result_files'][0]}/content").content
    target.write_bytes(data)
    rows = max(0, data.count(b"\n") - 1)
    echo(f"wrote {target} ({plural(rows, 'step')})")
