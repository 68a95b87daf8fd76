"""/v1/uploads: a large file sent in parts, then assembled into a File, as OpenAI's uploads API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.auth.principal import PrincipalDep
from app.datasets.validation import UploadValidator
from app.db import SessionDep
from app.errors import InvalidRequest, PayloadTooLarge
from app.files.endpoints import BlobStoreDep
from app.files.upload import receive_form
from app.uploads.parts import PartStore
from app.uploads.schemas import (
    ADD_PART_REQUEST_BODY,
    CompleteUploadRequest,
    CreateUploadRequest,
    UploadOut,
    UploadPartOut,
)
from app.uploads.service import MAX_PART_BYTES, upload_service

router = APIRouter(prefix="/v1/uploads", tags=["Uploads"])


def get_parts(store: BlobStoreDep) -> PartStore:
    return PartStore(store)


PartsDep = Annotated[PartStore, Depends(get_parts)]


@router.post("", response_model=UploadOut)
async def create_upload(
    body: CreateUploadRequest, request: Request, session: SessionDep, principal: PrincipalDep
) -> UploadOut:
    """Start an upload of a file sent in parts; unless completed, it expires after an hour."""
    max_bytes = request.app.state.settings.max_upload_bytes
    upload = await upload_service.create(session, principal.project_id, body, max_bytes)
    return UploadOut.of(upload)


@router.get("/{upload_id}", response_model=UploadOut)
async def retrieve_upload(upload_id: str, session: SessionDep, principal: PrincipalDep) -> UploadOut:
    """Retrieve an upload (an ftgw addition: OpenAI's API has no such route)."""
    upload = await upload_service.get(session, principal.project_id, upload_id)
    return UploadOut.of(upload, await upload_service.file_of(session, upload))


@router.post(
    "/{upload_id}/parts",
    response_model=UploadPartOut,
    openapi_extra={"requestBody": ADD_PART_REQUEST_BODY},
)
async def add_upload_part(
    upload_id: str,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    parts: PartsDep,
) -> UploadPartOut:
    """Add a part (multipart `data`, at most 64 MiB), streamed to disk; parts may be sent side by side."""
    upload = await upload_service.open_for_parts(request.app.state.sessionmaker, principal.project_id, upload_id)
    limit = upload_service.part_limit(upload)
    try:
        async with receive_form(request, parts.store, limit, file_field="data", expected="a 'data' part") as form:
            part = await upload_service.add_part(session, parts, principal.project_id, upload_id, form.file)
    except PayloadTooLarge:
        if limit == MAX_PART_BYTES:
            raise
        # Cut off where the part passed what the upload has left: the caller's sizes disagree, a 400.
        raise InvalidRequest(
            f"The part is larger than the {limit} bytes left of the {upload.bytes} upload {upload_id} was created for.",
            param="data",
            code="upload_too_large",
        ) from None
    return UploadPartOut.model_validate(part)


@router.post("/{upload_id}/complete", response_model=UploadOut)
async def complete_upload(
    upload_id: str,
    body: CompleteUploadRequest,
    request: Request,
    session: SessionDep,
    principal: PrincipalDep,
    parts: PartsDep,
) -> UploadOut:
    """Assemble the parts in the given order into a File (checked against `md5` when given); fine-tune files are
    then validated like any upload."""
    upload, record = await upload_service.complete(
        session, parts, principal.project_id, upload_id, body.part_ids, body.md5
    )
    validator: UploadValidator = request.app.state.validator
    if validator.wants(record):
        validator.schedule(session, record)
    return UploadOut.of(upload, record)


@router.post("/{upload_id}/cancel", response_model=UploadOut)
async def cancel_upload(upload_id: str, session: SessionDep, principal: PrincipalDep, parts: PartsDep) -> UploadOut:
    """Cancel an upload: its parts are removed, and it takes no more parts."""
    upload = await upload_service.cancel(session, parts, principal.project_id, upload_id)
    return UploadOut.of(upload)
