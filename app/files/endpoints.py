"""/v1/files: upload, list, retrieve, download and delete files, as OpenAI's files API."""

from __future__ import annotations

import re
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import FileResponse

from app.auth.principal import PrincipalDep
from app.datasets.validation import UploadValidator
from app.db import SessionDep
from app.files.schemas import CREATE_FILE_REQUEST_BODY, FileDeleted, FileOut
from app.files.service import file_service
from app.files.storage import BlobStore
from app.files.upload import receive_form
from app.kit.pagination import AfterQuery, Order, OrderQuery, limit_query
from app.kit.schemas import ListResponse

router = APIRouter(prefix="/v1/files", tags=["Files"])


def get_blob_store(request: Request) -> BlobStore:
    store: BlobStore = request.app.state.blob_store
    return store


BlobStoreDep = Annotated[BlobStore, Depends(get_blob_store)]

_NOT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\%]')


def attachment(filename: str) -> str:
    """``Content-Disposition`` naming the file exactly in ``filename*`` (RFC 6266), with an ASCII ``filename``
    stand-in for clients that only read that."""
    fallback = _NOT_PLAIN.sub("_", filename)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(filename, safe='')}"


@router.post(
    "",
    response_model=FileOut,
    openapi_extra={"requestBody": CREATE_FILE_REQUEST_BODY},
)
async def create_file(request: Request, session: SessionDep, principal: PrincipalDep, store: BlobStoreDep) -> FileOut:
    """Upload a file (multipart `file` and `purpose`), streamed to disk; fine-tune files are then validated."""
    async with receive_form(request, store, request.app.state.settings.max_upload_bytes) as form:
        record = await file_service.create(session, store, principal.project_id, form)
    validator: UploadValidator = request.app.state.validator
    if validator.wants(record):
        validator.schedule(session, record)
    return FileOut.model_validate(record)


@router.get("", response_model=ListResponse[FileOut])
async def list_files(
    session: SessionDep,
    principal: PrincipalDep,
    purpose: Annotated[str | None, Query(description="Only files with this purpose.")] = None,
    limit: Annotated[int, limit_query(10_000)] = 10_000,
    order: OrderQuery = Order.desc,
    after: AfterQuery = None,
) -> ListResponse[FileOut]:
    """List the project's files, newest first by default."""
    page = await file_service.list(
        session, principal.project_id, purpose=purpose, limit=limit, order=order, after=after
    )
    return ListResponse.of([FileOut.model_validate(f) for f in page.items], page.has_more)


@router.get("/{file_id}", response_model=FileOut)
async def retrieve_file(file_id: str, session: SessionDep, principal: PrincipalDep) -> FileOut:
    """Retrieve a file's metadata."""
    return FileOut.model_validate(await file_service.get(session, principal.project_id, file_id))


@router.get(
    "/{file_id}/content",
    response_class=FileResponse,
    responses={200: {"content": {"application/octet-stream": {"schema": {"type": "string", "format": "binary"}}}}},
)
async def retrieve_file_content(
    file_id: str, session: SessionDep, principal: PrincipalDep, store: BlobStoreDep
) -> FileResponse:
    """Download a file's bytes."""
    record, path = await file_service.content_path(session, store, principal.project_id, file_id)
    disposition = {"Content-Disposition": attachment(record.filename)}
    return FileResponse(path, media_type="application/octet-stream", headers=disposition)


@router.delete("/{file_id}", response_model=FileDeleted)
async def delete_file(file_id: str, session: SessionDep, principal: PrincipalDep, store: BlobStoreDep) -> FileDeleted:
    """Delete a file and its stored bytes."""
    record = await file_service.delete(session, store, principal.project_id, file_id)
    return FileDeleted(id=record.id)
