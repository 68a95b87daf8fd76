"""``ftgw fine-tunes …``: the seed's fine-tunes commands, talking to a running gateway with the openai SDK."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import httpx
import typer
from openai import OpenAI
from openai.types.fine_tuning import FineTuningJob
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

TERMINAL = {"succeeded", "failed", "cancelled"}

fine_tunes = typer.Typer(help="Create and follow fine-tuning jobs on a running gateway.", no_args_is_help=True)
console = Console(soft_wrap=True)

BaseUrl = Annotated[
    str, typer.Option("--base-url", envvar="FTGW_BASE_URL", help="The gateway, e.g. http://127.0.0.1:8000.")
]
ApiKey = Annotated[str, typer.Option("--api-key", envvar=["FTGW_API_KEY", "OPENAI_API_KEY"], help="An API key.")]


def _client(base_url: str, api_key: str) -> OpenAI:
    return OpenAI(base_url=base_url.rstrip("/") + "/v1", api_key=api_key, max_retries=2)


def _file_id(client: OpenAI, value: str) -> str:
    """An uploaded file's id, uploading ``value`` first when it is a path."""
    path = Path(value)
    if path.is_file():
        with path.open("rb") as f:
            uploaded = client.files.create(file=(path.name, f), purpose="fine-tune")
        console.print(f"Uploaded file from {path}: {uploaded.id}")
        return uploaded.id
    if value.startswith("file-"):
        return value
    console.print(f"[red]{value} is neither a file on disk nor a file id[/]")
    raise typer.Exit(2)


def _show(job: FineTuningJob) -> None:
    console.print_json(job.model_dump_json())


def _follow(base_url: str, api_key: str, client: OpenAI, job_id: str) -> FineTuningJob:
    """Stream the job's events until it ends; Ctrl-C stops following, never the job."""
    last_event: str | None = None
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    task = progress.add_task("training", total=None)
    url = f"{base_url.rstrip('/')}/v1/fine_tuning/jobs/{job_id}/events"
    with progress:
        while True:
            headers = {"Authorization": f"Bearer {api_key}", "Accept": "text/event-stream"}
            if last_event:
                headers["Last-Event-ID"] = last_event
            try:
                with httpx.stream("GET", url, params={"stream": "true"}, headers=headers, timeout=None) as response:
                    if response.status_code != 200:
                        console.print(f"[red]{response.read().decode()}[/]")
                        raise typer.Exit(1)
                    for line in response.iter_lines():
                        if line.startswith("id:"):
                            last_event = line[3:].strip()
                        if not line.startswith("data:"):
                            continue
                        data = line[5:].strip()
                        if data == "[DONE]":
                            return client.fine_tuning.jobs.retrieve(job_id)
                        event = json.loads(data)
                        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(event["created_at"]))
                        metrics = event.get("data") or {}
                        if event.get("type") == "metrics" and "step" in metrics:
                            progress.update(task, completed=metrics["step"], total=metrics.get("total_steps"))
                        progress.console.print(f"[{stamp}] {event['message']}", markup=False, highlight=False)
            except httpx.TransportError:
                time.sleep(1)  # the stream resumes after the last event seen, losing and repeating nothing


