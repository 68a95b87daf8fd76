"""``ftgw files``: upload (with a progress bar), list, get, content, delete."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, BinaryIO

import typer

from app.cli._api._common import Json, Limit, group
from app.cli._client import gateway
from app.cli._errors import USAGE, CliError
from app.cli._output import note, print_json, table

if TYPE_CHECKING:
    from app.cli._client import Gateway

NAME = "files"
HELP = "Upload, list, download and delete files."
app = group(HELP)

FileId = Annotated[str, typer.Option("-i", "--id", metavar="FILE_ID", help="The file's id (file-…).")]
COLUMNS = ("id", "filename", "purpose", "bytes", "status", "created_at")


class _Reading:
    """A file object that moves a progress bar as httpx reads it."""

    def __init__(self, f: BinaryIO, advance: Any) -> None:
        self.f = f
        self.advance = advance

    def read(self, size: int = -1) -> bytes:
        chunk = self.f.read(size)
        self.advance(len(chunk))
        return chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.f, name)


def upload(gw: Gateway, path: Path, purpose: str = "fine-tune") -> dict[str, Any]:
    """Upload ``path`` with a progress bar on stderr (shown on a terminal only) and return the file object."""
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

    from app.cli._output import err_console

    if not path.is_file():
        raise CliError(f"No such file: {path}", None, USAGE)
    size = path.stat().st_size
    progress = Progress(
        TextColumn("uploading {task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        console=err_console(),
        transient=True,
    )
    with progress, path.open("rb") as f:
        task = progress.add_task(path.name, total=size)
        reading = _Reading(f, lambda n: progress.advance(task, n))
        uploaded: dict[str, Any] = gw.post("/v1/files", files={"file": (path.name, reading)}, data={"purpose": purpose})
    return uploaded


def file_id(gw: Gateway, value: str, purpose: str = "fine-tune", *, option: str | None = None) -> str:
    """A file's id: ``value`` itself when it is one, else the id of ``value`` uploaded (a path) with ``purpose``."""
    from app.cli._output import echo

    path = Path(value)
    if path.is_file():
        uploaded = upload(gw, path, purpose)
        echo(f"Uploaded file from {path}: {uploaded['id']}")
        return str(uploaded["id"])
    if value.startswith("file-"):
        return value
    where = f"{option} {value}: " if option else f"{value} is "
    raise CliError(f"{where}neither a file on disk nor a file id (file-…).", None, USAGE)


@app.command("upload")
def upload_file(
    file: Annotated[Path, typer.Option("-f", "--file", help="The file to upload.")],
    purpose: Annotated[str, typer.Option("-p", "--purpose", help="fine-tune, batch, …")] = "fine-tune",
    json: Json = False,
) -> None:
    """Upload a file; prints its id."""
    uploaded = upload(gateway(), file, purpose)
    if json:
        print_json(uploaded)
        return
    note(f"Uploaded {file} ({uploaded['bytes']} bytes):")
    print(uploaded["id"])


@app.command("list")
def list_files(
    purpose: Annotated[str | None, typer.Option("-p", "--purpose", help="Only files of this purpose.")] = None,
    limit: Limit = 100,
    json: Json = False,
) -> None:
    """List files, newest first."""
    page = gateway().get("/v1/files", purpose=purpose, limit=limit, order="desc")
    if json:
        print_json(page)
        return
    table(page["data"], COLUMNS, times=("created_at",))


@app.command("get")
def get_file(file_id: FileId, json: Json = False) -> None:
    """Show a file."""
    found = gateway().get(f"/v1/files/{file_id}")
    if json:
        print_json(found)
        return
    table([found], (*COLUMNS, "status_details"), times=("created_at",))


@app.command("content")
def content(
    file_id: FileId,
    out: Annotated[Path | None, typer.Option("-o", "--out", help="Write here instead of to stdout.")] = None,
) -> None:
    """Download a file's content."""
    data = gateway().request("GET", f"/v1/files/{file_id}/content").content
    if out is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
        return
    out.write_bytes(data)
    note(f"wrote {out} ({len(data)} bytes)")


@app.command("delete")
def delete(file_id: FileId) -> None:
    """Delete a file."""
    gateway().delete(f"/v1/files/{file_id}")
    note(f"deleted {file_id}")
