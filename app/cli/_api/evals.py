"""``ftgw evals``: OpenAI's Evals API from the command line: create an eval, run it on a model (uploading a local
JSONL of rows, a progress bar while the worker samples and grades), compare models side by side, read the graded
rows; list, get, cancel, delete. What the options become lives in ``_eval_inputs``, what is shown in ``_eval_views``."""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from app.cli._api._common import Json, Limit, group
from app.cli._api._eval_inputs import completions, json_arg, json_file, post_runs
from app.cli._client import gateway
from app.cli._errors import INTERRUPTED, USAGE, CliError
from app.cli._output import echo, note, plural, print_json, table

if TYPE_CHECKING:
    from app.cli._client import Gateway

NAME = "evals"
HELP = "Evaluate models: create evals, run them on a model, compare models, read graded rows."
app = group(HELP)

EVALS = "/v1/evals"
EvalId = Annotated[str, typer.Argument(metavar="EVAL_ID", help="The eval's id (eval_…).", show_default=False)]
RunId = Annotated[str, typer.Argument(metavar="RUN_ID", help="The run's id (evalrun_…).", show_default=False)]
MaybeRunId = Annotated[
    str | None, typer.Argument(metavar="RUN_ID", help="A run of the eval (evalrun_…).", show_default=False)
]

# The data options `run` and `compare` share.
Items = Annotated[
    Path | None,
    typer.Option(
        "--items",
        metavar="PATH.jsonl",
        help='Rows to upload (purpose evals): one {"item": {...}} per line, or the item object alone.',
    ),
]
FileId = Annotated[str | None, typer.Option("--file-id", metavar="FILE_ID", help="Rows already uploaded (file-…).")]
Template = Annotated[
    str | None,
    typer.Option("--template", metavar="TEXT", help="The user message, with {{item.x}} for a row's fields."),
]
Messages = Annotated[
    str | None,
    typer.Option(
        "--messages",
        metavar="JSON_OR_FILE",
        help='Messages instead of --template: [{"role": …, "content": "…{{item.x}}…"}, …], or '
        '{"type": "item_reference", "item_reference": "item.messages"}.',
    ),
]
System = Annotated[str | None, typer.Option("--system", metavar="TEXT", help="A system message first.")]
MaxTokens = Annotated[int | None, typer.Option("--max-tokens", min=1, help="Most tokens per answer.")]
Temperature = Annotated[float | None, typer.Option("--temperature", min=0, max=2, help="Default: the model's.")]
Seed = Annotated[int | None, typer.Option("--seed", help="For repeatable answers.")]
RunName = Annotated[str | None, typer.Option("--name", help="The run's name. Default: the model.")]
NoWait = Annotated[bool, typer.Option("--no-wait", help="Return once the run is queued.")]


class Verdict(StrEnum):
    """An output item's status filter, as the API spells it."""

    passed = "pass"
    failed = "fail"


def _watch(gw: Gateway, eval_id: str, runs: list[dict[str, Any]], rows: int | None) -> list[dict[str, Any]]:
    """Wait for the runs with progress; the runs as they ended. Ctrl-C stops watching (exit 130), never the runs."""
    from app.cli._api._eval_views import wait

    try:
        return wait(gw, eval_id, runs, rows)
    except KeyboardInterrupt:
        cancel = "; ".join(f"ftgw evals cancel {eval_id} {r['id']}" for r in runs)
        if len(runs) == 1:
            again = f"Watch it again: ftgw evals follow {eval_id} {runs[0]['id']}"
            note(f"\nStopped watching; the run goes on. {again}\nCancel it: {cancel}")
        else:
            again = f"Compare them again: ftgw evals compare {eval_id} --runs {','.join(r['id'] for r in runs)}"
            note(f"\nStopped watching; the runs go on. {again}\nCancel them: {cancel}")
        raise typer.Exit(INTERRUPTED) from None


def _finish(gw: Gateway, evaluation: dict[str, Any], run: dict[str, Any], rows: int | None, json: bool) -> None:
    """Watch ``run`` to its end, then its summary (or JSON) and the exit code its status means."""
    from app.cli._api._eval_views import exit_for, show_run

    (ended,) = _watch(gw, evaluation["id"], [run], rows)
    if json:
        print_json(ended)
    else:
        show_run(evaluation, ended)
    exit_for(evaluation["id"], [ended])


