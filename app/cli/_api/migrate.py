"""``ftgw migrate openai``: move fine-tunes off an upstream provider through the gateway's /v1/migrations: list what
the provider holds, plan (shown before anything moves), confirm, start, follow each job's steps, write the report,
and switch the kept names to the new models."""

from __future__ import annotations

import json as jsonlib
import math
import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli import _client
from app.cli._api.files import file_id
from app.cli._errors import CANCELLED, FAILED, INTERRUPTED, UNREACHABLE, USAGE, CliError
from app.cli._output import echo, note, plural, table

if TYPE_CHECKING:
    from app.cli._client import Gateway

# The subcommands of ``ftgw migrate`` (whose help and database migration live in ``_server.py``).
app = typer.Typer(add_completion=False, rich_markup_mode=None)

MIGRATIONS = "/v1/migrations"
TERMINAL = {"completed", "failed", "cancelled"}


class DistilMode(StrEnum):
    missing = "missing"
    always = "always"


def _resume_command(migration_id: str) -> str:
    return f"ftgw migrate openai --resume {migration_id}"


# --- what the provider holds -----------------------------------------------------------------------------------------


def _inventory(gw: Gateway, provider: str) -> None:
    found = gw.get(f"{MIGRATIONS}/sources/{provider}")
    echo(f"Fine-tuning jobs on {provider}:")
    job_columns = ("id", "model", "fine_tuned_model", "status", "method", "training_file", "validation_file")
    table(found["jobs"], (*job_columns, "trained_tokens", "created_at"), times=("created_at",))
    echo()
    echo(f"Files on {provider}:")
    table(found["files"], ("id", "filename", "purpose", "bytes", "created_at"), times=("created_at",))
    echo()
    echo(f"Fine-tuned models on {provider}:")
    table(found["models"], ("id", "owned_by", "created"), times=("created",))


# --- the plan --------------------------------------------------------------------------------------------------------


def _show_plan(migration: dict[str, Any]) -> None:
    from rich.filesize import decimal

    echo(
        f"Migration {migration['id']}: {migration['provider']} -> {migration['target_provider']}, "
        f"retrained on {migration['base_model']}"
    )
    items = migration["items"]
    rows = [
        {
            "upstream_job": item["upstream_job"],
            "upstream_model": item["upstream_model"],
            "action": item["action"],
            "alias": item.get("alias"),
            "note": item.get("reason"),
        }
        for item in items
    ]
    table(rows, ("upstream_job", "upstream_model", "action", "alias", "note"))
    for item in items:
        if item["action"] != "skip" and item["translations"]:
            echo()
            echo(f"{item['upstream_job']}, translated for the new job:")
            table(item["translations"], ("field", "upstream", "local", "note"))
    totals = migration["totals"]
    seconds = totals["estimated_training_seconds"]
    tokens = totals["estimated_trained_tokens"]
    cost = totals["estimated_upstream_cost"]
    lines = [
        ("Jobs", f"{totals['to_copy']} copied, {totals['to_distil']} distilled, {totals['skipped']} skipped"),
        ("Files to copy", f"{totals['files']} ({decimal(totals['bytes'])})"),
        ("Names kept", plural(totals["aliases"], "alias", "aliases")),
        ("Upstream calls", f"at most {totals['upstream_calls']}"),
        ("Estimated trained tokens", "unknown" if tokens is None else str(tokens)),
        ("Estimated training time", "unknown" if seconds is None else f"about {_minutes(seconds)}"),
        ("Estimated upstream cost", "unknown" if cost is None else f"${cost:.4f}"),
    ]
    echo()
    width = max(len(label) for label, _ in lines)
    for label, value in lines:
        echo(f"{label.ljust(width)}  {value}")
    for line in totals["notes"]:
        echo(f"  note: {line}")


def _minutes(seconds: float) -> str:
    return plural(max(1, math.ceil(seconds / 60)), "minute")


