"""A run's rows: read from its data source (inline content or a JSONL file) and checked against the eval.

The same checks run when a run is created and again when a worker runs it, so a run the API accepted never fails on
its own input: every row is an object with an ``item`` that matches the eval's item schema and holds every
``{{item.…}}`` the criteria and the prompt read; a jsonl run's rows hold every ``{{sample.…}}`` the criteria read;
an ``item_reference`` names a list of messages in every row. A problem names the row: ``content[i]`` for inline
rows, the line number (``line N: …``) for a file.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import referencing.exceptions
from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from pydantic import TypeAdapter, ValidationError
from sqlalchemy.ext.asyncio import AsyncSession

from app.datasets.reader import SourceInfo, iter_jsonl
from app.errors import InvalidRequest, NotFound
from app.evals import graders, templates
from app.evals.models import Eval, EvalRun
from app.evals.schemas import (
    CompletionsRunDataSource,
    FileContentSource,
    FileIdSource,
    ItemReferenceInputMessages,
    JsonlRunDataSource,
    RunDataSource,
    TemplateInputMessages,
    TemplateMessage,
)
from app.files.models import FilePurpose
from app.files.service import file_service
from app.files.storage import BlobStore

SOURCE = "data_source.source"
_data_sources: TypeAdapter[JsonlRunDataSource | CompletionsRunDataSource] = TypeAdapter(RunDataSource)
_messages: TypeAdapter[list[TemplateMessage]] = TypeAdapter(list[TemplateMessage])


@dataclass(frozen=True, slots=True)
class Row:
    """One row of a run's data source: ``id`` is its position from 0 (the output item's ``datasource_item_id``)."""

    id: int
    item: dict[str, Any]
    sample: dict[str, Any] | None


def data_source_of(run: EvalRun) -> JsonlRunDataSource | CompletionsRunDataSource:
    """The run's data source, typed, as it was accepted."""
    return _data_sources.validate_python(run.data_source)


def criteria_references(evaluation: Eval) -> set[str]:
    """Every template path the eval's testing criteria read."""
    paths: set[str] = set()
    for i, criterion in enumerate(evaluation.testing_criteria):
        spec = {key: value for key, value in criterion.items() if key != "id"}
        paths |= graders.references(graders.parse_grader(spec, f"testing_criteria[{i}]"))
    return paths


def prompt_references(data_source: JsonlRunDataSource | CompletionsRunDataSource) -> set[str]:
    """The item paths a completions run's prompt reads (its templates, or the messages it points at)."""
    if not isinstance(data_source, CompletionsRunDataSource):
        return set()
    messages = data_source.input_messages
    if isinstance(messages, ItemReferenceInputMessages):
        return {messages.item_reference}
    if isinstance(messages, TemplateInputMessages):
        return {
            path for message in messages.template for text in message.texts() for path in templates.references(text)
        }
    return set()


