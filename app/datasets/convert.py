"""Reading CSV, TSV, XLSX and JSON-array files as dataset records.

Spreadsheets carry prompt-completion data: a header row naming ``prompt`` and ``completion`` columns (any case);
other columns are ignored with a warning. Cells a spreadsheet would run as formulas are kept as text and flagged.
An XLSX is a zip: its declared sizes are checked before anything is decompressed, so a zip bomb is refused
cheaply, and openpyxl parses its XML through defusedxml.
"""

from __future__ import annotations

import csv
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from app.datasets.errors import DatasetError, IssueCode
from app.datasets.reader import BOM, MAX_LINE_BYTES, NOTHING, IssueTuple, Record, SourceInfo, bounded_lines

# A whole JSON document is parsed in memory; past this it must be JSONL.
MAX_JSON_BYTES = 256 * 1024 * 1024
# XLSX guards, on the sizes the zip directory declares (checked again by zipfile while reading).
MAX_XLSX_UNCOMPRESSED = 256 * 1024 * 1024
MAX_XLSX_RATIO = 200
MAX_XLSX_MEMBERS = 10_000
MAX_XLSX_ROWS = 1_000_000

FIELDS = ("prompt", "completion")


def _canonical(value: object) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def iter_json_array(path: Path, info: SourceInfo) -> Iterator[Record] | None:
    """Records of a file holding one JSON array; ``None`` when it is not one (then it is read as JSONL)."""
    if path.stat().st_size > MAX_JSON_BYTES:
        return None
    data = path.read_bytes().removeprefix(BOM)
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(value, list):
        return None
    info.n_lines = len(value)

    def records() -> Iterator[Record]:
        for index, item in enumerate(value, 1):
            yield Record(index, item, _canonical(item) if isinstance(item, dict) else None)

    return records()


def _looks_like_formula(cell: str) -> bool:
    # What Excel/Sheets evaluate on open (CSV injection); a leading sign before a number or a space is harmless.
    if not cell:
        return False
    head = cell[0]
    if head in "=@":
        return True
    return head in "+-" and len(cell) > 1 and not (cell[1].isdigit() or cell[1].isspace() or cell[1] == ".")


def _columns(header: Sequence[str], info: SourceInfo, line: int) -> tuple[int, int]:
    names = [str(h).strip().lower() for h in header]
    missing = [f for f in FIELDS if f not in names]
    if missing:
        raise DatasetError(
            f"the header row needs columns {', '.join(FIELDS)}; missing {', '.join(missing)}",
            line=line,
            code="missing_columns",
        )
    for name, original in zip(names, header, strict=True):
        if name not in FIELDS:
            info.warnings.append((line, IssueCode.IGNORED_COLUMN, f"column {str(original)!r} is ignored"))
    return names.index("prompt"), names.index("completion")


def _row_record(line: int, cells: Sequence[str], columns: tuple[int, int], width: int) -> Record:
    if len(cells) != width:
        return Record(line, NOTHING, error=(IssueCode.WRONG_TYPE, f"row has {len(cells)} cells, header {width}"))
    value = {"prompt": cells[columns[0]], "completion": cells[columns[1]]}
    warnings: list[IssueTuple] | None = None
    for field, cell in value.items():
        if _looks_like_formula(cell):
            warnings = warnings or []
            warnings.append((IssueCode.FORMULA_CELL, f"{field} looks like a spreadsheet formula (kept as text)"))
    return Record(line, value, _canonical(value), warnings=warnings)


def iter_delimited(path: Path, info: SourceInfo, *, delimiter: str) -> Iterator[Record]:
    """Records of a CSV/TSV file; each row's line is the physical line it starts on."""
    bad_lines: dict[int, IssueTuple] = {}

    def text_lines(stream: Iterator[tuple[int, bytes | None]]) -> Iterator[str]:
        for number, raw in stream:
            info.n_lines = number
            if raw is None:
                bad_lines[number] = (IssueCode.LINE_TOO_LONG, f"line over {MAX_LINE_BYTES} bytes")
                yield "\n"
                continue
            if number == 1 and raw.startswith(BOM):
                info.warnings.append((1, IssueCode.BOM, "the file starts with a UTF-8 byte order mark (ignored)"))
                raw = raw[len(BOM) :]
            try:
                yield raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                bad_lines[number] = (IssueCode.INVALID_UTF8, f"invalid UTF-8 at byte {exc.start}")
                yield raw.decode("utf-8", errors="replace")

    # The csv module's own cap (128 KiB) would refuse long but legitimate cells; ours is the line cap.
    csv.field_size_limit(MAX_LINE_BYTES)
    with path.open("rb") as f:
        reader = csv.reader(text_lines(bounded_lines(f)), delimiter=delimiter)
        columns: tuple[int, int] | None = None
        width = 0
        start = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                break
            except csv.Error as exc:
                yield Record(start, NOTHING, error=(IssueCode.WRONG_TYPE, f"unreadable row: {exc}"))
                start = reader.line_num + 1
                continue
            end = reader.line_num
            line, start = start, end + 1
            if not cells or all(not c.strip() for c in cells):
                yield Record(line, NOTHING, blank=True)
                continue
            if columns is None:
                columns = _columns(cells, info, line)
                width = len(cells)
                continue
            bad = next((bad_lines[n] for n in range(line, end + 1) if n in bad_lines), None)
            if bad is not None:
                yield Record(line, NOTHING, error=bad)
                continue
            yield _row_record(line, cells, columns, width)