@fine_tunes.command("create")
def create(
    base_url: BaseUrl,
    api_key: ApiKey,
    training_file: Annotated[str, typer.Option("-t", "--training-file", help="A JSONL path or a file id.")],
    model: Annotated[str, typer.Option("-m", "--model", help="Base model or ft: model.")],
    validation_file: Annotated[str | None, typer.Option("-v", "--validation-file")] = None,
    suffix: Annotated[str | None, typer.Option(help="Up to 64 characters in the model's name.")] = None,
    n_epochs: Annotated[int | None, typer.Option("--n-epochs", min=1, max=50)] = None,
    batch_size: Annotated[int | None, typer.Option("--batch-size", min=1, max=256)] = None,
    learning_rate_multiplier: Annotated[float | None, typer.Option("--learning-rate-multiplier", min=0)] = None,
    seed: Annotated[int | None, typer.Option()] = None,
    no_follow: Annotated[bool, typer.Option("--no-follow", help="Return once the job is created.")] = False,
) -> None:
    """Upload files if needed, create a fine-tuning job, and follow it until it ends."""
    client = _client(base_url, api_key)
    hyper: dict[str, int | float] = {}
    if n_epochs is not None:
        hyper["n_epochs"] = n_epochs
    if batch_size is not None:
        hyper["batch_size"] = batch_size
    if learning_rate_multiplier is not None:
        hyper["learning_rate_multiplier"] = learning_rate_multiplier
    job = client.fine_tuning.jobs.create(
        model=model,
        training_file=_file_id(client, training_file),
        validation_file=_file_id(client, validation_file) if validation_file else None,
        suffix=suffix,
        seed=seed,
        method={"type": "supervised", "supervised": {"hyperparameters": hyper}},  # type: ignore[arg-type]
    )
    console.print(f"Created fine-tuning job: {job.id}")
    if no_follow:
        return
    _finish(base_url, api_key, client, job.id)


def _finish(base_url: str, api_key: str, client: OpenAI, job_id: str) -> None:
    try:
        job = _follow(base_url, api_key, client, job_id)
    except KeyboardInterrupt:
        console.print(f"\nStopped following; the job goes on. Resume with: ftgw fine-tunes follow -i {job_id}")
        raise typer.Exit(130) from None
    if job.status == "succeeded":
        console.print(f"Job complete! Fine-tuned model: {job.fine_tuned_model}")
        console.print(
            'Try it: curl $FTGW_BASE_URL/v1/completions -H "Authorization: Bearer $FTGW_API_KEY" '
            f'-d \'{{"model": "{job.fine_tuned_model}", "prompt": "…"}}\'',
            markup=False,
        )
    else:
        console.print(f"Job {job.status}: {job.error.message if job.error else ''}")
        raise typer.Exit(1)


@fine_tunes.command("follow")
def follow(base_url: BaseUrl, api_key: ApiKey, job_id: Annotated[str, typer.Option("-i", "--id")]) -> None:
    """Follow a job's events live until it ends (Ctrl-C stops following, not the job)."""
    _finish(base_url, api_key, _client(base_url, api_key), job_id)


@fine_tunes.command("list")
def list_jobs(base_url: BaseUrl, api_key: ApiKey, limit: int = 20) -> None:
    """List recent jobs."""
    table = Table("id", "model", "status", "fine_tuned_model", "created")
    for job in _client(base_url, api_key).fine_tuning.jobs.list(limit=limit).data:
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(job.created_at))
        table.add_row(job.id, job.model, job.status, job.fine_tuned_model or "", created)
    console.print(table)


@fine_tunes.command("get")
def get(base_url: BaseUrl, api_key: ApiKey, job_id: Annotated[str, typer.Option("-i", "--id")]) -> None:
    """Show a job."""
    _show(_client(base_url, api_key).fine_tuning.jobs.retrieve(job_id))


@fine_tunes.command("cancel")
def cancel(base_url: BaseUrl, api_key: ApiKey, job_id: Annotated[str, typer.Option("-i", "--id")]) -> None:
    """Cancel a job."""
    _show(_client(base_url, api_key).fine_tuning.jobs.cancel(job_id))


@fine_tunes.command("results")
def results(
    base_url: BaseUrl,
    api_key: ApiKey,
    job_id: Annotated[str, typer.Option("-i", "--id")],
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Default: <job id>_results.csv")] = None,
) -> None:
    """Download a finished job's results.csv."""
    client = _client(base_url, api_key)
    job = client.fine_tuning.jobs.retrieve(job_id)
    if not job.result_files:
        console.print(f"[red]{job_id} has no results yet (status {job.status})[/]")
        raise typer.Exit(1)
    target = out or Path(f"{job_id}_results.csv")
    target.write_bytes(client.files.content(job.result_files[0]).content)
    console.print(f"wrote {target}")
