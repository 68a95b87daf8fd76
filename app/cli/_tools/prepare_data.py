"""``ftgw prepare-data``: analyse a file offline, offer each recommended fix, write the prepared JSONL.

The successor of ``openai tools fine_tunes.prepare_data``, on the same code as the API (:func:`analyse_file` and
:func:`prepare_file`, imported when the command runs); no server and no network needed. A spreadsheet or JSONL
whose columns have other names (``question,answer``) is mapped with ``--prompt-column``/``--completion-column``.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from app.cli._errors import FAILED, USAGE, CliError
from app.cli._output import plural

if TYPE_CHECKING:
    from rich.console import Console

    from app.datasets.schemas import DatasetReport, Fix, PrepareResult, TokenStats

DEFAULT_MODEL = "smollm2-135m-instruct"  # the gateway's default local base model (base_models.DEFAULT_MODEL)
DEFAULT_SPLIT = 0.2
PREPARED = "_prepared"


def output_stem(file: Path) -> str:
    """``qa`` for ``qa.csv`` and for ``qa_prepared.jsonl``: preparing a prepared file again never doubles the
    suffix (``qa_prepared_prepared.jsonl``); it writes ``qa_prepared.jsonl`` anew."""
    stem = file.stem
    for tail in (PREPARED, f"{PREPARED}_train", f"{PREPARED}_valid"):
        if stem.endswith(tail) and len(stem) > len(tail):
            return stem[: -len(tail)]
    return stem


def _stats_row(table: object, name: str, stats: TokenStats | None) -> None:
    if stats is not None:
        table.add_row(name, str(stats.min), f"{stats.mean:.1f}", f"{stats.p50:g}", f"{stats.p95:g}", str(stats.max))  # type: ignore[attr-defined]


def render_report(report: DatasetReport, console: Console) -> None:
    """Print a report the way a person reads it: summary, token table, issues, suggestions."""
    from rich.table import Table

    console.print(
        f"[bold]{plural(report.n_examples, 'example')}[/], format [bold]{report.format or 'unknown'}[/] "
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
            console.print(f"[{colour}]{plural(summary.total, title)}[/] ({counts})")
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
        question = f"Apply '{fix.value.replace('_', ' ')}' ({plural(suggestion.count, 'example')})?"
        if typer.confirm(question, default=suggestion.recommended):
            chosen.add(fix)
    return chosen


def _next_command(result: PrepareResult, model: str) -> str:
    if result.train_path is not None and result.valid_path is not None:
        files = f"-t {shlex.quote(str(result.train_path))} -v {shlex.quote(str(result.valid_path))}"
    else:
        files = f"-t {shlex.quote(str(result.outputs[0]))}"
    return f"ftgw fine-tunes create {files} -m {model}"


def _header(file: Path) -> list[str]:
    """The first row of a CSV/TSV (for the hint naming its columns); empty when it is not one."""
    import csv

    try:
        with file.open(newline="", encoding="utf-8-sig") as f:
            first = f.readline()
    except (OSError, UnicodeDecodeError):
        return []
    delimiter = "\t" if "\t" in first else ","
    return next(csv.reader([first], delimiter=delimiter), [])


def _mapping_hint(file: Path) -> str:
    """The command that maps the file's own columns, named from its header row when it has one."""
    header = [h.strip() for h in _header(file) if h.strip()]
    prompt, completion = header[:2] if len(header) >= 2 else ["<prompt column>", "<completion column>"]
    options = f"--prompt-column {shlex.quote(prompt)} --completion-column {shlex.quote(completion)}"
    return f"Map its columns: ftgw prepare-data -f {shlex.quote(str(file))} {options}"


def mapped_copy(file: Path, prompt_column: str, completion_column: str, folder: Path) -> Path:
    """A copy of ``file`` with ``prompt_column``/``completion_column`` renamed ``prompt``/``completion``
    (a CSV/TSV/XLSX header row, or the keys of JSONL/JSON records); the rest is kept as it is."""
    import csv
    import json

    names = {prompt_column: "prompt", completion_column: "completion"}
    target = folder / file.name
    suffix = file.suffix.lower()
    if suffix == ".xlsx":
        from openpyxl import load_workbook

        book = load_workbook(file)
        sheet = book.worksheets[0]
        for c in next(sheet.iter_rows(min_row=1, max_row=1)):
            if isinstance(c.value, str) and c.value.strip() in names:
                c.value = names[c.value.strip()]
        book.save(target)
        return target
    text = file.read_text(encoding="utf-8-sig")
    if suffix in (".jsonl", ".json") or text.lstrip()[:1] in ("{", "["):

        def rename(record: object) -> object:
            if isinstance(record, dict):
                return {names.get(k, k): v for k, v in record.items()}
            return record

        if text.lstrip().startswith("["):
            target.write_text(json.dumps([rename(r) for r in json.loads(text)], ensure_ascii=False))
        else:
            lines = [
                json.dumps(rename(json.loads(line)), ensure_ascii=False) for line in text.splitlines() if line.strip()
            ]
            target.write_text("".join(f"{line}\n" for line in lines))
        return target
    delimiter = "\t" if suffix == ".tsv" or "\t" in text.split("\n", 1)[0] else ","
    rows = list(csv.reader(text.splitlines(keepends=True), delimiter=delimiter))
    if (
        not rows
        or prompt_column not in [h.strip() for h in rows[0]]
        or completion_column not in [h.strip() for h in rows[0]]
    ):
        found = ", ".join(h.strip() for h in rows[0]) if rows else "none"
        raise CliError(
            f"{file} has no column {prompt_column!r} or {completion_column!r} (its columns: {found}).", None, USAGE
        )
    rows[0] = [names.get(h.strip(), h) for h in rows[0]]
    with target.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, delimiter=delimiter).writerows(rows)
    return target


