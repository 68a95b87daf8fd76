"""Blob storage on local disk: files appear whole or not at all.

An upload is written to a temp file in ``<data_dir>/tmp`` (same filesystem), then renamed into place with
``os.replace``, which is atomic: a reader never sees half a file, and a crash leaves only a temp file behind.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import uuid
from pathlib import Path


class BlobStore:
    def __init__(self, root: Path, tmp: Path) -> None:
        self.root = root
        self.tmp = tmp

    def temp_path(self) -> Path:
        self.tmp.mkdir(parents=True, exist_ok=True)
        return self.tmp / f"upload-{uuid.uuid4().hex}.part"

    def path(self, key: str) -> Path:
        return self.root / key

    def put(self, temp: Path, key: str) -> Path:
        """Move a finished temp file to ``key`` atomically."""
        target = self.path(key)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(temp, target)
        return target

    def delete(self, key: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path(key).unlink()

    def sweep_temp(self) -> int:
        """Remove temp files left by a crash. Safe only when no upload is in flight (startup)."""
        removed = 0
        if self.tmp.is_dir():
            for leftover in self.tmp.glob("upload-*.part"):
                with contextlib.suppress(FileNotFoundError):
                    leftover.unlink()
                    removed += 1
        return removed


def digest(path: Path) -> tuple[int, str]:
    """Size and sha256 of a file, read in chunks."""
    sha = hashlib.sha256()
    size = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            sha.update(chunk)
            size += len(chunk)
    return size, sha.hexdigest()
