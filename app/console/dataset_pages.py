"""Datasets: the project's files with an upload form, and a file's page with its validation report as a person
reads it (errors by line with the offending text, token-length histogram, class balance, the fixes ``prepare`` can
apply) and a form to start a fine-tune on it."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse

from app.console.web import ConsoleDep, ConsoleRoute, render
from app.datasets.reader import BOM, bounded_lines
from app.datasets.schemas import DatasetReport, Format, Issue
from app.datasets.service import dataset_service
from app.db import SessionDep
from app.errors import GatewayError
from app.files.endpoints import BlobStoreDep
from app.files.models import UPLOADABLE_PURPOSES, FilePurpose, FileStatus, StoredFile
from app.files.service import file_service
from app.kit.pagination import Order
from app.providers.registry import ProviderRegistry
from app.registry.service import registry_service

router = APIRouter(prefix="/console", route_class=ConsoleRoute, include_in_schema=False)

PAGE_SIZE = 25
# The API's default: the page and ``GET /v1/datasets/{id}/report`` share one cached report.
MAX_ISSUES = 50
LINE_CHARS = 500
# Reports give a line's number; only these sources number physical lines of the file (JSON arrays count elements,
# workbooks rows), so only for these can the offending text be shown.
LINE_SOURCES = frozenset({"jsonl", "csv", "tsv"})
VALIDATION_CHOICES = 100


@dataclass
class ErrorLine:
    """One line of the file with every error found on it, and its text (None: not shown, see ``note``)."""

    line: int
    issues: list[Issue] = field(default_factory=list)
    text: str | None = None
    cut: bool = False
    note: str | None = None


@dataclass(frozen=True)
class ClassShare:
    label: str
    count: int
    share: float
    single_token: bool


def read_lines(path: Path, wanted: set[int], max_chars: int = LINE_CHARS) -> dict[int, tuple[str | None, bool]]:
    """The text of the ``wanted`` physical lines (1-based), cut to ``max_chars``, and whether it was cut.

    Reads no further than the last wanted line and decodes only the wanted ones; a line over the reader's cap is
    ``(None, True)``: it was never held whole.
    """
    found: dict[int, tuple[str | None, bool]] = {}
    if not wanted:
        return found
    last = max(wanted)
    with path.open("rb") as stream:
        for number, raw in bounded_lines(stream):
            if number in wanted:
                if raw is None:
                    found[number] = (None, True)
                else:
                    # 4 bytes per character at most: a slice this long holds more than max_chars whole characters.
                    body = raw.rstrip(b"\r\n").removeprefix(BOM if number == 1 else b"")
                    text = body[: max_chars * 4 + 4].decode("utf-8", "replace")
                    found[number] = (text[:max_chars], len(text) > max_chars)
            if number >= last:
                break
    return found


async def error_lines(report: DatasetReport, path: Path) -> list[ErrorLine]:
    """The report's line errors grouped by line, each with the offending line's text when the source has lines."""
    by_line: dict[int, ErrorLine] = {}
    for issue in report.errors.items:
        if issue.line is not None:
            by_line.setdefault(issue.line, ErrorLine(issue.line)).issues.append(issue)
    if not by_line:
        return []
    if report.source_type not in LINE_SOURCES:
        for entry in by_line.values():
            entry.note = f"{report.source_type.upper()} file: no line text to show"
        return list(by_line.values())
    try:
        texts = await asyncio.to_thread(read_lines, path, set(by_line))
    except OSError:
        texts = {}
    for number, entry in by_line.items():
        text, cut = texts.get(number, (None, False))
        entry.text, entry.cut = text, cut
        if text is None:
            entry.note = "line too long to show" if cut else "line not available"
    return list(by_line.values())


def class_balance(report: DatasetReport) -> list[ClassShare]:
    if report.classification is None:
        return []
    total = sum(c.count for c in report.classification.classes) or 1
    return [ClassShare(c.label, c.count, c.count / total, c.single_token) for c in report.classification.classes]


@router.get("/datasets", response_class=HTMLResponse)
async def datasets(
    request: Request,
    session: SessionDep,
    console: ConsoleDep,
    purpose: Annotated[FilePurpose | Literal[""], Query()] = FilePurpose.fine_tune,
    after: Annotated[str | None, Query(max_length=128)] = None,
) -> HTMLResponse:
    page = await file_service.list(
        session, console.project_id, purpose=purpose or None, limit=PAGE_SIZE, order=Order.desc, after=after
    )
    return render(
        request,
        "datasets.html",
        console=console,
        active="datasets",
        title="Datasets",
        files=page.items,
        has_more=page.has_more,
        purpose=purpose,
        purposes=list(FilePurpose),
        upload_purposes=UPLOADABLE_PURPOSES,
        filtered=bool(after or purpose != FilePurpose.fine_tune),
    )


@router.get("/datasets/{file_id}", response_class=HTMLResponse)
async def dataset(
    request: Request, file_id: str, session: SessionDep, console: ConsoleDep, store: BlobStoreDep
) -> HTMLResponse:
    record = await file_service.get(session, console.project_id, file_id)
    source = await _source_of(session, console.project_id, record)
    report: DatasetReport | None = None
    report_error: str | None = None
    lines: list[ErrorLine] = []
    validating = record.purpose is FilePurpose.fine_tune and record.status is FileStatus.uploaded
    if record.purpose is FilePurpose.fine_tune and not validating:
        try:
            report = await dataset_service.report(
                session, store, console.project_id, file_id, model=None, max_issues=MAX_ISSUES
            )
        except GatewayError as exc:
            report_error = exc.message
        else:
            lines = await error_lines(report, store.path(record.storage_key))
    trainable = record.status is FileStatus.processed and report is not None and report.ok
    return render(
        request,
        "dataset.html",
        console=console,
        active="datasets",
        title=record.filename,
        file=record,
        source=source,
        validating=validating,
        report=report,
        report_error=report_error,
        error_lines=lines,
        file_errors=[issue for issue in report.errors.items if issue.line is None] if report else [],
        classes=class_balance(report) if report else [],
        histogram=[b.model_dump() for b in report.tokens.histogram] if report and report.tokens else [],
        method="dpo" if report is not None and report.format is Format.PREFERENCE else "supervised",
        models=await _trainable_models(request, session, console.project_id) if trainable else [],
        validation_files=await _validation_files(session, console.project_id, record) if trainable else [],
    )


async def _source_of(session: SessionDep, project_id: str, record: StoredFile) -> StoredFile | None:
    """The file a prepared one was made from, while it still exists."""
    if record.source_file_id is None:
        return None
    try:
        return await file_service.get(session, project_id, record.source_file_id)
    except GatewayError:
        return None


async def _trainable_models(request: Request, session: SessionDep, project_id: str) -> list[tuple[str, list[str]]]:
    """What ``POST /v1/fine_tuning/jobs`` takes as ``model``: base models, then the project's fine-tuned models."""
    providers: ProviderRegistry = request.app.state.providers
    tuned = [m.id for m in await registry_service.fine_tuned(session, project_id)]
    groups = [("Base models", [m.id for m in providers.base_models()]), ("Your fine-tuned models", tuned)]
    return [(name, ids) for name, ids in groups if ids]


async def _validation_files(session: SessionDep, project_id: str, record: StoredFile) -> list[StoredFile]:
    """Recent valid fine-tune files of the same format, for the optional validation file."""
    page = await file_service.list(
        session, project_id, purpose=FilePurpose.fine_tune.value, limit=VALIDATION_CHOICES, order=Order.desc, after=None
    )
    fmt = (record.validation or {}).get("format")
    return [
        f
        for f in page.items
        if f.id != record.id and f.status is FileStatus.processed and (f.validation or {}).get("format") == fmt
    ]
