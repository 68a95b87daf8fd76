"""Timezone-aware UTC time, stored as such and put on the wire as Unix seconds."""

from __future__ import annotations

from datetime import UTC, datetime


def utcnow() -> datetime:
    return datetime.now(UTC)


def unix(value: datetime) -> int:
    return int(value.timestamp())


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
