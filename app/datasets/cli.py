"""``ftgw prepare-data``: analyse a file offline, offer each recommended fix, write the prepared JSONL.

The successor of ``openai tools fine_tunes.prepare_data``, on the same code as the API (:func:`analyse_file`
and :func:`prepare_file`); no server and no network needed. Mount it with
``cli.command("prepare-data")(prepare_data_command)``.
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from app.datasets.errors import DatasetError
from app.datasets.prepare import prepare_file
from app.datasets.report import analyse_file
from app.datasets.schemas import DatasetReport, Fix, PrepareResult, TokenStats

DEFAULT_MODEL = "gpt-4o-mini-2024-07-18"
DEFAULT_SPLIT = 0.2


def _stats_row(table: Table, name: str, stats: TokenStats | None) -> None:
    if stats is not None:
        table.add_row(name, str(stats.min), f"{stats.mean:.1f}", f"{stats.p50:g}", f"{stats.p95:g}", str(stats.max))


def render_report(report: DatasetReport, console: Console) -> None:
    """Print a report the way a person reads it: summary, token table, issues, suggestions."""
    console.print(
        f"[bold]{report.n_examples}[/] examples, format [bold]{report.format or 'unknown'}[/] "
        f"({report.source_type}), tokenizer {report.tokenizer}; {report.n_valid} valid"
    )
    if report.tokens is not None:
        table = Table("tokens per example", "min", "mean", "p50", "p95", "max")
        _stats_row(table, "billing", report.tokens)
        _stats_row(table, "assistant / completion", report.target_tokens)
        console.print(table)
        console.print(f"total billing tokens: {report.tokens.total}")
    if report.hyperparameters is not None:
        hp = report.hyperparameters
        console.print(
            f"auto epochs: {hp.n_epochs}; ~{hp.estimated_trained_tokens} trained tokens "
            f"({hp.billing_tokens_per_epoch} per epoch, examples capped at {hp.max_tokens_per_example})"
        )
    for title, summary, colour in (("error", report.errors, "red"), ("warning", report.warnings, "yellow")):
        if summary.total:
            counts = ", ".join(f"{code}: {n}" for code, n in summary.by_code.items())
            console.print(f"[{colour}]{summary.total} {title}s[/] ({counts})")
            for issue in summary.items[:10]:
                where = f"line {issue.line}" if issue.line is not None else "file"
                console.print(f"  {where}: {issue.code}: {issue.message}", markup=False)
    if report.classification is not None:
        for stat in report.classification.classes[:20]:
            token = "" if stat.single_token else " (several tokens)"
            console.print(f"  class {stat.label!r}: {stat.count}{token}", markup=False)
    for suggestion in report.suggestions:
        lines = f" (lines {', '.join(map(str, suggestion.lines[:5]))}…)" if suggestion.lines else ""
        console.print(f"- {suggestion.message}{lines}", markup=False)


def _choose_fixes(report: DatasetReport, quiet: bool) -> set[Fix]:
    chosen: set[Fix] = set()
    for suggestion in report.suggestions:
        fix = suggestion.fix
        if fix is None or fix in chosen:
            continue
        if quiet:
            if suggestion.recommended:
                chosen.add(fix)
            continue
        question = f"Apply '{fix.value.replace('_', ' ')}' ({suggestion.count} examples)?"
        if typer.confirm(question, default=suggestion.recommended):
            chosen.add(fix)
    return chosen


def _next_command(result: PrepareResult, model: str) -> str:
    if result.train_path is not None and result.valid_path is not None:
        files = f"-t {shlex.quote(str(result.train_path))} -v {shlex.quote(str(result.valid_path))}"
    else:
        files = f"-t {shlex.quote(str(result.outputs[0]))}"
    return f"ftgw fine-tunes create {files} -m {model}"


def prepare_data_command(
    file: Annotated[Path, typer.Option("--file", "-f", help="JSONL, JSON, CSV, TSV or XLSX file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Accept every recommended fix.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Count tokens and limits for it.")] = None,
    split: Annotated[
        float | None, typer.Option(help="Validation share, e.g. 0.2 (classification data is asked).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 42,
    out_dir: Annotated[Path | None, typer.Option("--out-dir", "-o", help="Default: next to FILE.")] = None,
) -> None:
    """Analyse a fine-tuning file offline, offer fixes, and write <name>_prepared.jsonl."""
    console = Console(soft_wrap=True)
    if not file.is_file():
        console.print(f"[red]no such file: {file}[/]")
        raise typer.Exit(2)
    try:
        report = analyse_file(file, model=model)
        render_report(report, console)
        if report.n_examples == 0:
            raise typer.Exit(1)
        fixes = _choose_fixes(report, quiet)
        if split is None and report.classification is not None:
            ask = f"Split into training and validation files ({DEFAULT_SPLIT:.0%} validation)?"
            if quiet or typer.confirm(ask, default=True):
                split = DEFAULT_SPLIT
        result = prepare_file(
            file,
            fixes=fixes,
            split=split,
            seed=seed,
            out_dir=out_dir or file.parent,
            stem=file.stem,
            model=model,
            report=report,
        )
    except DatasetError as exc:
        where = f" (line {exc.line})" if exc.line is not None else ""
        console.print(f"[red]{exc.message}{where}[/]")
        raise typer.Exit(1) from exc
    for fix, count in result.applied.items():
        console.print(f"{fix.value}: {count} examples")
    for issue in result.warnings:
        console.print(f"line {issue.line}: {issue.message}", markup=False)
    for output in result.outputs:
        console.print(f"wrote {output}", markup=False)
    if result.n_written == 0:
        console.print("[red]no examples left to train on[/]")
        raise typer.Exit(1)
    console.print("Now start a fine-tune with:")
    console.print(_next_command(result, model or DEFAULT_MODEL), markup=False, highlight=False)


app = typer.Typer(add_completion=False)
app.command("prepare-data")(prepare_data_command)