def item_schema_problem(schema: Mapping[str, Any]) -> str | None:
    """Why ``schema`` cannot be an eval's item schema, or None: it must be a valid JSON schema of an object whose
    references stay inside it (ftgw never fetches a schema from elsewhere)."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        return f"not a valid JSON schema: {exc.message}"
    if schema.get("type", "object") != "object":
        return "must describe an object (type 'object')"
    outside = next(_outside_references(schema), None)
    if outside is not None:
        return f"references {outside!r}: only references inside the schema ('#/…') are followed"
    return None


def _outside_references(node: Any) -> Iterator[str]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if key in ("$ref", "$dynamicRef") and isinstance(value, str) and not value.startswith("#"):
                yield value
            else:
                yield from _outside_references(value)
    elif isinstance(node, list):
        for value in node:
            yield from _outside_references(value)


class RowChecker:
    """Checks one row at a time against what the eval and the run need of it."""

    def __init__(self, evaluation: Eval, data_source: JsonlRunDataSource | CompletionsRunDataSource) -> None:
        self.validator = Draft202012Validator(evaluation.item_schema)
        criteria = criteria_references(evaluation)
        prompt = prompt_references(data_source)
        self.item_paths = sorted(path for path in criteria | prompt if path.split(".", 1)[0] == "item")
        jsonl = isinstance(data_source, JsonlRunDataSource)
        # A completions run samples its own answers; a jsonl run grades the answers its rows bring.
        self.sample_paths = sorted(p for p in criteria if p.split(".", 1)[0] == "sample") if jsonl else []
        messages = data_source.input_messages if isinstance(data_source, CompletionsRunDataSource) else None
        self.messages_path = messages.item_reference if isinstance(messages, ItemReferenceInputMessages) else None

    def problem(self, value: object) -> str | None:
        """What is wrong with the row ``value``, or None."""
        if not isinstance(value, dict):
            return f"a row must be an object with an 'item', not {_kind(value)}"
        item, sample = value.get("item"), value.get("sample")
        if not isinstance(item, dict):
            return "a row needs an 'item' object" if item is None else f"'item' must be an object, not {_kind(item)}"
        if sample is not None and not isinstance(sample, dict):
            return f"'sample' must be an object, not {_kind(sample)}"
        mismatch = self._schema_mismatch(item)
        if mismatch is not None:
            return mismatch
        for path in self.item_paths:
            if not _resolves(path, {"item": item}):
                return f"the item has no value for {{{{{path}}}}}, which the eval reads"
        if self.sample_paths and sample is None:
            return f"a jsonl run's rows need a 'sample': the testing criteria read {{{{{self.sample_paths[0]}}}}}"
        for path in self.sample_paths:
            if not _resolves(path, {"sample": sample}):
                return f"the sample has no value for {{{{{path}}}}}, which the testing criteria read"
        if self.messages_path is not None:
            try:
                _messages.validate_python(templates.lookup(self.messages_path, {"item": item}))
            except ValidationError as exc:
                return f"{{{{{self.messages_path}}}}} must be a list of messages ({{role, content}}): {_first(exc)}"
        return None

    def _schema_mismatch(self, item: dict[str, Any]) -> str | None:
        try:
            error = next(iter(self.validator.iter_errors(item)), None)
        except referencing.exceptions.Unresolvable as exc:
            return f"the eval's item_schema has a reference that cannot be resolved: {exc}"
        if error is None:
            return None
        where = "".join(f"[{part!r}]" for part in error.absolute_path)
        return f"the item does not match the eval's item_schema: {error.message}" + (
            f" (at item{where})" if where else ""
        )

    def rows(self, values: Iterable[tuple[int, object]]) -> Iterator[tuple[int, Row | str]]:
        """``(position, row or problem)`` for raw rows given as ``(position, value)``."""
        for position, value in values:
            problem = self.problem(value)
            if problem is not None:
                yield position, problem
                continue
            assert isinstance(value, dict)
            yield position, Row(position, value["item"], value.get("sample"))


async def load_items(
    session: AsyncSession,
    store: BlobStore,
    evaluation: Eval,
    data_source: JsonlRunDataSource | CompletionsRunDataSource,
) -> list[Row]:
    """The run's rows, all checked; ``InvalidRequest`` naming the first bad row (``data_source.source.content[i]``,
    or ``data_source.source.id`` with ``line N: …``) or an unusable file."""
    checker = RowChecker(evaluation, data_source)
    source = data_source.source
    if isinstance(source, FileContentSource):
        return await asyncio.to_thread(_inline_rows, checker, source.content)
    if isinstance(source, FileIdSource):
        path = await _file_path(session, store, evaluation.project_id, source.id)
        return await asyncio.to_thread(_file_rows, checker, path, source.id)
    raise InvalidRequest(  # refused at create time; a stored run never has another source
        f"Data source '{source.type}' is not supported by ftgw.", param=f"{SOURCE}.type", code="unsupported_data_source"
    )


async def _file_path(session: AsyncSession, store: BlobStore, project_id: str, file_id: str) -> Path:
    param = f"{SOURCE}.id"
    try:
        record, path = await file_service.content_path(session, store, project_id, file_id)
    except NotFound:
        raise InvalidRequest(f"Invalid file id '{file_id}': no such file.", param=param, code="invalid_file") from None
    if record.purpose is not FilePurpose.evals:
        raise InvalidRequest(
            f"File {file_id} has purpose '{record.purpose.value}'; eval runs read files of purpose 'evals'.",
            param=param,
            code="invalid_file_purpose",
        )
    return path


def _inline_rows(checker: RowChecker, content: list[Any]) -> list[Row]:
    rows = []
    for position, row in checker.rows(enumerate(content)):
        if isinstance(row, str):
            raise InvalidRequest(f"{row}.", param=f"{SOURCE}.content[{position}]")
        rows.append(row)
    return rows


def _file_rows(checker: RowChecker, path: Path, file_id: str) -> list[Row]:
    param = f"{SOURCE}.id"
    lines: dict[int, int] = {}  # row position -> line number, for messages

    def values() -> Iterator[tuple[int, object]]:
        for record in iter_jsonl(path, SourceInfo("jsonl")):
            if record.blank:
                continue
            if record.error is not None:
                raise InvalidRequest(
                    f"line {record.line}: {record.error[1]}: an eval file is JSONL, one JSON object per line.",
                    param=param,
                    code="invalid_file_format",
                )
            lines[len(lines)] = record.line
            yield len(lines) - 1, record.value

    rows = []
    for position, row in checker.rows(values()):
        if isinstance(row, str):
            raise InvalidRequest(f"line {lines[position]}: {row}.", param=param, code="invalid_file_format")
        rows.append(row)
    if not rows:
        raise InvalidRequest(f"File {file_id} has no rows.", param=param, code="invalid_file_format")
    return rows


def _resolves(path: str, namespaces: Mapping[str, Any]) -> bool:
    try:
        templates.lookup(path, namespaces)
    except templates.TemplateError:
        return False
    return True


def _kind(value: object) -> str:
    names = {dict: "an object", list: "a list", str: "a string", bool: "a boolean", type(None): "null"}
    return names.get(type(value), "a number")


def _first(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(part) for part in error["loc"])
    return f"{where}: {error['msg']}" if where else str(error["msg"])
