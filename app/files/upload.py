"""Streaming ``multipart/form-data`` reception for ``POST /v1/files``.

The body is parsed as it arrives: the ``file`` part goes straight to a temp file (hashed and counted on the way,
stopped the moment it passes the size cap), small text fields are kept in memory up to a few KiB. Nothing is ever
held whole in memory, and the temp file is removed on every path that does not hand it over.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from app.errors import InvalidRequest, PayloadTooLarge
from app.files.storage import BlobStore

MAX_FIELD_BYTES = 4096
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
    def __init__(self, store: BlobStore, max_file_bytes: int) -> None:
        self.store = store
        self.max_file_bytes = max_file_bytes
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
            "on_header_field": lambda d, s, e: self._header_field.extend(d[s:e]),
            "on_header_value": lambda d, s, e: self._header_value.extend(d[s:e]),
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

    def _header_end(self) -> None:
        name = self._header_field.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_field.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self._headers.get("content-disposition", ""))
        name = options.get(b"name")
        if name is None:
            raise InvalidRequest("A multipart part has no name in its Content-Disposition header.")
        self._name = name.decode("utf-8", "replace")
        filename = options.get(b"filename")
        if self._name == "file":
            if self.form.file is not None or self._sink is not None:
                raise InvalidRequest("Only one 'file' may be uploaded per request.", param="file")
            self._filename = (filename or b"upload").decode("utf-8", "replace")
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
                    param="file",
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
                self.form.fields[self._name] = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InvalidRequest(f"Form field '{self._name}' is not valid UTF-8.", param=self._name) from None

    def _end(self) -> None:
        self.ended = True

    def discard(self) -> None:
        if self._sink is not None:
            self._sink.close()
            self._sink = None
        for path in self.temp_paths:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()


@contextlib.asynccontextmanager
async def receive_form(request: Request, store: BlobStore, max_file_bytes: int) -> AsyncIterator[ReceivedForm]:
    """Parse the request's multipart body. The received temp file is deleted on exit unless it was moved away."""
    content_type, options = parse_options_header(request.headers.get("content-type", ""))
    boundary = options.get(b"boundary")
    if content_type != b"multipart/form-data" or not boundary:
        raise InvalidRequest("Expected a multipart/form-data body with 'file' and 'purpose' fields.")
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > max_file_bytes + FRAMING_ALLOWANCE:
        raise PayloadTooLarge(
            f"The request body is {declared} bytes; this gateway accepts files up to {max_file_bytes} bytes.",
            param="file",
        )
    collector = _FormCollector(store, max_file_bytes)
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
