"""Wire schemas of the files API (OpenAI's ``OpenAIFile``, ``ListFilesResponse``, ``DeleteFileResponse``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from app.files.models import FilePurpose, FileStatus
from app.kit.schemas import Schema, UnixTime


def _unset(value: object) -> bool:
    return value is None


class FileOut(Schema):
    # OpenAI leaves an unset optional field (expires_at, status_details) out of a file object: its schema does not
    # allow null there. Per field, not per response: a list's first_id/last_id are null on an empty page.
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: UnixTime
    expires_at: UnixTime | None = Field(default=None, exclude_if=_unset)
    filename: str
    purpose: FilePurpose
    status: FileStatus
    status_details: str | None = Field(default=None, exclude_if=_unset)
    source_file_id: str | None = Field(
        default=None, exclude_if=_unset, description="ftgw: the file it was prepared from."
    )
    sha256: str | None = Field(
        default=None, exclude_if=_unset, description="ftgw: the SHA-256 of the content, hex (a copy checks it)."
    )


class FileDeleted(Schema):
    id: str
    object: Literal["file"] = "file"
    deleted: bool = True


# OpenAPI description of the multipart body that upload.receive_form parses by hand.
CREATE_FILE_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["file", "purpose"],
                "properties": {
                    "file": {"type": "string", "format": "binary", "description": "The file to upload."},
                    "purpose": {
                        "type": "string",
                        "enum": ["assistants", "batch", "fine-tune", "vision", "user_data", "evals"],
                    },
                    "expires_after[anchor]": {"type": "string", "enum": ["created_at"]},
                    "expires_after[seconds]": {"type": "integer", "minimum": 3600, "maximum": 2592000},
                },
            }
        }
    },
}