# --- evals ---------------------------------------------------------------------------------------------------------


@app.command("create")
def create(
    name: Annotated[str | None, typer.Option("--name", help="The eval's name. Default: its id.")] = None,
    config: Annotated[
        Path | None,
        typer.Option(
            "--config",
            metavar="FILE.json",
            help="The whole create body, as client.evals.create(**body) takes it "
            "(data_source_config, testing_criteria, name, metadata).",
        ),
    ] = None,
    item_schema: Annotated[
        str | None,
        typer.Option("--item-schema", metavar="JSON_OR_FILE", help="The JSON schema of a row's item."),
    ] = None,
    criterion: Annotated[
        list[str] | None,
        typer.Option(
            "--criterion",
            metavar="JSON_OR_FILE",
            help="A grader (string_check, text_similarity, label_model, score_model, multi), or a file of a "
            "list of them (repeatable).",
        ),
    ] = None,
    no_sample_schema: Annotated[
        bool, typer.Option("--no-sample-schema", help="Criteria read the items only, never {{sample.…}}.")
    ] = False,
    json: Json = False,
) -> None:
    """Create an eval: the schema of its rows and the criteria that grade them; prints its id.

    \b
    ftgw evals create --name Sentiment \\
      --item-schema '{"properties": {"text": {}, "label": {}}}' \\
      --criterion '{"type": "string_check", "name": "Label matches",
        "input": "{{sample.output_text}}", "reference": "{{item.label}}",
        "operation": "eq"}'
    ftgw evals create --config eval.json    # the body you gave OpenAI
    """
    if config is not None:
        if item_schema is not None or criterion:
            raise CliError("Give --config, or --item-schema with --criterion, not both.", None, USAGE)
        body = json_file(config, "--config")
        if not isinstance(body, dict):
            raise CliError("--config must hold a JSON object (the create body).", None, USAGE)
    else:
        if item_schema is None or not criterion:
            raise CliError("Give --item-schema and at least one --criterion (or --config FILE.json).", None, USAGE)
        criteria: list[Any] = []
        for value in criterion:
            given = json_arg(value, "--criterion")
            criteria.extend(given if isinstance(given, list) else [given])
        body = {
            "data_source_config": {
                "type": "custom",
                "item_schema": json_arg(item_schema, "--item-schema"),
                "include_sample_schema": not no_sample_schema,
            },
            "testing_criteria": criteria,
        }
    if name is not None:
        body["name"] = name
    evaluation = gateway().post(EVALS, body)
    if json:
        print_json(evaluation)
        return
    count = plural(len(evaluation["testing_criteria"]), "criterion", "criteria")
    note(f"Created eval {evaluation['name']!r} ({count}). Run it with:")
    note(f"  ftgw evals run {evaluation['id']} --model MODEL --items rows.jsonl --template '…{{{{item.x}}}}…'")
    echo(evaluation["id"])


@app.command("list")
def list_evals(limit: Limit = 20, json: Json = False) -> None:
    """List evals, newest first."""
    page = gateway().get(EVALS, limit=limit, order="desc")
    if json:
        print_json(page)
        return
    rows = [{**e, "criteria": len(e["testing_criteria"])} for e in page["data"]]
    table(rows, ("id", "name", "criteria", "created_at"), times=("created_at",))


@app.command("get")
def get(eval_id: EvalId, run_id: MaybeRunId = None, json: Json = False) -> None:
    """Show an eval (its items, criteria and latest runs), or one of its runs (status, counts, pass rate per
    criterion, tokens per model)."""
    from app.cli._api._eval_views import show_eval, show_run

    gw = gateway()
    evaluation = gw.get(f"{EVALS}/{eval_id}")
    if run_id is not None:
        run = gw.get(f"{EVALS}/{eval_id}/runs/{run_id}")
        print_json(run) if json else show_run(evaluation, run)
        return
    if json:
        print_json(evaluation)
        return
    show_eval(evaluation, gw.get(f"{EVALS}/{eval_id}/runs", limit=5, order="desc"))


