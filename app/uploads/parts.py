"""The parts of uploads in progress on disk, and their assembly into one file.

A part is received like any upload (``app.files.upload.receive_form``: streamed to a temp file, counted and capped
on the way), then renamed to ``<tmp>/uploads/<upload_id>/<part_id>``: the same filesystem as the blob store, so
moving is atomic and assembling ends in one more rename into place. ``BlobStore.sweep_temp`` leaves this folder
alone (parts of a pending upload outlive a restart); the upkeep removes those of uploads that are over.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from app.files.storage import BlobStore

CHUNK = 1 << 20


@dataclass(frozen=True)
class Assembled:
    temp_path: Path
    bytes: int
    sha256: str
    md5: str


class PartStore:
    def __init__(self, store: BlobStore) -> None:
        self.store = store
        self.root = store.tmp / "uploads"

    def folder(self, upload_id: str) -> Path:
        return self.root / upload_id

    def path(self, upload_id: str, part_id: str) -> Path:
        return self.folder(upload_id) / part_id

    def put(self, temp: Path, upload_id: str, part_id: str) -> None:
        """Move a received temp file into the upload's folder."""
        target = self.path(upload_id, part_id)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)

    def remove(self, upload_id: str) -> None:
        """Delete an upload's parts, and the parts area itself once no upload has any (a quiet tmp folder is
        empty)."""
        shutil.rmtree(self.folder(upload_id), ignore_errors=True)
        with contextlib.suppress(OSError):
            self.root.rmdir()  # only succeeds when empty

    def upload_ids(self) -> list[str]:
        """Uploads that have parts on disk."""
        return [p.name for p in self.root.iterdir() if p.is_dir()] if self.root.is_dir() else []

    def assemble(self, upload_id: str, part_ids: Iterable[str]) -> Assembled:
        """Concatenate the parts in the given order into a new temp file, hashing as it goes; never more than one
        chunk in memory. The caller owns (and removes) the temp file. ``FileNotFoundError`` names a missing part."""
        temp = self.store.temp_path()
        sha, md5, size = hashlib.sha256(), hashlib.md5(usedforsecurity=False), 0
        try:
            with temp.open("wb") as out:
                for part_id in part_ids:
                    with self.path(upload_id, part_id).open("rb") as part:
                        while chunk := part.read(CHUNK):
                            out.write(chunk)
                            sha.update(chunk)
                            md5.update(chunk)
                            size += len(chunk)
        except BaseException:
            temp.unlink(missing_ok=True)
            raise
        return Assembled(temp, size, sha.hexdigest(), md5.hexdigest())
