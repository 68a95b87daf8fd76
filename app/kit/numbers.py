"""Integers from text, ASCII decimal only, and the ranges the database's integer columns hold.

Python's ``int()`` and ``str.isdigit()`` accept every Unicode digit (superscripts, Arabic-Indic digits ...); on
the wire a number is ``[0-9]+`` and nothing else, so text that reaches an integer goes through
:func:`parse_decimal`.
"""

from __future__ import annotations

import re

# INTEGER on PostgreSQL (and what SQLite's INTEGER round-trips everywhere): a value past it can never be stored.
INT32_MAX = 2**31 - 1
# BIGINT, and OpenAI's int64 fields (seed).
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

_DECIMAL = re.compile(r"[0-9]{1,18}")


def parse_decimal(text: str) -> int | None:
    """The value of ``text`` if it is ASCII decimal digits only (up to 18 of them), else None."""
    return int(text) if _DECIMAL.fullmatch(text) else None