@app.command("delete")
def delete(eval_id: EvalId, run_id: MaybeRunId = None) -> None:
    """Delete an eval with its runs, or only the run given."""
    path = f"{EVALS}/{eval_id}" + (f"/runs/{run_id}" if run_id else "")
    gateway().delete(path)
    note(f"deleted {run_id or eval_id}")


# --- runs ----------------------------------------------------------------------------------------------------------


@app.command("run")
def run(
    eval_id: EvalId,
    model: Annotated[
        str | None,
        typer.Option("-m", "--model", metavar="MODEL", help="Base, ft:, checkpoint, alias, alias@N or upstream."),
    ] = None,
    items: Items = None,
    file_id: FileId = None,
    template: Template = None,
    messages: Messages = None,
    system: System = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    samples: Annotated[
        bool,
        typer.Option(
            "--samples",
            help='The rows bring their answers ({"item": …, "sample": {"output_text": …}}): grade them as they '
            "are, no model.",
        ),
    ] = False,
    name: RunName = None,
    no_wait: NoWait = False,
    json: Json = False,
) -> None:
    """Run an eval on a model: upload the rows, queue the run, show its progress, then its summary.

    Each row's prompt is --template (or --messages) with {{item.x}} filled in; the model's answer is
    {{sample.output_text}} to the criteria. Ctrl-C stops watching, not the run (`ftgw evals cancel` does).
    Exit code 1 when the run failed, 4 when it was canceled.

    \b
    ftgw evals run eval_… -m tiny-smollm2 --items reviews.jsonl \\
      --template 'Review: {{item.text}}' --max-tokens 4 --temperature 0
    ftgw evals run eval_… --samples --items answered.jsonl
    """
    gw = gateway()
    evaluation = gw.get(f"{EVALS}/{eval_id}")  # an unknown eval is said before anything is uploaded
    if samples:
        given: dict[str, object] = {"--model": model, "--template": template, "--messages": messages}
        given |= {"--system": system, "--max-tokens": max_tokens, "--temperature": temperature, "--seed": seed}
        extra = [option for option, value in given.items() if value is not None]
        if extra:
            raise CliError(f"--samples grades the rows' own answers: drop {', '.join(extra)}.", None, USAGE)
        data_source: dict[str, Any] = {"type": "jsonl"}
    else:
        if model is None:
            raise CliError("Give the model to run: --model MODEL (or --samples for rows with answers).", None, USAGE)
        data_source = completions(model, template, messages, system, max_tokens, temperature, seed)
    body = {"name": name, "data_source": data_source}
    created, rows = post_runs(gw, f"{EVALS}/{eval_id}/runs", body, items, file_id, json=json)
    (note if json else echo)(f"Created eval run: {created['id']}")
    if no_wait:
        if json:
            print_json(created)
        note(f"Watch it with: ftgw evals follow {eval_id} {created['id']}")
        return
    _finish(gw, evaluation, created, rows, json)


@app.command("follow")
def follow(eval_id: EvalId, run_id: RunId, json: Json = False) -> None:
    """Watch a run until it ends, then its summary (Ctrl-C stops watching, not the run)."""
    gw = gateway()
    evaluation = gw.get(f"{EVALS}/{eval_id}")
    _finish(gw, evaluation, gw.get(f"{EVALS}/{eval_id}/runs/{run_id}"), None, json)


@app.command("runs")
def runs(eval_id: EvalId, limit: Limit = 20, json: Json = False) -> None:
    """List an eval's runs, newest first."""
    page = gateway().get(f"{EVALS}/{eval_id}/runs", limit=limit, order="desc")
    if json:
        print_json(page)
        return
    from app.cli._api._eval_views import RUN_COLUMNS, run_row

    table([run_row(r) for r in page["data"]], RUN_COLUMNS, times=("created_at",))


@app.command("cancel")
def cancel(eval_id: EvalId, run_id: RunId, json: Json = False) -> None:
    """Cancel a queued or running run; the rows it graded are kept."""
    canceled = gateway().post(f"{EVALS}/{eval_id}/runs/{run_id}/cancel")
    if json:
        print_json(canceled)
        return
    echo(f"{canceled['id']}: {canceled['status']}")


