"""Public ids shaped like OpenAI's: ``<prefix>-<random>``."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def random_token(length: int) -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_id(prefix: str, length: int = 24, *, separator: str = "-") -> str:
    """A fresh id such as ``file-3hXw…``: 24 base62 characters (143 bits) after the prefix (``eval_3hXw…`` with
    ``separator="_"``, as OpenAI spells its eval ids)."""
    return f"{prefix}{separator}{random_token(length)}"