def _counting_model(model: str | None, console: Console) -> str | None:
    """The model whose tokenizer counts: ``model``, else the gateway's default local model; local models' tokenizers
    are registered first (offline, from this host's settings). None (OpenAI's cl100k) only when no local model is
    installed and none was asked for."""
    from app.tokenizers import encoding_for_model

    if model is not None and encoding_for_model(model) is not None:
        return model
    from app.config import Settings
    from app.providers.local.base_models import BaseModelStore, register_local_tokenizers

    settings = Settings()
    local = register_local_tokenizers(BaseModelStore(settings.models_cache, settings.local_models_dir))
    if model is not None or DEFAULT_MODEL in local:
        return model or DEFAULT_MODEL
    console.print(f"{DEFAULT_MODEL} is not installed here: counting tokens with cl100k_base.", markup=False)
    return None


def prepare_data(
    file: Annotated[Path, typer.Option("--file", "-f", help="JSONL, JSON, CSV, TSV or XLSX file.")],
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="Accept every recommended fix without asking.")] = False,
    model: Annotated[str | None, typer.Option("--model", "-m", help="Count tokens and limits for this model.")] = None,
    split: Annotated[
        float | None, typer.Option(help="Validation share, e.g. 0.2 (asked for classification data).")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of the train/validation split.")] = 42,
    out_dir: Annotated[
        Path | None, typer.Option("--out-dir", "-o", help="Where to write. Default: next to FILE.")
    ] = None,
    prompt_column: Annotated[
        str | None, typer.Option("--prompt-column", metavar="NAME", help="The column (or key) holding the prompts.")
    ] = None,
    completion_column: Annotated[
        str | None,
        typer.Option("--completion-column", metavar="NAME", help="The column (or key) holding the completions."),
    ] = None,
) -> None:
    """Analyse a fine-tuning file offline, offer fixes, and write <name>_prepared.jsonl."""
    from app.cli._output import console as get_console
    from app.datasets.errors import DatasetError
    from app.datasets.prepare import prepare_file
    from app.datasets.report import MIN_EXAMPLES, analyse_file

    console = get_console()
    if not file.is_file():
        raise CliError(f"No such file: {file}", None, USAGE)
    if (prompt_column is None) != (completion_column is None):
        raise CliError("Give both --prompt-column and --completion-column.", None, USAGE)
    with tempfile.TemporaryDirectory(prefix="ftgw-prepare-") as scratch:
        source = file
        if prompt_column is not None and completion_column is not None:
            source = mapped_copy(file, prompt_column, completion_column, Path(scratch))
        elif output_stem(file) != file.stem:
            # Preparing qa_prepared.jsonl again rewrites it: read from a copy, never from the file being written.
            source = Path(scratch) / file.name
            shutil.copyfile(file, source)
        counted_with = _counting_model(model, console)
        try:
            report = analyse_file(source, model=counted_with, name=file.name)
            render_report(report, console)
            if report.n_examples == 0:
                raise CliError(f"{file} holds no examples to train on.", None, FAILED)
            fixes = _choose_fixes(report, quiet)
            if split is None and report.classification is not None:
                if report.n_valid < 2 * MIN_EXAMPLES:
                    console.print(
                        f"Not splitting off a validation file: {plural(report.n_valid, 'example')} cannot make two "
                        f"files of at least {MIN_EXAMPLES} examples, the smallest fine-tuning takes.",
                        markup=False,
                    )
                else:
                    ask = f"Split into training and validation files ({DEFAULT_SPLIT:.0%} validation)?"
                    if quiet or typer.confirm(ask, default=True):
                        split = DEFAULT_SPLIT
            result = prepare_file(
                source,
                fixes=fixes,
                split=split,
                seed=seed,
                out_dir=out_dir or file.parent,
                stem=output_stem(file),
                model=counted_with,
                name=file.name,
                report=report,
            )
        except DatasetError as exc:
            where = f" (line {exc.line})" if exc.line is not None else ""
            hint = _mapping_hint(file) if exc.code == "missing_columns" else None
            raise CliError(f"{file}: {exc.message}{where}", hint, FAILED) from exc
    for fix, count in result.applied.items():
        console.print(f"{fix.value}: {plural(count, 'example')}", markup=False)
    for issue in result.warnings:
        console.print(f"line {issue.line}: {issue.message}", markup=False)
    for output in result.outputs:
        console.print(f"wrote {output}", markup=False)
    if result.n_written == 0:
        raise CliError("No examples left to train on.", None, FAILED)
    console.print("Now start a fine-tune with:")
    console.print(_next_command(result, model or DEFAULT_MODEL), markup=False, highlight=False)
