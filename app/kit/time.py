"""Timezone-aware UTC time, stored as such and put on the wire as Unix seconds."""

from __future__ import annotations

from datetime import UTC, datetime

# 9999-12-31T23:59:59Z, the last second a datetime (and both backends) can hold: Unix times on the wire stop here.
MAX_UNIX_SECONDS = 253_402_300_799


def utcnow() -> datetime:
    return datetime.now(UTC)


def unix(value: datetime) -> int:
    return int(value.timestamp())


def from_unix(seconds: int) -> datetime:
    return datetime.fromtimestamp(seconds, UTC)
