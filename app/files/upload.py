"""Streaming ``multipart/form-data`` reception for ``POST /v1/files``.

The body is parsed as it arrives: the ``file`` part goes straight to a temp file (hashed and counted on the way,
stopped the moment it passes the size cap), small text fields are kept in memory up to a few KiB. Nothing is ever
held whole in memory, and the temp file is removed on every path that does not hand it over.

Part headers are UTF-8 (RFC 7578), so ``Content-Disposition`` is parsed here rather than by python-multipart, which
reads parameters as Latin-1: a file name is kept exactly as the client wrote it, whatever its script.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO
from urllib.parse import unquote_to_bytes

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import InvalidRequest, PayloadTooLarge
from app.files.storage import BlobStore
from app.kit.numbers import parse_decimal
from app.kit.text import text_problem

MAX_FIELD_BYTES = 4096
MAX_HEADER_BYTES = 8192
# Multipart framing around the file: boundaries, part headers and the small fields.
FRAMING_ALLOWANCE = 64 * 1024


@dataclass
class ReceivedFile:
    temp_path: Path
    filename: str
    bytes: int
    sha256: str


@dataclass
class ReceivedForm:
    fields: dict[str, str] = field(default_factory=dict)
    file: ReceivedFile | None = None


class _FormCollector:
    def __init__(self, store: BlobStore, max_file_bytes: int, file_field: str) -> None:
        self.store = store
        self.max_file_bytes = max_file_bytes
        self.file_field = file_field
        self.form = ReceivedForm()
        self.temp_paths: list[Path] = []
        self._header_field = bytearray()
        self._header_value = bytearray()
        self._headers: dict[str, str] = {}
        self._name: str | None = None
        self._filename: str | None = None
        self._value = bytearray()
        self._sink: BinaryIO | None = None
        self._hash = hashlib.sha256()
        self._size = 0
        self.ended = False

    def callbacks(self) -> dict[str, object]:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": self._header_field_data,
            "on_header_value": self._header_value_data,
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_part_end": self._part_end,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self._headers = {}
        self._name = self._filename = None
        self._value.clear()

    def _header_field_data(self, data: bytes, start: int, end: int) -> None:
        self._header_field.extend(data[start:end])
        self._check_header_size()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value.extend(data[start:end])
        self._check_header_size()

    def _check_header_size(self) -> None:
        if len(self._header_field) + len(self._header_value) > MAX_HEADER_BYTES:
            raise InvalidRequest(f"A multipart part header is longer than {MAX_HEADER_BYTES} bytes.")

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = _header_text(bytes(self._header_value)).strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        options = content_disposition_params(self._headers.get("content-disposition", ""))
        name = options.get("name")
        if name is None:
            raise InvalidRequest("A multipart part has no name in its Content-Disposition header.")
        self._name = name
        filename = options.get("filename")
        if self._name == self.file_field:
            if self.form.file is not None or self._sink is not None:
                raise InvalidRequest(f"Only one '{self._name}' may be uploaded per request.", param=self._name)
            if filename is not None and (problem := text_problem(filename)) is not None:
                raise InvalidRequest(f"The file name {problem}.", param=self._name)
            self._filename = filename or "upload"
            path = self.store.temp_path()
            self.temp_paths.append(path)
            self._sink = path.open("wb")
            self._hash = hashlib.sha256()
            self._size = 0

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        chunk = data[start:end]
        if self._sink is not None:
            self._size += len(chunk)
            if self._size > self.max_file_bytes:
                raise PayloadTooLarge(
                    f"The file is larger than this gateway accepts ({self.max_file_bytes} bytes).",
                    param=self.file_field,
                )
            self._sink.write(chunk)
            self._hash.update(chunk)
        elif self._name is not None:
            self._value.extend(chunk)
            if len(self._value) > MAX_FIELD_BYTES:
                raise InvalidRequest(f"Form field '{self._name}' is too long.", param=self._name)

    def _part_end(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
            self.form.file = ReceivedFile(
                self.temp_paths[-1], self._filename or "upload", self._size, self._hash.hexdigest()
            )
        elif self._name is not None:
            try:
                value = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"Form field '{self._name}' is not valid UTF-8.", param=self._name) from None
            if (problem := text_problem(value)) is not None:
                raise InvalidRequest(f"Form field '{self._name}' {problem}.", param=self._name)
            self.form.fields[self._name] = value

    def _end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        for path in self.temp_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


def _header_text(raw: bytes) -> str:
    # RFC 7578 says UTF-8; a client that sends anything else most likely meant Latin-1, which decodes any bytes.
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


# A parameter: token or quoted-string value (RFC 7230 §3.2.6), keys with a trailing '*' for RFC 5987 values.
_PARAM = re.compile(r';\s*([^\s=;]+)\s*=\s*("(?:[^"\\]|\\.)*"|[^;]*)', re.DOTALL)
_QUOTED_PAIR = re.compile(r"\\(.)", re.DOTALL)
# What browsers and httpx percent-encode in a quoted name (WHATWG's multipart encoding): '"' and controls.
_FORM_ESCAPE = re.compile(r"%(22|[01][0-9A-Fa-f])")
_EXTENDED = re.compile(r"([A-Za-z0-9!#$%&+^_`{}~-]+)'[^']*'(.*)", re.DOTALL)


def content_disposition_params(header: str) -> dict[str, str]:
    """Lower-cased parameters of a ``Content-Disposition`` value; ``filename*`` (RFC 5987/6266) wins over
    ``filename``. :class:`InvalidRequest` for an extended value that cannot be decoded."""
    params: dict[str, str] = {}
    extended: dict[str, str] = {}
    for key, raw in _PARAM.findall(";" + header.partition(";")[2]):
        key = key.lower()
        value = raw.strip()
        if key.endswith("*"):
            extended[key[:-1]] = _extended_value(key, value)
            continue
        if value.startswith('"') and value.endswith('"') and len(value) >= 2:
            value = _QUOTED_PAIR.sub(r"\1", value[1:-1])
        params[key] = _FORM_ESCAPE.sub(lambda m: chr(int(m.group(1), 16)), value)
    return params | extended


def _extended_value(key: str, value: str) -> str:
    """``charset'language'percent-encoded`` (RFC 5987), UTF-8 or ISO-8859-1."""
    match = _EXTENDED.fullmatch(value.strip('"'))
    charset = match.group(1).lower() if match else ""
    if match is None or charset not in {"utf-8", "iso-8859-1"}:
        raise InvalidRequest(f"The multipart parameter {key} is not a UTF-8 or ISO-8859-1 extended value.")
    try:
        return unquote_to_bytes(match.group(2)).decode(charset)
    except UnicodeDecodeError:
        raise InvalidRequest(f"The multipart parameter {key} is not valid {charset.upper()}.") from None


@contextlib.asynccontextmanager
async def receive_form(
    request: Request,
    store: BlobStore,
    max_file_bytes: int,
    *,
    file_field: str = "file",
    expected: str = "'file' and 'purpose' fields",
) -> AsyncIterator[ReceivedForm]:
    """Parse the request's multipart body, the part named ``file_field`` as the file (``data`` for an upload's
    part; ``expected`` says what the body should hold). The received temp file is deleted on exit unless it was
    moved away."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest(f"Expected a multipart/form-data body with {expected}.")
    declared = request.headers.get("content-length", "")
    length = parse_decimal(declared)
    if length is not None and length > max_file_bytes + FRAMING_ALLOWANCE:
        raise PayloadTooLarge(
            f"The request body is {declared} bytes; this gateway accepts files up to {max_file_bytes} bytes.",
            param=file_field,
        )
    collector = _FormCollector(store, max_file_bytes, file_field)
    parser = MultipartParser(boundary, collector.callbacks())  # type: ignore[arg-type]
    try:
        try:
            async for chunk in request.stream():
                parser.write(chunk)
            parser.finalize()
        except MultipartParseError as exc:
            raise InvalidRequest(f"Malformed multipart body: {exc}") from None
        except ClientDisconnect:
            raise InvalidRequest("The client disconnected before the upload finished.") from None
        if not collector.ended:
            raise InvalidRequest("The multipart body ended before its closing boundary.")
        yield collector.form
    finally:
        collector.discard()