def _plan(
    gw: Gateway,
    *,
    provider: str,
    base_model: str,
    jobs: list[str] | None,
    suffix: str | None,
    hyperparameters: dict[str, int | float],
    distil_prompts: str | None,
    distil_mode: DistilMode | None,
    parity_rows: int | None,
    max_regression: float | None,
) -> dict[str, Any]:
    distil: dict[str, str] | None = None
    if distil_prompts is not None or distil_mode is not None:
        distil = {"mode": (distil_mode or DistilMode.missing).value}
        if distil_prompts is not None:
            distil["prompts_file"] = file_id(gw, distil_prompts, "user_data", option="--distil-prompts")
    parity = {k: v for k, v in {"max_rows": parity_rows, "max_regression": max_regression}.items() if v is not None}
    body = {
        "provider": provider,
        "base_model": base_model,
        "jobs": jobs or None,
        "suffix": suffix,
        "hyperparameters": hyperparameters or None,
        "distil": distil,
        "parity": parity or None,
        "keep_names": True,
        "start": False,
    }
    migration: dict[str, Any] = gw.post(MIGRATIONS, body)
    return migration


# --- following -------------------------------------------------------------------------------------------------------


def _change(before: dict[str, Any] | None, item: dict[str, Any]) -> str | None:
    """The line saying how ``item`` moved since ``before`` (None the first time it is seen); None if it did not."""

    def state(i: dict[str, Any]) -> tuple[Any, ...]:
        return i["step"], i["status"], i.get("local_job"), i.get("local_model")

    if before is not None and state(before) == state(item):
        return None
    step = item["step"] if before is None or before["step"] == item["step"] else f"{before['step']} -> {item['step']}"
    details = []
    if item.get("local_job") and (before is None or before.get("local_job") != item["local_job"]):
        details.append(f"job {item['local_job']}")
    if item.get("local_model") and (before is None or before.get("local_model") != item["local_model"]):
        details.append(f"model {item['local_model']}")
    status = item["status"]
    if (before is None and status != "pending") or (before is not None and before["status"] != status):
        why = (item.get("error") or {}).get("message") if status == "failed" else None
        if status == "skipped":
            why = item.get("reason")
        details.append(f"{status}: {why}" if why else status)
    return f"{item['upstream_job']}: {step}" + (f" ({', '.join(details)})" if details else "")


def _follow(gw: Gateway, migration_id: str, poll: float) -> dict[str, Any]:
    """Poll the migration, print a line each time it or one of its items moves, and return it once it ended."""
    from app.cli._api._follow import RECONNECT_SECONDS

    seen: dict[str, dict[str, Any]] = {}
    status: str | None = None
    dropped: float | None = None
    while True:
        try:
            migration: dict[str, Any] = gw.get(f"{MIGRATIONS}/{migration_id}")
        except CliError as exc:
            if exc.exit_code != UNREACHABLE:
                raise
            dropped = dropped or time.monotonic()
            if time.monotonic() - dropped > RECONNECT_SECONDS:
                raise
            time.sleep(poll)
            continue
        dropped = None
        if migration["status"] != status:
            moved = migration["status"] if status is None else f"{status} -> {migration['status']}"
            echo(f"{migration_id}: {moved}")
            status = migration["status"]
        for item in migration["items"]:
            line = _change(seen.get(item["upstream_job"]), item)
            if line is not None:
                echo(line)
            seen[item["upstream_job"]] = item
        if status in TERMINAL:
            return migration
        time.sleep(poll)


# --- the end ---------------------------------------------------------------------------------------------------------


def _rate(figures: dict[str, Any]) -> str:
    rate = figures.get("pass_rate")
    share = f"{rate * 100:.1f}%" if isinstance(rate, int | float) else "-"
    return f"{share} ({figures.get('passed')}/{figures.get('total')})"


def _summary(report: dict[str, Any]) -> None:
    s = report["summary"]
    echo(
        f"Migration {report['migration_id']} completed: {s['completed']} of {plural(s['jobs'], 'job')} moved, "
        f"{s['failed']} failed, {s['skipped']} skipped."
    )
    rows = []
    for item in report["items"]:
        moved = {"upstream_job": item["upstream_job"], "status": item["status"], "new_model": item.get("local_model")}
        criteria = (item.get("parity") or {}).get("criteria") or []
        rows += [
            {
                **moved,
                "criterion": c["name"],
                "upstream": _rate(c["upstream"]),
                "new": _rate(c["migrated"]),
                "difference": "" if c["difference"] is None else f"{c['difference']:+.1f} points",
            }
            for c in criteria
        ] or [moved]
    table(rows, ("upstream_job", "status", "new_model", "criterion", "upstream", "new", "difference"))
    for item in report["items"]:
        why = (item.get("error") or {}).get("message") or item.get("reason")
        if why:
            echo(f"  {item['upstream_job']}: {why}")