def check_zip(path: Path) -> None:
    """Refuse an XLSX whose declared contents are too big or too compressed, before decompressing any of it."""
    try:
        with zipfile.ZipFile(path) as archive:
            members = archive.infolist()
    except (zipfile.BadZipFile, OSError) as exc:
        raise DatasetError(f"{path.name} is not a valid XLSX (zip) file", code="invalid_xlsx") from exc
    if not any(m.filename == "[Content_Types].xml" for m in members):
        raise DatasetError(
            f"{path.name} is a zip archive but not an XLSX workbook (it has no [Content_Types].xml)",
            code="invalid_xlsx",
        )
    if len(members) > MAX_XLSX_MEMBERS:
        raise DatasetError(f"the XLSX has {len(members)} parts", code="xlsx_too_large")
    total = 0
    for member in members:
        total += member.file_size
        if member.file_size > MAX_XLSX_RATIO * max(member.compress_size, 1) and member.file_size > 1 << 20:
            raise DatasetError(
                f"the XLSX part {member.filename} expands {member.file_size // max(member.compress_size, 1)}x "
                "(a zip bomb?)",
                code="xlsx_too_large",
            )
    if total > MAX_XLSX_UNCOMPRESSED:
        raise DatasetError(f"the XLSX expands to {total} bytes (limit {MAX_XLSX_UNCOMPRESSED})", code="xlsx_too_large")


def _cell_text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def iter_xlsx(path: Path, info: SourceInfo) -> Iterator[Record]:
    """Records of the first sheet of an XLSX workbook; each record's line is its row number."""
    check_zip(path)
    import openpyxl  # heavy; only spreadsheets need it

    # Opened by us, not by name: openpyxl refuses a path without an .xlsx suffix, and stored blobs have none.
    stream = path.open("rb")
    try:
        workbook = openpyxl.load_workbook(stream, read_only=True, data_only=False)
    except Exception as exc:  # openpyxl raises anything from KeyError to XML errors on a broken workbook
        stream.close()
        raise DatasetError(f"{path.name} cannot be read as a workbook: {exc}", code="invalid_xlsx") from exc

    def records() -> Iterator[Record]:
        try:
            sheet = workbook.worksheets[0]
            columns: tuple[int, int] | None = None
            width = 0
            for row_number, row in enumerate(sheet.iter_rows(), 1):
                if row_number > MAX_XLSX_ROWS:
                    raise DatasetError(f"the sheet has more than {MAX_XLSX_ROWS} rows", code="xlsx_too_large")
                info.n_lines = row_number
                cells = [_cell_text(getattr(c, "value", None)) for c in row]
                while cells and not cells[-1]:
                    cells.pop()  # read-only sheets pad rows to the widest one
                if not cells:
                    yield Record(row_number, NOTHING, blank=True)
                    continue
                if columns is None:
                    columns = _columns(cells, info, row_number)
                    width = len(cells)
                    continue
                cells += [""] * (width - len(cells))
                record = _row_record(row_number, cells, columns, width)
                formulas = [c for c in row if getattr(c, "data_type", None) == "f"]
                if formulas and record.error is None:
                    record.warnings = [(IssueCode.FORMULA_CELL, "row holds formula cells (their text is kept)")]
                yield record
        except DatasetError:
            raise
        except Exception as exc:  # a corrupt sheet part surfaces only while iterating
            raise DatasetError(f"{path.name}: unreadable sheet data: {exc}", code="invalid_xlsx") from exc
        finally:
            workbook.close()
            stream.close()

    return records()
