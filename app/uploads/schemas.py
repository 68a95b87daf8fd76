"""Wire schemas of the uploads API (OpenAI's ``Upload``, ``UploadPart``, ``CreateUploadRequest``,
``CompleteUploadRequest``)."""

from __future__ import annotations

from typing import Annotated, Literal, Self

from pydantic import Field, StringConstraints

from app.files.models import UPLOADABLE_PURPOSES, FilePurpose, StoredFile
from app.files.schemas import FileOut
from app.kit.schemas import RequestSchema, Schema, UnixTime
from app.uploads.models import Upload, UploadStatus, current_status


class ExpiresAfter(RequestSchema):
    """OpenAI's ``FileExpirationAfter``: when the File that completing the upload makes expires."""

    anchor: Literal["created_at"]
    seconds: Annotated[int, Field(ge=3600, le=2_592_000)]


class CreateUploadRequest(RequestSchema):
    filename: Annotated[str, StringConstraints(min_length=1, max_length=512)]
    purpose: str = Field(json_schema_extra={"enum": [p.value for p in UPLOADABLE_PURPOSES]})
    bytes: int = Field(description="The size of the whole file; the parts must add up to exactly this.")
    mime_type: Annotated[str, StringConstraints(min_length=1, max_length=255)]
    expires_after: ExpiresAfter | None = None


class CompleteUploadRequest(RequestSchema):
    part_ids: list[Annotated[str, StringConstraints(max_length=64)]] = Field(
        description="The parts, in the order their bytes make the file."
    )
    md5: str | None = Field(default=None, description="The md5 of the whole file (hex); a mismatch stores nothing.")


class UploadOut(Schema):
    id: str
    object: Literal["upload"] = "upload"
    bytes: int
    created_at: UnixTime
    expires_at: UnixTime
    filename: str
    purpose: FilePurpose
    status: UploadStatus
    file: FileOut | None = None

    @classmethod
    def of(cls, upload: Upload, file: StoredFile | None = None) -> Self:
        return cls(
            id=upload.id,
            bytes=upload.bytes,
            created_at=upload.created_at,
            expires_at=upload.expires_at,
            filename=upload.filename,
            purpose=upload.purpose,
            status=current_status(upload),
            file=FileOut.model_validate(file) if file is not None else None,
        )


class UploadPartOut(Schema):
    id: str
    object: Literal["upload.part"] = "upload.part"
    created_at: UnixTime
    upload_id: str


# OpenAPI description of the multipart body that the parts endpoint parses by hand (app.files.upload).
ADD_PART_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["data"],
                "properties": {
                    "data": {"type": "string", "format": "binary", "description": "The chunk of bytes for this part."}
                },
            }
        }
    },
}