def _write_reports(gw: Gateway, migration_id: str, report_dir: Path) -> tuple[dict[str, Any], list[Path]]:
    path = f"{MIGRATIONS}/{migration_id}/report"
    report: dict[str, Any] = gw.get(path, format="json")
    markdown = gw.request("GET", path, params={"format": "markdown"}).text
    report_dir.mkdir(parents=True, exist_ok=True)
    as_json = report_dir / f"migration-{migration_id}.json"
    as_json.write_text(jsonlib.dumps(report, indent=2, ensure_ascii=False) + "\n")
    as_markdown = report_dir / f"migration-{migration_id}.md"
    as_markdown.write_text(markdown)
    return report, [as_json, as_markdown]


def _switch(gw: Gateway, migration_id: str, force: bool) -> tuple[dict[str, Any] | None, CliError | None]:
    """``(the switched migration, None)``, or ``(None, why not)`` when the gateway refused it (parity)."""
    try:
        return gw.post(f"{MIGRATIONS}/{migration_id}/switch", {"force": force}), None
    except CliError as exc:
        if exc.exit_code != FAILED or force:
            raise
        hint = f"Nothing was switched; the report has the figures. To switch anyway: {_resume_command(migration_id)}"
        return None, CliError(exc.message, f"{hint} --switch --force", FAILED)


def _finish(gw: Gateway, migration: dict[str, Any], *, report_dir: Path, switch: bool, force: bool) -> None:
    migration_id = migration["id"]
    if migration["status"] == "cancelled":
        echo(f"Migration {migration_id} was cancelled; what moved so far (files, models, aliases) stays.")
        raise typer.Exit(CANCELLED)
    if migration["status"] == "failed":
        message = (migration.get("error") or {}).get("message") or "no reason given"
        hint = f"Resume it from the step it stopped at: {_resume_command(migration_id)}"
        raise CliError(f"Migration {migration_id} failed: {message}", hint, FAILED)
    # Switched before the report is read, so that the report says so; a refused switch still leaves a report.
    switched, refused = _switch(gw, migration_id, force) if switch else (None, None)
    report, paths = _write_reports(gw, migration_id, report_dir)
    echo()
    _summary(report)
    for path in paths:
        echo(f"wrote {path}")
    if refused is not None:
        raise refused
    for item in (switched or {}).get("items", []):
        version = item["alias_versions"].get("migrated")
        if item["status"] == "completed" and item.get("alias") and version:
            echo(f"{item['alias']} -> {item['local_model']} (alias version {version}, the upstream model as fallback)")


def _start_and_follow(gw: Gateway, migration_id: str, poll: float) -> dict[str, Any]:
    try:
        found = gw.get(f"{MIGRATIONS}/{migration_id}")
        if found["status"] != "completed":  # a completed one is only reported (and switched)
            gw.post(f"{MIGRATIONS}/{migration_id}/start")
        return _follow(gw, migration_id, poll)
    except KeyboardInterrupt:
        note(
            f"\nStopped following; the migration goes on in the gateway. Follow it again with: "
            f"{_resume_command(migration_id)}"
        )
        raise typer.Exit(INTERRUPTED) from None


def _confirmed(migration_id: str, yes: bool) -> bool:
    if yes:
        return True
    if not sys.stdin.isatty():
        raise CliError(
            f"Not starting {migration_id} without a confirmation, and there is no terminal to ask on.",
            f"Pass --yes to start at once, or start it later with: {_resume_command(migration_id)}",
            USAGE,
        )
    return typer.confirm(f"Start migration {migration_id}?", default=False)