@app.command("items")
def items(
    eval_id: EvalId,
    run_id: RunId,
    status: Annotated[Verdict | None, typer.Option("--status", help="Only the rows that passed or failed.")] = None,
    limit: Limit = 20,
    json: Json = False,
) -> None:
    """A run's graded rows: status, each criterion's verdict and score, the answer (cut to fit)."""
    gw = gateway()
    verdict = status.value if status is not None else None
    page = gw.get(f"{EVALS}/{eval_id}/runs/{run_id}/output_items", status=verdict, limit=limit)
    if json:
        print_json(page)
        return
    from app.cli._api._eval_views import show_items

    show_items(gw.get(f"{EVALS}/{eval_id}"), page)


# --- comparisons ---------------------------------------------------------------------------------------------------


@app.command("compare")
def compare(
    eval_id: EvalId,
    model: Annotated[
        list[str] | None,
        typer.Option("-m", "--model", metavar="MODEL", help="A model to compare (2 to 5; repeatable)."),
    ] = None,
    run_ids: Annotated[
        str | None, typer.Option("--runs", metavar="RUN_A,RUN_B", help="Compare runs that exist instead.")
    ] = None,
    items: Items = None,
    file_id: FileId = None,
    template: Template = None,
    messages: Messages = None,
    system: System = None,
    max_tokens: MaxTokens = None,
    temperature: Temperature = None,
    seed: Seed = None,
    name: Annotated[str | None, typer.Option("--name", help="Names the runs: NAME: MODEL.")] = None,
    disagreements: Annotated[
        int, typer.Option("--disagreements", min=0, max=1000, help="Rows the models disagree on to show.")
    ] = 10,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Return once the runs are queued.")] = False,
    json: Json = False,
) -> None:
    """Run an eval on several models, the same rows and prompt, and compare them: pass rate per model, overall
    and per criterion, with 95% intervals, then the rows they disagree on.

    \b
    ftgw evals compare eval_… -m tiny-smollm2 -m ft:tiny-smollm2:… \\
      --items held_out.jsonl --template 'Review: {{item.text}}'
    ftgw evals compare eval_… --runs evalrun_a,evalrun_b
    """
    from app.cli._api._eval_views import show_comparison

    gw = gateway()
    gw.get(f"{EVALS}/{eval_id}")  # an unknown eval is said before anything is uploaded
    rows: int | None = None
    if run_ids is not None:
        data: dict[str, object] = {"--model": model, "--items": items, "--file-id": file_id, "--template": template}
        data |= {"--messages": messages, "--system": system, "--name": name, "--max-tokens": max_tokens}
        data |= {"--temperature": temperature, "--seed": seed}
        extra = [option for option, value in data.items() if value is not None and value != []]
        if extra:
            raise CliError(f"--runs compares runs that exist: drop {', '.join(extra)}.", None, USAGE)
        ids = [part.strip() for part in run_ids.split(",") if part.strip()]
        runs = [gw.get(f"{EVALS}/{eval_id}/runs/{run_id}") for run_id in ids]
    else:
        if len(model or []) < 2:
            raise CliError("Compare two models or more: --model A --model B (or --runs RUN_A,RUN_B).", None, USAGE)
        data_source = completions(None, template, messages, system, max_tokens, temperature, seed)
        body = {"models": model, "data_source": data_source, "name": name}
        created, rows = post_runs(gw, f"{EVALS}/{eval_id}/comparisons", body, items, file_id, json=json)
        ids = [column["run_id"] for column in created["runs"]]
        for column in created["runs"]:
            (note if json else echo)(f"Created eval run: {column['run_id']} ({column['model']})")
        if no_wait:
            if json:
                print_json(created)
            note(f"Compare them later with: ftgw evals compare {eval_id} --runs {','.join(ids)}")
            return
        runs = [gw.get(f"{EVALS}/{eval_id}/runs/{run_id}") for run_id in ids]
    if not no_wait:
        runs = _watch(gw, eval_id, runs, rows)
    comparison = gw.get(f"{EVALS}/{eval_id}/comparison", run_ids=",".join(ids), disagreements_limit=disagreements)
    if json:
        print_json(comparison)
    else:
        show_comparison(comparison, runs, disagreements)
    if not no_wait:
        from app.cli._api._eval_views import exit_for

        exit_for(eval_id, runs)
