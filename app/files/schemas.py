"""Wire schemas of the files API (OpenAI's ``OpenAIFile``, ``ListFilesResponse``, ``DeleteFileResponse``)."""

from __future__ import annotations

from typing import Literal

from app.files.models import FilePurpose, FileStatus
from app.kit.schemas import Schema, UnixTime


class FileOut(Schema):
    id: str
    object: Literal["file"] = "file"
    bytes: int
    created_at: UnixTime
    expires_at: UnixTime | None = None
    filename: str
    purpose: FilePurpose
    status: FileStatus
    status_details: str | None = None
    source_file_id: str | None = None  # ftgw: the file this one was prepared from


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