@app.command("openai")
def openai(
    provider: Annotated[
        str | None,
        typer.Option("--provider", metavar="NAME", help="The upstream provider, as the gateway names it."),
    ] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", metavar="MODEL", help="The model to retrain on.")
    ] = None,
    job: Annotated[
        list[str] | None,
        typer.Option("--job", metavar="JOB_ID", help="An upstream job (repeatable). Default: every succeeded one."),
    ] = None,
    suffix: Annotated[
        str | None, typer.Option(metavar="SUFFIX", help="The new models' suffix. Default: each job's own.")
    ] = None,
    distil_prompts: Annotated[
        str | None,
        typer.Option(
            "--distil-prompts",
            metavar="FILE_ID_OR_PATH",
            help="Prompts the upstream model answers, to train on where a job's data is gone (JSONL).",
        ),
    ] = None,
    distil_mode: Annotated[
        DistilMode | None,
        typer.Option("--distil-mode", help="Distil only jobs whose data is gone (default), or every job."),
    ] = None,
    parity_rows: Annotated[
        int | None,
        typer.Option("--parity-rows", metavar="N", min=1, max=1000, help="Validation rows both models answer."),
    ] = None,
    max_regression: Annotated[
        float | None,
        typer.Option(
            "--max-regression",
            metavar="POINTS",
            min=0,
            max=100,
            help="Refuse --switch when the new model passes a criterion more points below the upstream one.",
        ),
    ] = None,
    n_epochs: Annotated[
        int | None, typer.Option("--n-epochs", metavar="N", min=1, max=50, help="Instead of the job's.")
    ] = None,
    batch_size: Annotated[
        int | None, typer.Option("--batch-size", metavar="N", min=1, max=256, help="Instead of the job's.")
    ] = None,
    learning_rate_multiplier: Annotated[
        float | None, typer.Option("--learning-rate-multiplier", metavar="X", min=0, help="Default: auto.")
    ] = None,
    plan_only: Annotated[bool, typer.Option("--plan-only", help="Show the plan and stop.")] = False,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Start without asking.")] = False,
    resume: Annotated[
        str | None,
        typer.Option(
            "--resume",
            metavar="MIGRATION_ID",
            help="Start a planned migration, resume a failed one, or follow a running one.",
        ),
    ] = None,
    switch: Annotated[
        bool, typer.Option("--switch", help="Once completed, point each kept name at its new model.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Switch even when parity does not hold.")] = False,
    report_dir: Annotated[
        Path, typer.Option("--report-dir", metavar="DIR", help="Where the report goes (JSON and markdown).")
    ] = Path("."),
    poll: Annotated[float, typer.Option("--poll", metavar="SECONDS", min=0.1, help="How often to look.")] = 1.0,
    listing: Annotated[bool, typer.Option("--list", help="List the provider's jobs, files and models.")] = False,
) -> None:
    """Plan moving the provider's fine-tunes here, then (once confirmed) copy, retrain, compare and keep names."""
    if force and not switch:
        raise CliError("--force goes with --switch.", None, USAGE)
    if listing:
        if provider is None:
            raise CliError("--list needs --provider.", None, USAGE)
        _inventory(_client.gateway(), provider)
        return
    migration_id = resume
    if migration_id is None:
        if provider is None or base_model is None:
            raise CliError("Give --provider and --base-model (or --resume MIGRATION_ID).", None, USAGE)
        gw = _client.gateway()
        hyperparameters = {
            k: v
            for k, v in {
                "n_epochs": n_epochs,
                "batch_size": batch_size,
                "learning_rate_multiplier": learning_rate_multiplier,
            }.items()
            if v is not None
        }
        migration = _plan(
            gw,
            provider=provider,
            base_model=base_model,
            jobs=job,
            suffix=suffix,
            hyperparameters=hyperparameters,
            distil_prompts=distil_prompts,
            distil_mode=distil_mode,
            parity_rows=parity_rows,
            max_regression=max_regression,
        )
        _show_plan(migration)
        echo()
        if plan_only:
            echo(f"Planned {migration['id']}; nothing moved. Start it with: {_resume_command(migration['id'])}")
            return
        if not _confirmed(migration["id"], yes):
            echo(f"Not started; {migration['id']} stays planned. Start it with: {_resume_command(migration['id'])}")
            return
        migration_id = migration["id"]
    else:
        gw = _client.gateway()
    ended = _start_and_follow(gw, migration_id, poll)
    _finish(gw, ended, report_dir=report_dir, switch=switch, force=force)
