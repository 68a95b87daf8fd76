"""Turning a file into a stream of records ``(line, value)`` with bounded memory, whatever it holds.

JSONL is read line by line with a hard cap on line length (a 10 MB line costs at most the cap, then is skipped);
a BOM, CRLF endings, blank lines, invalid UTF-8 and unparsable JSON become issues on their line, never
exceptions. CSV, TSV, XLSX and JSON arrays go through :mod:`app.datasets.convert` and come out the same way.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Literal

import orjson

from app.datasets.errors import DatasetError, IssueCode

SourceType = Literal["jsonl", "json", "csv", "tsv", "xlsx"]

# No fine-tuning example comes near this (65k tokens is ~300 KB of JSON); it bounds what one line can cost.
MAX_LINE_BYTES = 4 * 1024 * 1024
BOM = b"\xef\xbb\xbf"
ZIP_MAGIC = b"PK\x03\x04"
# The columns a spreadsheet (CSV, TSV, XLSX) carries prompt-completion data in.
HEADER_FIELDS = frozenset({"prompt", "completion"})
_DELIMITERS: tuple[tuple[str, SourceType], ...] = (("\t", "tsv"), (",", "csv"))

_SUFFIXES: dict[str, SourceType] = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".xlsx": "xlsx",
    ".xlsm": "xlsx",
}

IssueTuple = tuple[IssueCode, str]


class _Nothing:
    """Marks a record that carries no value (blank line, unparsable line)."""

    def __repr__(self) -> str:
        return "NOTHING"


NOTHING = _Nothing()


@dataclass(slots=True)
class Record:
    """One line (row, element) of the source.

    ``key`` is the bytes that identify it for duplicate detection (the raw line for JSONL, a canonical dump
    otherwise); ``error`` makes the record unusable, ``warnings`` do not.
    """

    line: int
    value: object
    key: bytes | None = None
    error: IssueTuple | None = None
    warnings: list[IssueTuple] | None = None
    blank: bool = False


@dataclass
class SourceInfo:
    """What the reader learnt about the file as a whole while streaming it."""

    type: SourceType
    n_lines: int = 0
    warnings: list[tuple[int | None, IssueCode, str]] = field(default_factory=list)


def source_type_from_name(name: str) -> SourceType | None:
    """The source type a file name's suffix announces, if any (stored blobs keep their upload name apart)."""
    return _SUFFIXES.get(Path(name).suffix.lower())


def detect_source_type(path: Path, name: str | None = None) -> SourceType:
    """The source type of a file, from its content first: names lie (and stored blobs have none).

    A zip is a workbook, ``{`` opens JSONL, ``[`` a JSON array, a header row naming prompt and completion columns
    a TSV or CSV. Content that says none of these (garbage, an empty file) goes by the suffix of ``name`` (else
    of the path), then by the first line's delimiter; :class:`DatasetError` when nothing says.
    """
    try:
        with path.open("rb") as f:
            head = f.read(4096)
    except OSError as exc:
        raise DatasetError(f"cannot read {path.name}: {exc.strerror}", code="unreadable_file") from exc
    if head.startswith(ZIP_MAGIC):
        return "xlsx"
    text = head.removeprefix(BOM).lstrip()
    if text.startswith(b"{"):
        return "jsonl"
    if text.startswith(b"["):
        return "json"
    first_line = text.split(b"\n", 1)[0]
    by_header = _delimited_header(first_line)
    if by_header is not None:
        return by_header
    by_name = source_type_from_name(name if name is not None else path.name)
    if by_name is not None:
        return by_name
    if not text:
        return "jsonl"
    if b"\t" in first_line:
        return "tsv"
    if b"," in first_line:
        return "csv"
    raise DatasetError(
        f"{name or path.name}: unsupported file type (expected JSONL, JSON, CSV, TSV or XLSX)",
        code="unsupported_file",
    )


def _delimited_header(line: bytes) -> SourceType | None:
    """``tsv``/``csv`` when ``line`` is a header row naming both a prompt and a completion column."""
    text = line.decode("utf-8", "replace").rstrip("\r")
    for delimiter, kind in _DELIMITERS:
        if delimiter in text:
            try:
                cells = next(csv.reader([text], delimiter=delimiter))
            except (csv.Error, StopIteration):
                continue
            if {cell.strip().lower() for cell in cells} >= HEADER_FIELDS:
                return kind
    return None


def bounded_lines(stream: BinaryIO, max_line_bytes: int = MAX_LINE_BYTES) -> Iterator[tuple[int, bytes | None]]:
    """``(line number, raw line with its ending)``; ``None`` for a line over the cap, which is skipped unread."""
    readline = stream.readline
    limit = max_line_bytes + 1
    number = 0
    while True:
        chunk = readline(limit)
        if not chunk:
            return
        number += 1
        if len(chunk) == limit and not chunk.endswith(b"\n"):
            while True:  # discard the rest of the line a MiB at a time
                rest = readline(1 << 20)
                if not rest or rest.endswith(b"\n"):
                    break
            yield number, None
            continue
        yield number, chunk


def _json_problem(raw: bytes, exc: orjson.JSONDecodeError) -> IssueTuple:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as bad:
        return IssueCode.INVALID_UTF8, f"invalid UTF-8 at byte {bad.start}"
    reason = str(exc).split(":", 1)[0]
    return IssueCode.INVALID_JSON, f"not valid JSON ({reason})"


def iter_jsonl(path: Path, info: SourceInfo) -> Iterator[Record]:
    """Records of a JSONL file, one per physical line."""
    loads = orjson.loads
    with path.open("rb") as f:
        for number, raw in bounded_lines(f):
            info.n_lines = number
            if raw is None:
                yield Record(number, NOTHING, error=(IssueCode.LINE_TOO_LONG, f"line over {MAX_LINE_BYTES} bytes"))
                continue
            if number == 1:
                raw = _first_line(raw, info)
            key = raw.rstrip()
            if not key:
                yield Record(number, NOTHING, blank=True)
                continue
            try:
                value = loads(key)
            except orjson.JSONDecodeError as exc:
                yield Record(number, NOTHING, error=_json_problem(key, exc))
                continue
            yield Record(number, value, key)


def _first_line(raw: bytes, info: SourceInfo) -> bytes:
    if raw.startswith(BOM):
        info.warnings.append((1, IssueCode.BOM, "the file starts with a UTF-8 byte order mark (ignored)"))
        raw = raw[len(BOM) :]
    if raw.endswith(b"\r\n"):
        info.warnings.append((1, IssueCode.CRLF, "Windows (CRLF) line endings (accepted)"))
    return raw


def iter_records(path: Path, source_type: SourceType, info: SourceInfo) -> Iterator[Record]:
    """Records of any supported file; :class:`DatasetError` only for a container that cannot be opened."""
    if source_type == "jsonl":
        return iter_jsonl(path, info)
    from app.datasets import convert  # the spreadsheet readers are only imported when needed

    if source_type == "json":
        records = convert.iter_json_array(path, info)
        return records if records is not None else iter_jsonl(path, info)
    if source_type in ("csv", "tsv"):
        return convert.iter_delimited(path, info, delimiter="\t" if source_type == "tsv" else ",")
    return convert.iter_xlsx(path, info)
